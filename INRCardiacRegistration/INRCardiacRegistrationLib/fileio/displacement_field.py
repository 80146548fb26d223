"""Displacement fields on disk as ITK displacement-field transforms (resampling convention, LPS mm).

Convention (the one of the whole project): a field ``u`` sampled on the *reference* grid stores, at each
reference voxel centre ``p``, the displacement such that ``phi(p) = p + u(p)`` is where the tissue at ``p``
is in the other frame. ITK/SimpleITK transforms use exactly this "resampling" direction, so

    sitk.ReadTransform("field.h5").TransformPoint(p) == phi(p)
    sitk.Resample(frame_t, reference, transform)   -> frame t warped onto the reference grid

Files: ``.h5``/``.hdf5``/``.tfm`` are ITK transform files (``DisplacementFieldTransform_double_3_3``);
``.nrrd``/``.nhdr``/``.mha``/``.mhd``/``.nii.gz`` store the vector image itself (components = LPS mm).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.atomic_file import atomic_path, file_suffix
from ..core.geometry import Geometry
from ..core.itk_file_access import ITK_FILE_ACCESS
from ..core.vocabulary import InputError

TRANSFORM_SUFFIXES = (".h5", ".hdf5", ".tfm", ".txt", ".mat")
IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd", ".nii", ".nii.gz")


def displacement_image(displacement_mm: np.ndarray, geometry: Geometry) -> sitk.Image:
    """A SimpleITK vector image (float64, 3 components, LPS mm) from a (k, j, i, 3) displacement array."""
    displacement_mm = np.asarray(displacement_mm, dtype=np.float64)
    expected = (*geometry.array_shape, 3)
    if displacement_mm.shape != expected:
        raise InputError(f"displacement array shape {displacement_mm.shape} does not match the grid {expected}")
    if not np.all(np.isfinite(displacement_mm)):
        raise InputError("displacement field contains NaN or infinite values")
    image = sitk.GetImageFromArray(np.ascontiguousarray(displacement_mm), isVector=True)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


def write_displacement_field(path: str | Path, displacement_mm: np.ndarray, geometry: Geometry) -> Path:
    """Write ``u`` (k, j, i, 3; LPS mm; resampling convention) on ``geometry`` atomically (temp + rename).

    The file format follows the suffix: an ITK transform file (``.h5``) or a vector image (``.nrrd``, ``.mha``).
    """
    path = Path(path)
    suffix = file_suffix(path)
    if suffix not in TRANSFORM_SUFFIXES + IMAGE_SUFFIXES:
        raise InputError(f"unsupported displacement field file type {suffix!r} for {path}; use .h5, .nrrd or .mha")
    image = displacement_image(displacement_mm, geometry)
    with atomic_path(path) as temporary:
        if suffix in TRANSFORM_SUFFIXES:
            transform = sitk.DisplacementFieldTransform(image)
            with ITK_FILE_ACCESS:
                sitk.WriteTransform(transform, temporary)
        else:
            sitk.WriteImage(image, temporary, useCompression=True)
    return path


def read_displacement_transform(path: str | Path) -> sitk.DisplacementFieldTransform:
    """Read a displacement field written by :func:`write_displacement_field` (any of its formats)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"displacement field file not found: {path}")
    if file_suffix(path) in TRANSFORM_SUFFIXES:
        with ITK_FILE_ACCESS:
            transform = sitk.ReadTransform(str(path))
        if transform.GetName() == "CompositeTransform":
            composite = sitk.CompositeTransform(transform)
            if composite.GetNumberOfTransforms() != 1:
                raise InputError(f"{path} holds {composite.GetNumberOfTransforms()} transforms, expected one field")
            transform = composite.GetNthTransform(0)
        if transform.GetName() != "DisplacementFieldTransform":
            raise InputError(f"{path} holds a {transform.GetName()}, not a displacement field transform")
        return sitk.DisplacementFieldTransform(transform)
    with ITK_FILE_ACCESS:
        image = sitk.ReadImage(str(path), sitk.sitkVectorFloat64)
    if image.GetNumberOfComponentsPerPixel() != 3 or image.GetDimension() != 3:
        raise InputError(f"{path} is not a 3D displacement field with 3 components")
    return sitk.DisplacementFieldTransform(image)


def read_displacement_field(path: str | Path) -> tuple[np.ndarray, Geometry]:
    """Read a displacement field file: ``(u, geometry)`` with ``u`` of shape (k, j, i, 3) in LPS mm."""
    transform = read_displacement_transform(path)
    image = transform.GetDisplacementField()
    return sitk.GetArrayFromImage(image).astype(np.float64), Geometry.of(image)
