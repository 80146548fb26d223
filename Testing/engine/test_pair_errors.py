"""Every bad input named by the engine's contract gives a ValueError that names the problem."""

import numpy as np
import pytest
import torch
from helpers import SMALL
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.vocabulary import InputError
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.engine.config import RegistrationConfig, preset
from INRCardiacRegistrationLib.engine.devices import resolve_device
from INRCardiacRegistrationLib.engine.pair_registration import register_pair

CONFIG = SMALL.replace(iterations=1)


def test_images_of_different_dimensionality(pair):
    with pytest.raises(ValueError, match="3D"):
        flat = Volume(np.zeros((1, 5, 5)), Geometry((5, 5, 1), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
        flat.array = np.zeros((5, 5))  # a 2D array smuggled into a volume
        register_pair(pair.fixed, flat, fixed_label=pair.fixed_label, config=CONFIG)


def test_empty_mask_or_label(pair):
    empty = pair.fixed_label.with_array(np.zeros_like(pair.fixed_label.array), "empty myocardium")
    with pytest.raises(ValueError, match="empty myocardium is empty"):
        register_pair(pair.fixed, pair.moving, fixed_label=empty, config=CONFIG)
    with pytest.raises(ValueError, match="is empty"):
        register_pair(pair.fixed, pair.moving, mask=empty, config=CONFIG)


def test_nan_or_inf_in_an_image(pair):
    broken = pair.moving.array.copy()
    broken[3, 4, 5] = np.nan
    broken[6, 7, 8] = np.inf
    with pytest.raises(ValueError, match="2 NaN or infinite"):
        register_pair(pair.fixed, pair.moving.with_array(broken), fixed_label=pair.fixed_label, config=CONFIG)


def test_label_grid_that_does_not_match_its_image(pair):
    g = pair.fixed.geometry
    shifted = Geometry(g.size, g.spacing, (g.origin[0] + 3.0, g.origin[1], g.origin[2]), g.direction)
    label = Volume(pair.fixed_label.array, shifted, "shifted label")
    with pytest.raises(ValueError, match="shifted label grid .* does not match"):
        register_pair(pair.fixed, pair.moving, fixed_label=label, config=CONFIG)


def test_alpha_outside_unit_interval():
    with pytest.raises(ValueError, match="'alpha' must be in \\[0, 1\\], got 1.5"):
        RegistrationConfig(alpha=1.5)
    with pytest.raises(ValueError, match="alpha"):
        preset("paper", alpha=-0.1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda(pair):
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        register_pair(pair.fixed, pair.moving, fixed_label=pair.fixed_label, config=CONFIG.replace(device="cuda"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a working CUDA")
def test_auto_device_falls_back_to_the_cpu_when_cuda_does_not_work(monkeypatch):
    """CUDA reported available (as with a driver the torch build cannot use) but this CPU build cannot run a
    kernel: ``auto`` warns and takes the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.warns(UserWarning, match="does not work"):
        assert resolve_device("auto") == torch.device("cpu")


def test_no_mask_and_no_label(pair):
    with pytest.raises(ValueError, match="needs a sampling 'mask' or a 'fixed_label'"):
        register_pair(pair.fixed, pair.moving, config=CONFIG)


def test_other_invalid_configuration_fields():
    for field, value in [("iterations", -1), ("points", 1), ("omega", 0.0), ("learning_rate", 0.0),
                         ("jacobian", "finite"), ("normalization", "zscore"), ("device", "tpu"),
                         ("quantiles", (0.9, 0.1))]:
        with pytest.raises(InputError, match=f"'{field}'") as error:
            RegistrationConfig(**{field: value})
        assert error.value.option == field  # the command line adds the option that sets it
    with pytest.raises(InputError, match="unknown preset"):
        preset("slow")
    with pytest.raises(InputError, match="unknown registration parameter"):
        RegistrationConfig().replace(speed=3)
    with pytest.raises(InputError, match="'iterations' must be an integer >= 0, got True"):
        RegistrationConfig(iterations=True)  # a bool is not a count


def test_config_roundtrip():
    config = preset("fast", alpha=1.0, quantiles=(0.02, 0.98))
    assert RegistrationConfig.from_dict(config.to_dict()) == config
