"""Voxel-grid geometry of a 3D image in physical LPS millimetres, as SimpleITK and ITK define it.

A voxel with continuous index ``ijk = (i, j, k)`` (i fastest, SimpleITK order) lies at the physical point

    x = origin + D @ (spacing * ijk)            (LPS, mm)

where ``D`` is the 3x3 direction matrix whose columns are the grid axes. NumPy arrays obtained from
SimpleITK are indexed ``[k, j, i]``; this module always says which order it uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .vocabulary import InputError


@dataclass(frozen=True)
class Geometry:
    """Size, spacing, origin and direction of a 3D voxel grid (SimpleITK conventions, LPS mm).

    ``size`` and ``spacing`` are in (i, j, k) order; ``direction`` is the 3x3 matrix flattened row-major.
    """

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        # plain Python numbers, whatever was given (NumPy scalars would not survive weights_only loading)
        object.__setattr__(self, "size", tuple(int(n) for n in self.size))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", tuple(float(d) for d in self.direction))
        if len(self.size) != 3 or len(self.spacing) != 3 or len(self.origin) != 3 or len(self.direction) != 9:
            raise InputError(
                f"Geometry needs 3D size/spacing/origin and a 3x3 direction, got size={self.size}, "
                f"spacing={self.spacing}, origin={self.origin}, direction of length {len(self.direction)}"
            )
        if any(int(n) < 1 for n in self.size):
            raise InputError(f"Geometry size must be positive in every axis, got {self.size}")
        if any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise InputError(f"Geometry spacing must be positive and finite (mm), got {self.spacing}")
        if abs(np.linalg.det(self.direction_matrix)) < 1e-6:
            raise InputError(f"Geometry direction matrix is singular: {self.direction}")

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        """The geometry of a 3D SimpleITK image."""
        if image.GetDimension() != 3:
            raise InputError(f"expected a 3D image, got a {image.GetDimension()}D image")
        return cls(
            size=tuple(int(n) for n in image.GetSize()),
            spacing=tuple(float(s) for s in image.GetSpacing()),
            origin=tuple(float(o) for o in image.GetOrigin()),
            direction=tuple(float(d) for d in image.GetDirection()),
        )

    # --- matrices ------------------------------------------------------------------------------
    @property
    def direction_matrix(self) -> np.ndarray:
        """3x3 direction matrix (columns = grid axes i, j, k in LPS)."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def index_to_physical_matrix(self) -> np.ndarray:
        """3x3 matrix ``D @ diag(spacing)``: physical offset (mm) of a unit step in (i, j, k)."""
        return self.direction_matrix @ np.diag(self.spacing)

    @property
    def array_shape(self) -> tuple[int, int, int]:
        """Shape of a NumPy array on this grid, (k, j, i) order as SimpleITK returns it."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    # --- point mapping -------------------------------------------------------------------------
    def index_to_physical(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous indices (..., 3) in (i, j, k) order -> physical LPS points (..., 3) in mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.index_to_physical_matrix.T + np.asarray(self.origin)

    def physical_to_index(self, points_mm: np.ndarray) -> np.ndarray:
        """Physical LPS points (..., 3) in mm -> continuous indices (..., 3) in (i, j, k) order."""
        points_mm = np.asarray(points_mm, dtype=np.float64)
        inverse = np.linalg.inv(self.index_to_physical_matrix)
        return (points_mm - np.asarray(self.origin)) @ inverse.T

    def contains_physical(self, points_mm: np.ndarray, margin_voxels: float = 0.0) -> np.ndarray:
        """Boolean (...,) mask: which physical points lie inside the grid's voxel-centre box."""
        ijk = self.physical_to_index(points_mm)
        upper = np.asarray(self.size, dtype=np.float64) - 1.0
        return np.all((ijk >= -margin_voxels) & (ijk <= upper + margin_voxels), axis=-1)

    def voxel_centres_physical(self, low: Sequence[int] | None = None, high: Sequence[int] | None = None
                               ) -> np.ndarray:
        """Physical LPS coordinates (mm) of every voxel centre, array of shape (k, j, i, 3); with ``low`` / ``high``
        ((i, j, k) indices, both inclusive) only those of that box, without computing the others."""
        low = (0, 0, 0) if low is None else tuple(int(v) for v in low)
        high = tuple(n - 1 for n in self.size) if high is None else tuple(int(v) for v in high)
        k, j, i = np.meshgrid(*(np.arange(low[axis], high[axis] + 1, dtype=np.float64) for axis in (2, 1, 0)),
                              indexing="ij")
        return self.index_to_physical(np.stack([i, j, k], axis=-1))

    def physical_to_grid_sample(self) -> tuple[np.ndarray, np.ndarray]:
        """Affine ``(A, b)`` with ``g = A @ x + b`` mapping physical LPS mm to the normalised coordinates of
        ``torch.nn.functional.grid_sample(..., align_corners=True)`` for a tensor of shape (..., k, j, i):
        g = (gx, gy, gz) in [-1, 1] addresses (i, j, k) = (W, H, D)."""
        inverse = np.linalg.inv(self.index_to_physical_matrix)
        extent = np.maximum(np.asarray(self.size, dtype=np.float64) - 1.0, 1.0)
        scale = np.diag(2.0 / extent)
        a = scale @ inverse
        b = -a @ np.asarray(self.origin) - 1.0
        # An axis with a single voxel: every point samples that voxel (g = 0 is its centre).
        for axis, n in enumerate(self.size):
            if n == 1:
                a[axis, :] = 0.0
                b[axis] = 0.0
        return a, b

    def subgrid(self, low_ijk: np.ndarray, high_ijk: np.ndarray, clip: bool = True) -> Geometry:
        """The box of this grid's lattice between indices ``low_ijk`` (rounded down) and ``high_ijk`` (rounded up),
        inclusive, (i, j, k): same spacing and direction, its voxels are nodes of this lattice. ``clip``: cut the
        box to this grid (else it may reach beyond it)."""
        low = np.floor(np.asarray(low_ijk, dtype=np.float64))
        high = np.ceil(np.asarray(high_ijk, dtype=np.float64))
        if clip:
            low, high = (np.clip(index, 0, np.asarray(self.size) - 1) for index in (low, high))
        low, high = low.astype(int), high.astype(int)
        if np.any(high < low):
            raise InputError(f"subgrid: empty index box {low.tolist()} .. {high.tolist()}")
        return Geometry(tuple(high - low + 1), self.spacing, tuple(self.index_to_physical(low)), self.direction)

    # --- comparison ----------------------------------------------------------------------------
    def matches(self, other: Geometry, tolerance_mm: float = 1e-3) -> bool:
        """True when both grids have the same size and place every voxel within ``tolerance_mm``."""
        if tuple(self.size) != tuple(other.size):
            return False
        corners = np.array(
            [[0, 0, 0], [self.size[0] - 1, self.size[1] - 1, self.size[2] - 1], [self.size[0] - 1, 0, 0],
             [0, self.size[1] - 1, 0], [0, 0, self.size[2] - 1]],
            dtype=np.float64,
        )
        return bool(np.max(np.abs(self.index_to_physical(corners) - other.index_to_physical(corners)))
                    <= tolerance_mm)

    def describe(self) -> str:
        size = "x".join(str(n) for n in self.size)
        spacing = "x".join(f"{s:g}" for s in self.spacing)
        return f"{size} voxels of {spacing} mm at origin ({', '.join(f'{o:.2f}' for o in self.origin)})"

    def reference_image(self, pixel_id: int = sitk.sitkFloat32, components: int = 1) -> sitk.Image:
        """An empty SimpleITK image on this grid (useful as a resampling reference)."""
        if components == 1:
            image = sitk.Image(list(self.size), pixel_id)
        else:
            image = sitk.Image(list(self.size), pixel_id, components)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def to_dict(self) -> dict:
        return {"size": list(self.size), "spacing": list(self.spacing), "origin": list(self.origin),
                "direction": list(self.direction)}

    @classmethod
    def from_dict(cls, data: dict) -> Geometry:
        return cls(size=tuple(int(n) for n in data["size"]), spacing=tuple(map(float, data["spacing"])),
                   origin=tuple(map(float, data["origin"])), direction=tuple(map(float, data["direction"])))
