"""Trilinear sampling of volumes at physical points with ``torch.nn.functional.grid_sample``."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.geometry import Geometry
from ..core.vocabulary import InputError


class VolumeSampler:
    """Samples one or more channels on one grid at physical LPS points (mm).

    ``channels``: arrays of shape (k, j, i) on ``geometry``. Interpolation is trilinear
    (``align_corners=True``: voxel centres are exact) with border clamping outside the grid, or
    nearest-neighbour with ``mode="nearest"``.
    """

    def __init__(self, channels: list[np.ndarray], geometry: Geometry, device: torch.device | str = "cpu",
                 mode: str = "bilinear", dtype: torch.dtype = torch.float32) -> None:
        if not channels:
            raise InputError("VolumeSampler needs at least one channel")
        for channel in channels:
            if tuple(channel.shape) != geometry.array_shape:
                raise InputError(f"channel shape {channel.shape} does not match grid {geometry.array_shape}")
        self.geometry = geometry
        self.mode = mode
        stacked = np.stack([np.asarray(c, dtype=np.float32) for c in channels])[None]
        self.data = torch.as_tensor(stacked, dtype=dtype, device=device)  # (1, C, k, j, i)
        a, b = geometry.physical_to_grid_sample()
        self.affine_matrix = torch.as_tensor(a, dtype=dtype, device=device)
        self.affine_offset = torch.as_tensor(b, dtype=dtype, device=device)

    @property
    def channels(self) -> int:
        return int(self.data.shape[1])

    def __call__(self, points_mm: torch.Tensor) -> torch.Tensor:
        """Values (N, C) at physical points (N, 3) in LPS mm."""
        grid = points_mm @ self.affine_matrix.t() + self.affine_offset
        values = F.grid_sample(self.data, grid.view(1, -1, 1, 1, 3), mode=self.mode,
                               padding_mode="border", align_corners=True)
        return values.view(self.channels, -1).t()
