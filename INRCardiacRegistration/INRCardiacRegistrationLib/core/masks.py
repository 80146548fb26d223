"""Binary masks: picking a label value, and the sampling mask of the fixed frame."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from .sdf import signed_distance_mm
from .vocabulary import InputError
from .volume import Volume


def label_mask(labels: Volume, value: int | Sequence[int] | None = None, name: str | None = None) -> Volume:
    """Boolean mask of ``labels == value`` (any of the values, given several; ``labels > 0`` when value is None).

    Raises InputError naming the value(s) when none occurs (an empty mask is always a mistake here).
    """
    array = np.asarray(labels.array)
    values = None if value is None else [int(value)] if isinstance(value, int | np.integer) else [int(v) for v in value]
    mask = array > 0 if values is None else np.isin(array, values)
    if not mask.any():
        present = np.unique(array)
        shown = ", ".join(str(v) for v in present[:12]) + (" ..." if present.size > 12 else "")
        what = ("any non-zero label" if values is None else f"label value {values[0]}" if len(values) == 1
                else f"any of the label values {', '.join(map(str, values))}")
        raise InputError(f"{labels.name} does not contain {what} (values present: {shown})")
    shown_value = None if values is None else values[0] if len(values) == 1 else values
    return labels.with_array(mask, name=name or (f"{labels.name}=={shown_value}" if values is not None
                                                 else labels.name))


def require_nonempty(mask: Volume) -> Volume:
    if not np.any(mask.array):
        raise InputError(f"{mask.name} is empty")
    return mask


def dilate_voxels(mask: Volume, radius_voxels: int) -> Volume:
    """Binary dilation by a box of ``radius_voxels`` in every index direction."""
    if radius_voxels < 0:
        raise InputError(f"dilation radius must be >= 0 voxels, got {radius_voxels}")
    image = mask.with_array(np.asarray(mask.array, dtype=np.uint8)).to_sitk()
    if radius_voxels:
        image = sitk.BinaryDilate(image, [int(radius_voxels)] * 3, sitk.sitkBall)
    return mask.with_array(sitk.GetArrayFromImage(image) > 0)


def dilate_mm(mask: Volume, margin_mm: float) -> Volume:
    """Every voxel whose centre lies within ``margin_mm`` (physical distance) of the mask's boundary faces."""
    if margin_mm < 0:
        raise InputError(f"dilation margin must be >= 0 mm, got {margin_mm}")
    require_nonempty(mask)
    if np.all(mask.array):
        return mask.with_array(np.ones(mask.array.shape, bool))
    return mask.with_array(signed_distance_mm(mask).array <= margin_mm)


def sampling_mask(heart: Volume | None = None, myocardium: Volume | None = None,
                  dilation_voxels: int = 2, myocardium_margin_mm: float = 10.0) -> Volume:
    """Where training points are drawn in the fixed frame.

    The fixed frame's heart mask dilated by ``dilation_voxels`` (the paper's choice); when only a
    myocardium mask exists, the myocardium dilated by ``myocardium_margin_mm`` (physical distance).
    """
    if heart is not None:
        require_nonempty(heart)
        result = dilate_voxels(heart, dilation_voxels)
    elif myocardium is not None:
        require_nonempty(myocardium)
        result = dilate_mm(myocardium, myocardium_margin_mm)
    else:
        raise InputError("a sampling mask needs a heart mask or a myocardium label of the fixed frame")
    result.name = "sampling mask"
    return result


def volume_ml(mask: np.ndarray, spacing_mm) -> float:
    """The volume (mL = 1000 mm^3) of the non-zero voxels of ``mask`` on a grid of ``spacing_mm`` (mm)."""
    return float(np.count_nonzero(mask)) * float(np.prod(spacing_mm)) / 1000.0
