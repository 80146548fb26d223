"""Intensity normalisation of a volume to [-1, 1] before registration.

Default: per-volume 1% / 99% quantiles mapped to -1 / +1 and clipped (works for CT and MRI alike, no
Hounsfield assumption). Option for CT: a fixed HU window, identical for every frame.
"""

from __future__ import annotations

import numpy as np

from ..core.vocabulary import InputError


def normalize_quantiles(array: np.ndarray, low_quantile: float = 0.01, high_quantile: float = 0.99,
                        mask: np.ndarray | None = None) -> np.ndarray:
    """Map the ``low_quantile`` / ``high_quantile`` intensities of ``array`` (over ``mask`` if given) to
    -1 / +1, linearly, and clip to [-1, 1]. Returns float32."""
    if not 0.0 <= low_quantile < high_quantile <= 1.0:
        raise InputError(f"quantiles must satisfy 0 <= low < high <= 1, got {low_quantile}, {high_quantile}")
    values = np.asarray(array, dtype=np.float32)
    population = values[np.asarray(mask, dtype=bool)] if mask is not None else values
    if population.size == 0:
        raise InputError("cannot normalise intensities over an empty mask" if mask is not None else
                         "cannot normalise the intensities of an empty image")
    if not np.isfinite(population).all():  # np.quantile would give NaN and the whole volume would become NaN
        raise InputError(f"the image holds {int((~np.isfinite(population)).sum())} NaN or infinite value(s)")
    low, high = np.quantile(population, [low_quantile, high_quantile])
    return _to_unit_range(values, float(low), float(high))


def normalize_window(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map a fixed intensity window [low, high] (e.g. HU) to [-1, 1] and clip. Returns float32."""
    if not high > low:
        raise InputError(f"intensity window must have high > low, got [{low}, {high}]")
    return _to_unit_range(np.asarray(array, dtype=np.float32), float(low), float(high))


def _to_unit_range(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:  # a constant image: nothing to normalise, map to 0
        return np.zeros_like(values, dtype=np.float32)
    scaled = 2.0 * (values - low) / (high - low) - 1.0
    return np.clip(scaled, -1.0, 1.0).astype(np.float32)
