"""Shared fixtures: small synthetic data with known motion and one trained registration reused by tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import SMALL, register_argv
from INRCardiacRegistrationLib.core.masks import sampling_mask
from INRCardiacRegistrationLib.engine.pair_registration import register_pair
from INRCardiacRegistrationLib.phantom.config import PhantomConfig
from INRCardiacRegistrationLib.phantom.files import generate_phantom, load_phantom
from INRCardiacRegistrationLib.phantom.synthetic_pair import make_synthetic_pair

torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))

@pytest.fixture(scope="session")
def pair():
    """40^3 voxels of 1.5 mm, known smooth motion of at most 5 mm."""
    return make_synthetic_pair(size=40, spacing_mm=1.5, max_displacement_mm=5.0, seed=0)


@pytest.fixture(scope="session")
def pair_mask(pair):
    return sampling_mask(myocardium=pair.fixed_label, myocardium_margin_mm=6.0)


@pytest.fixture(scope="session")
def trained(pair, pair_mask):
    """One image-only registration (alpha 0) of the synthetic pair, shared by the read-only tests."""
    return register_pair(pair.fixed, pair.moving, mask=pair_mask, config=SMALL.replace(alpha=0.0))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory):
    """4 frames of 3.5 mm voxels (the default phantom, coarsely sampled)."""
    out = tmp_path_factory.mktemp("tiny_phantom")
    return load_phantom(generate_phantom(out, PhantomConfig(frames=4, spacing_mm=(3.5, 3.5, 3.5))))


@pytest.fixture(scope="session")
def tiny_run(tiny_phantom, tmp_path_factory):
    """One whole-cycle run of the real worker on the tiny phantom, shared read-only by the tests that need one."""
    from INRCardiacRegistrationLib.cli.main import main
    from INRCardiacRegistrationLib.cycle.run_folder import RunFolder

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    assert main(register_argv(tiny_phantom, out, "--quiet", "--no-report")) == 0
    return RunFolder(out)
