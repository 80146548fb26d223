"""Intensity normalisation to [-1, 1]: the fixed HU window and the per-volume quantiles, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.vocabulary import InputError
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.engine import pair_registration, prepared_pair
from INRCardiacRegistrationLib.engine.config import RegistrationConfig
from INRCardiacRegistrationLib.engine.intensity import normalize_quantiles, normalize_window


def by_hand(values, low, high) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.clip(2.0 * (values - low) / (high - low) - 1.0, -1.0, 1.0)


def ct_volume(seed=0, shape=(12, 10, 8)) -> np.ndarray:
    """Random HU values from air to bone, float32 like a CT read from disk."""
    return np.random.default_rng(seed).uniform(-1100, 1800, size=shape).astype(np.float32)


# --- the HU window ---------------------------------------------------------------------------------------
def test_window_ends_map_to_minus_one_and_plus_one_linearly():
    hu = np.array([-1000.0, -200.0, 0.0, 200.0, 400.0, 600.0, 3000.0])
    result = normalize_window(hu, -200.0, 600.0)
    np.testing.assert_allclose(result, [-1.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0], atol=1e-7)
    assert result.dtype == np.float32


def test_window_matches_hand_computation_on_a_volume():
    array = ct_volume()
    result = normalize_window(array, -150.0, 450.0)
    assert result.shape == array.shape and result.dtype == np.float32
    np.testing.assert_allclose(result, by_hand(array, -150.0, 450.0), atol=1e-6)
    inside = (array > -150) & (array < 450)
    assert np.all(np.abs(result[inside]) < 1)  # linear inside, clipped only outside
    assert np.all(result[array <= -150] == -1) and np.all(result[array >= 450] == 1)


def test_window_accepts_integer_hu():
    array = np.arange(-300, 801, 50, dtype=np.int16).reshape(1, 1, -1)
    np.testing.assert_allclose(normalize_window(array, -200, 600), by_hand(array, -200, 600), atol=1e-6)


def test_window_leaves_nan_voxels_nan_and_the_others_normalised():
    array = np.array([-200.0, np.nan, 600.0, 200.0])
    result = normalize_window(array, -200.0, 600.0)
    assert np.isnan(result[1])
    np.testing.assert_allclose(result[[0, 2, 3]], [-1.0, 1.0, 0.0], atol=1e-7)


@pytest.mark.parametrize("low, high", [(600.0, -200.0), (100.0, 100.0), (float("nan"), 100.0),
                                       (0.0, float("nan"))])
def test_window_needs_high_above_low(low, high):
    with pytest.raises(InputError, match="high > low"):
        normalize_window(ct_volume(), low, high)


# --- the quantiles ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("low_q, high_q", [(0.01, 0.99), (0.05, 0.9), (0.0, 1.0)])
def test_quantiles_map_to_minus_one_and_plus_one(low_q, high_q):
    array = ct_volume(seed=11)
    low, high = np.quantile(array.astype(np.float64), [low_q, high_q])
    result = normalize_quantiles(array, low_q, high_q)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, by_hand(array, low, high), atol=1e-5)
    # the share of voxels clipped to -1 / +1 is the quantile's
    assert np.mean(result <= -1) == pytest.approx(max(low_q, 1 / array.size), abs=2 / array.size)
    assert np.mean(result >= 1) == pytest.approx(max(1 - high_q, 1 / array.size), abs=2 / array.size)


def test_default_quantiles_are_one_and_ninety_nine_percent():
    array = ct_volume(seed=5)
    low, high = np.quantile(array.astype(np.float64), [0.01, 0.99])
    np.testing.assert_allclose(normalize_quantiles(array), by_hand(array, low, high), atol=1e-5)


def test_quantiles_over_a_mask_normalise_the_whole_volume():
    rng = np.random.default_rng(21)
    array = rng.normal(0.0, 50.0, size=(10, 10, 10)).astype(np.float32)
    mask = np.zeros(array.shape, dtype=np.uint8)
    mask[2:8, 3:7, 1:9] = 1
    array[mask == 0] += 1000.0  # outside the mask: far brighter, so the population matters
    low, high = np.quantile(array[mask > 0].astype(np.float64), [0.1, 0.9])
    result = normalize_quantiles(array, 0.1, 0.9, mask=mask)
    np.testing.assert_allclose(result, by_hand(array, low, high), atol=1e-5)
    assert np.all(result[mask == 0] == 1.0)
    unmasked = normalize_quantiles(array, 0.1, 0.9)
    assert not np.allclose(unmasked[mask > 0], result[mask > 0])


def test_constant_image_maps_to_zero():
    result = normalize_quantiles(np.full((4, 5, 6), 42.0))
    assert result.dtype == np.float32 and result.shape == (4, 5, 6)
    assert np.all(result == 0.0)
    # constant over the mask: nothing to normalise, even where the volume varies outside it
    array = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    mask = np.zeros(array.shape, dtype=bool)
    mask[1, 2, 3] = True
    assert np.all(normalize_quantiles(array, mask=mask) == 0.0)


def test_empty_population_is_an_input_error():
    with pytest.raises(InputError, match="empty mask"):
        normalize_quantiles(ct_volume(), mask=np.zeros((12, 10, 8), dtype=bool))
    with pytest.raises(InputError):
        normalize_quantiles(np.zeros((0, 3, 3)))


@pytest.mark.parametrize("low_q, high_q", [(0.5, 0.5), (0.9, 0.1), (-0.01, 0.99), (0.01, 1.01)])
def test_bad_quantiles_are_an_input_error(low_q, high_q):
    with pytest.raises(InputError, match="quantiles"):
        normalize_quantiles(ct_volume(), low_q, high_q)


# --- what register_pair uses -----------------------------------------------------------------------------
def small_volume(seed: int, name: str) -> Volume:
    return Volume(ct_volume(seed, shape=(6, 6, 6)), Geometry((6, 6, 6), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0)), name)


def test_normalized_intensities_follows_the_config():
    volume = small_volume(3, "frame")
    window = RegistrationConfig(normalization="window", window=(-100.0, 300.0))
    quantile = RegistrationConfig(normalization="quantile", quantiles=(0.2, 0.8))
    np.testing.assert_allclose(prepared_pair.normalized_intensities(volume, window),
                               by_hand(volume.array, -100.0, 300.0), atol=1e-6)
    low, high = np.quantile(volume.array.astype(np.float64), [0.2, 0.8])
    np.testing.assert_allclose(prepared_pair.normalized_intensities(volume, quantile),
                               by_hand(volume.array, low, high), atol=1e-5)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("normalization", ["window", "quantile"])
def test_register_pair_normalises_with_the_configured_method(monkeypatch, normalization):
    """register_pair calls the configured normaliser on the fixed image (stopped there: no training)."""
    calls = []

    def record(name):
        def normaliser(array, *args):
            calls.append((name, args))
            raise _Stop
        return normaliser

    monkeypatch.setattr(prepared_pair, "normalize_window", record("window"))
    monkeypatch.setattr(prepared_pair, "normalize_quantiles", record("quantile"))
    fixed, moving = small_volume(1, "fixed"), small_volume(2, "moving")
    mask = fixed.with_array(np.ones((6, 6, 6), dtype=np.uint8), "mask")
    config = RegistrationConfig(normalization=normalization, window=(-50.0, 250.0), quantiles=(0.1, 0.7),
                                device="cpu", iterations=1, points=64, width=8, depth=1)
    with pytest.raises(_Stop):
        pair_registration.register_pair(fixed, moving, mask=mask, config=config)
    expected = (-50.0, 250.0) if normalization == "window" else (0.1, 0.7)
    assert calls == [(normalization, expected)]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_quantiles_refuse_a_non_finite_voxel_instead_of_spreading_it(bad):
    """One NaN voxel once turned the whole volume into NaN (np.quantile returns NaN); now it is named."""
    array = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    array[0, 0, 0] = bad
    with pytest.raises(InputError, match="1 NaN or infinite value"):
        normalize_quantiles(array)
    mask = np.ones(array.shape, bool)
    mask[0, 0, 0] = False
    assert np.isfinite(normalize_quantiles(array, mask=mask)[1:]).all()  # outside the mask it does not matter
