"""Signed distance field of a label, in millimetres (physical spacing), negative inside."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import SimpleITK as sitk

from .vocabulary import InputError
from .volume import Volume

FEATURES_KEPT = 6  # signed distances kept (about 2 MB each for a 512k-voxel frame)
_FEATURES: OrderedDict[tuple[str, float | None], np.ndarray] = OrderedDict()
_FEATURE_LOCK = threading.Lock()


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
    ``clip_mm`` (one fixed factor for every frame, so values are comparable across frames), in [-1, 1].

    Kept as :func:`kept_signed_distance_mm`: a cycle's pairs share their fixed frame (the reference, or in sequential
    mode the previous pair's moving frame)."""
    if not clip_mm > 0:
        raise InputError(f"sdf 'clip_mm' must be > 0, got {clip_mm}")
    return label.with_array(_kept(label, float(clip_mm)), name=f"SDF of {label.name}")


def kept_signed_distance_mm(label: Volume) -> Volume:
    """:func:`signed_distance_mm`, of which the last few are kept (read-only arrays, keyed by the label's content
    and grid): a cycle carries the same reference labels into every frame."""
    return label.with_array(_kept(label, None), name=f"SDF of {label.name}")


def _kept(label: Volume, clip_mm: float | None) -> np.ndarray:
    """The signed distance of ``label`` (mm; clipped and divided by ``clip_mm`` unless None), from the cache."""
    key = (label.digest(), clip_mm)
    with _FEATURE_LOCK:
        field = _FEATURES.get(key)
        if field is not None:
            _FEATURES.move_to_end(key)
    if field is None:
        field = signed_distance_mm(label).array
        if clip_mm is not None:
            field = np.clip(field, -clip_mm, clip_mm) / np.float32(clip_mm)
        field.setflags(write=False)
        with _FEATURE_LOCK:
            _FEATURES[key] = field
            while len(_FEATURES) > FEATURES_KEPT:
                _FEATURES.popitem(last=False)
    return field
