"""Signed distance field of a label, in millimetres (physical spacing), negative inside."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .vocabulary import InputError
from .volume import Volume


def signed_distance_mm(label: Volume) -> Volume:
    """Signed distance (mm) of every voxel centre to the boundary of ``label > 0``: negative inside.

    The boundary lies on the voxel faces between label and background, so the field is symmetric: the
    voxels on either side of a face are at -h/2 and +h/2 (h = spacing across that face). Computed as the
    mean of SimpleITK's signed Maurer maps of the label and of its complement, with image spacing.
    """
    inside = (np.asarray(label.array) > 0).astype(np.uint8)
    if not inside.any():
        raise InputError(f"{label.name} is empty: cannot compute a signed distance field")
    if inside.all():
        raise InputError(f"{label.name} covers the whole image: it has no boundary")

    def maurer(mask: np.ndarray) -> np.ndarray:
        image = label.with_array(mask).to_sitk()
        distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False,
                                                useImageSpacing=True)
        return sitk.GetArrayFromImage(distance)

    field = 0.5 * (maurer(inside) - maurer(1 - inside))
    return label.with_array(field.astype(np.float32), name=f"SDF of {label.name}")


def sdf_feature(label: Volume, clip_mm: float = 20.0) -> Volume:
    """The registration's SDF channel: the signed distance clipped to [-clip_mm, +clip_mm] and divided by
    ``clip_mm`` (one fixed factor for every frame, so values are comparable across frames), in [-1, 1]."""
    if not clip_mm > 0:
        raise InputError(f"sdf 'clip_mm' must be > 0, got {clip_mm}")
    distance = signed_distance_mm(label)
    return distance.with_array(np.clip(distance.array, -clip_mm, clip_mm) / np.float32(clip_mm))
