"""Normalised network coordinates: physical LPS mm <-> [-1, 1] with ONE isotropic scale.

``x_n = (x_mm - centre_mm) / scale_mm``. The centre is the middle of the sampling mask's physical bounding
box and ``scale_mm`` half of its longest side (times a margin), so the mask lies inside [-1, 1]^3 and a unit
of ``x_n`` is the same number of millimetres in every direction (smoothness is isotropic in mm, unlike the
per-axis normalisation of the paper's code). Displacements scale the same way: ``u_mm = scale_mm * u_n``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.vocabulary import InputError
from ..core.volume import Volume


@dataclass(frozen=True)
class NormalizedCoordinates:
    """Isotropic affine map between physical LPS mm and the network's normalised coordinates."""

    centre_mm: tuple[float, float, float]
    scale_mm: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale_mm) and self.scale_mm > 0):
            raise InputError(f"NormalizedCoordinates 'scale_mm' must be > 0, got {self.scale_mm}")

    @classmethod
    def around_mask(cls, mask: Volume, margin: float = 1.05) -> NormalizedCoordinates:
        """Centre on the physical bounding box of ``mask > 0``; scale = margin * half its longest side."""
        ijk = np.argwhere(np.asarray(mask.array) > 0)[:, ::-1]  # (k, j, i) -> (i, j, k)
        if ijk.size == 0:
            raise InputError(f"{mask.name} is empty: no voxel to sample from")
        corners = mask.geometry.index_to_physical(np.concatenate([ijk.min(0) - 0.5, ijk.max(0) + 0.5])[
            np.array([[0, 1, 2], [3, 1, 2], [0, 4, 2], [0, 1, 5], [3, 4, 2], [3, 1, 5], [0, 4, 5], [3, 4, 5]])])
        low, high = corners.min(axis=0), corners.max(axis=0)
        centre = (low + high) / 2.0
        scale = margin * float(np.max(high - low)) / 2.0
        return cls(tuple(float(c) for c in centre), scale)

    def to_normalized(self, points_mm: torch.Tensor) -> torch.Tensor:
        """Physical LPS mm (N, 3) -> normalised coordinates (N, 3)."""
        centre = torch.as_tensor(self.centre_mm, dtype=points_mm.dtype, device=points_mm.device)
        return (points_mm - centre) / self.scale_mm

    def to_physical(self, points_n: torch.Tensor) -> torch.Tensor:
        """Normalised coordinates (N, 3) -> physical LPS mm (N, 3)."""
        centre = torch.as_tensor(self.centre_mm, dtype=points_n.dtype, device=points_n.device)
        return points_n * self.scale_mm + centre

    def to_dict(self) -> dict:
        return {"centre_mm": list(self.centre_mm), "scale_mm": self.scale_mm}

    @classmethod
    def from_dict(cls, data: dict) -> NormalizedCoordinates:
        return cls(tuple(float(c) for c in data["centre_mm"]), float(data["scale_mm"]))
