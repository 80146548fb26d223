"""Evaluation metrics: Dice, HD95 (mm, physical spacing), TRE (mm), share of folded points."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .geometry import Geometry
from .vocabulary import InputError


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks on the same grid; NaN when both are empty."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise InputError(f"dice: masks of different shapes {a.shape} and {b.shape}")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return float("nan")
    return 2.0 * float(np.logical_and(a, b).sum()) / total


def _surface_distances_mm(from_mask: np.ndarray, to_mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Distances (mm) from every surface voxel of ``from_mask`` to the surface of ``to_mask``."""

    def to_image(mask: np.ndarray) -> sitk.Image:
        image = sitk.GetImageFromArray(mask.astype(np.uint8))
        image.SetSpacing(geometry.spacing)
        image.SetOrigin(geometry.origin)
        image.SetDirection(geometry.direction)
        return image

    from_surface = sitk.GetArrayFromImage(sitk.LabelContour(to_image(from_mask), fullyConnected=True)) > 0
    to_surface = sitk.LabelContour(to_image(to_mask), fullyConnected=True)
    distance = sitk.SignedMaurerDistanceMap(to_surface, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    return np.abs(sitk.GetArrayFromImage(distance)[from_surface])


def hd95_mm(a: np.ndarray, b: np.ndarray, geometry: Geometry) -> float:
    """95th-percentile Hausdorff distance in mm between two masks on ``geometry`` (physical spacing).

    Taken as the larger of the two directed 95th percentiles of surface-to-surface distances (the medpy
    convention). NaN when either mask is empty.
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != geometry.array_shape or b.shape != geometry.array_shape:
        raise InputError(f"hd95: mask shapes {a.shape}, {b.shape} do not match the grid {geometry.array_shape}")
    if not a.any() or not b.any():
        return float("nan")
    # the same distances on the masks' box grown by one voxel (within the grid): every surface voxel and its
    # contour neighbourhood lie inside it
    kji = np.argwhere(a | b)
    box = tuple(slice(max(int(low) - 1, 0), int(high) + 2) for low, high in zip(kji.min(0), kji.max(0), strict=True))
    a, b = a[box], b[box]
    d_ab = _surface_distances_mm(a, b, geometry)
    d_ba = _surface_distances_mm(b, a, geometry)
    return float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))


def target_registration_errors_mm(predicted_mm: np.ndarray, truth_mm: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm) per landmark between predicted and true physical positions, shape (N,)."""
    predicted_mm = np.asarray(predicted_mm, dtype=np.float64)
    truth_mm = np.asarray(truth_mm, dtype=np.float64)
    if predicted_mm.shape != truth_mm.shape or predicted_mm.shape[-1] != 3:
        raise InputError(f"TRE needs two (N, 3) point arrays, got {predicted_mm.shape} and {truth_mm.shape}")
    return np.linalg.norm(predicted_mm - truth_mm, axis=-1)


def tre_mm(predicted_mm: np.ndarray, truth_mm: np.ndarray) -> float:
    """Mean target registration error in mm."""
    return float(np.mean(target_registration_errors_mm(predicted_mm, truth_mm)))


def negative_jacobian_percent(determinants: np.ndarray) -> float:
    """Percentage of points whose Jacobian determinant is <= 0 (folded)."""
    determinants = np.asarray(determinants)
    if determinants.size == 0:
        return float("nan")
    return 100.0 * float(np.count_nonzero(determinants <= 0)) / determinants.size
