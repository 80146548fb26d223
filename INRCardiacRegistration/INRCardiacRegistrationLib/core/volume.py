"""A 3D image (intensities or labels) together with its grid geometry (LPS mm, SimpleITK conventions)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .atomic_file import atomic_path
from .geometry import Geometry
from .gzip_check import require_complete_gzip
from .itk_file_access import ITK_FILE_ACCESS
from .vocabulary import InputError


def write_image_atomic(image: sitk.Image, path: str | Path) -> Path:
    """``sitk.WriteImage`` (compressed) to a temporary file beside ``path``, then renamed into place."""
    with atomic_path(path) as temporary:
        sitk.WriteImage(image, temporary, useCompression=True)
    return Path(path)


@dataclass
class Volume:
    """A 3D scalar image: ``array`` indexed ``[k, j, i]`` (SimpleITK's NumPy order) on ``geometry``.

    Physical coordinates are LPS millimetres (see :mod:`geometry`). ``name`` is only used in messages.
    """

    array: np.ndarray
    geometry: Geometry
    name: str = "image"

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise InputError(f"{self.name} must be a 3D image, got an array with {self.array.ndim} dimensions "
                             f"(shape {self.array.shape})")
        if tuple(self.array.shape) != self.geometry.array_shape:
            raise InputError(f"{self.name} array shape {self.array.shape} does not match its geometry "
                             f"{self.geometry.array_shape} (k, j, i)")

    # --- I/O -------------------------------------------------------------------------------------
    @classmethod
    def from_sitk(cls, image: sitk.Image, name: str = "image") -> Volume:
        if image.GetDimension() != 3:
            raise InputError(f"{name} must be a 3D image, got a {image.GetDimension()}D image")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"{name} must have one component per voxel, got "
                             f"{image.GetNumberOfComponentsPerPixel()}")
        return cls(sitk.GetArrayFromImage(image), Geometry.of(image), name)

    def to_sitk(self) -> sitk.Image:
        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        image.SetSpacing(self.geometry.spacing)
        image.SetOrigin(self.geometry.origin)
        image.SetDirection(self.geometry.direction)
        return image

    @classmethod
    def read(cls, path: str | Path, name: str | None = None) -> Volume:
        """Read any 3D image format SimpleITK knows (NIfTI, NRRD, MHA, a DICOM file ...)."""
        path = Path(path)
        label = name or path.name
        if not path.exists():
            raise InputError(f"{label}: file not found: {path}")
        require_complete_gzip(path, label)
        try:
            with ITK_FILE_ACCESS:
                image = sitk.ReadImage(str(path))
        except RuntimeError as error:
            raise unreadable_image(label, path, error) from error
        return cls.from_sitk(image, label)

    def write(self, path: str | Path) -> Path:
        """Write the image (format from the suffix, compressed) atomically: temporary file, then rename."""
        return write_image_atomic(self.to_sitk(), path)

    # --- checks ----------------------------------------------------------------------------------
    def require_finite(self) -> Volume:
        """Raise ValueError if the image holds NaN or infinite values; return self."""
        if np.issubdtype(self.array.dtype, np.floating) and not np.all(np.isfinite(self.array)):
            bad = int(np.count_nonzero(~np.isfinite(self.array)))
            raise InputError(f"{self.name} contains {bad} NaN or infinite voxel values")
        return self

    def require_same_grid(self, other: Volume, tolerance_mm: float = 1e-3) -> Volume:
        """Raise ValueError unless ``other`` lies on this volume's grid; return self."""
        if not self.geometry.matches(other.geometry, tolerance_mm):
            raise InputError(f"{other.name} grid ({other.geometry.describe()}) does not match {self.name} grid "
                             f"({self.geometry.describe()})")
        return self

    def digest(self) -> str:
        """A SHA-1 of the grid, the data type and the voxel values (not the name): the same content, the same text."""
        content = hashlib.sha1(json.dumps(self.geometry.to_dict(), sort_keys=True).encode())
        array = np.ascontiguousarray(self.array)
        content.update(f"{array.dtype.str}{array.shape}".encode())
        content.update(array.tobytes())
        return content.hexdigest()

    def with_array(self, array: np.ndarray, name: str | None = None) -> Volume:
        """A new volume with the same geometry and another array."""
        return Volume(array, self.geometry, name or self.name)

    def resampled(self, target: Geometry, interpolator: int = sitk.sitkLinear, default: float = 0.0) -> np.ndarray:
        """This volume's array resampled onto ``target`` (identity transform; physical LPS positions kept);
        integer arrays keep their dtype (rounded after linear interpolation)."""
        array = np.asarray(self.array)
        integer = np.issubdtype(array.dtype, np.integer)
        linear_integer = integer and interpolator != sitk.sitkNearestNeighbor
        image = Volume(array.astype(np.float32) if linear_integer else array, self.geometry).to_sitk()
        result = sitk.GetArrayFromImage(sitk.Resample(image, target.reference_image(image.GetPixelID()),
                                                      sitk.Transform(), interpolator, default, image.GetPixelID()))
        if linear_integer:
            info = np.iinfo(array.dtype)
            result = np.clip(np.rint(result), info.min, info.max).astype(array.dtype)
        return result


def itk_error_text(error: RuntimeError) -> str:
    """The line of an ITK exception that says what went wrong (without ITK's file and line prefixes)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Tried to create", "Exception thrown"))]
    return (useful or lines or ["unknown error"])[-1].removeprefix("sitk::ERROR:").strip()


def unreadable_image(label: str, path: str | Path, error: RuntimeError) -> InputError:
    """The user's error for an image SimpleITK could not read: what to do when no reader knows the file, else
    ITK's reason."""
    text = itk_error_text(error)
    if "Unable to determine ImageIO" in text:
        return InputError(f"{label}: {path} is not an image SimpleITK can read (it reads NIfTI .nii/.nii.gz, NRRD "
                          ".nrrd/.seq.nrrd, MetaImage .mha/.mhd and DICOM): check that the file is complete and its "
                          "suffix says its format, or convert it, e.g. load it in 3D Slicer and save it as .nii.gz")
    return InputError(f"{label}: cannot read {path}: {text}")
