"""Shared fixtures: small synthetic data with known motion and one trained registration reused by tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from INRCardiacRegistrationLib.masks import sampling_mask
from INRCardiacRegistrationLib.pair_registration import register_pair
from INRCardiacRegistrationLib.phantom import PhantomConfig, generate_phantom, load_phantom
from INRCardiacRegistrationLib.registration_config import RegistrationConfig
from INRCardiacRegistrationLib.synthetic_pair import make_synthetic_pair

torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))

# A small CPU configuration. omega = 10: the synthetic pair's mask box is only ~50 mm wide, and with the
# coordinate scale set by that box omega = 30 fits detail finer than the motion has (measured: mean error
# 0.46 of the initial error with omega 30 vs 0.23 with omega 10 after 200 iterations).
SMALL = RegistrationConfig(iterations=200, points=4000, width=128, depth=3, omega=10.0, learning_rate=1e-4,
                           device="cpu", seed=0)


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


# A tiny network and few iterations: seconds per frame on a CPU, still a real optimisation.
TINY = ["--preset", "fast", "--width", "64", "--depth", "3", "--points", "2000", "--iterations", "60",
        "--iterations-others", "30", "--device", "cpu", "--omega", "20"]


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory):
    """4 frames of 3.5 mm voxels (the default phantom, coarsely sampled)."""
    out = tmp_path_factory.mktemp("tiny_phantom")
    return load_phantom(generate_phantom(out, PhantomConfig(frames=4, spacing_mm=(3.5, 3.5, 3.5))))


def register_argv(phantom, out: Path, *extra: str) -> list[str]:
    root = phantom.manifest_path.parent
    return ["register", str(root / "ct_4d.nii.gz"), "--out", str(out), "--labels", str(root / "labels_4d.nii.gz"),
            "--myocardium-label", "1", "--heart-label", "1", "2", "3",
            "--landmarks", str(root / "landmarks_reference.mrk.json"),
            "--landmarks-annotated", str(root / "landmark_trajectories.csv"), *TINY, *extra]


@pytest.fixture(scope="session")
def tiny_run(tiny_phantom, tmp_path_factory):
    """One whole-cycle run of the real worker on the tiny phantom, shared read-only by the tests that need one."""
    from INRCardiacRegistrationLib.cli import main
    from INRCardiacRegistrationLib.run_folder import RunFolder

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    assert main(register_argv(tiny_phantom, out, "--quiet", "--no-report")) == 0
    return RunFolder(out)
