"""Random training points inside the fixed frame's sampling mask, in physical LPS mm."""

from __future__ import annotations

import numpy as np
import torch

from ..core.vocabulary import InputError
from ..core.volume import Volume


class MaskPointSampler:
    """Draws points uniformly inside the voxels of ``mask > 0``.

    A point is a random mask voxel plus a uniform offset of up to half a voxel along each grid axis, so
    points are continuous (not only voxel centres). Reproducible through the given ``torch.Generator``.
    """

    def __init__(self, mask: Volume, device: torch.device | str = "cpu") -> None:
        ijk = np.argwhere(np.asarray(mask.array) > 0)[:, ::-1].copy()  # (k, j, i) -> (i, j, k)
        if ijk.shape[0] == 0:
            raise InputError(f"{mask.name} is empty: no voxel to sample from")
        self.device = torch.device(device)
        self.voxels_ijk = torch.as_tensor(ijk, dtype=torch.float32, device=self.device)
        self.index_to_physical = torch.as_tensor(mask.geometry.index_to_physical_matrix, dtype=torch.float32,
                                                 device=self.device)
        self.origin = torch.as_tensor(mask.geometry.origin, dtype=torch.float32, device=self.device)

    @property
    def voxel_count(self) -> int:
        return int(self.voxels_ijk.shape[0])

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` random physical points (count, 3) in LPS mm."""
        picks = torch.randint(0, self.voxel_count, (count,), generator=generator, device=self.device)
        jitter = torch.rand((count, 3), generator=generator, device=self.device) - 0.5
        ijk = self.voxels_ijk[picks] + jitter
        return ijk @ self.index_to_physical.t() + self.origin
