"""The result of a pairwise registration: the trained map phi (fixed -> moving) and what it can do.

``phi(x) = x + u(x)``: x is a point of the FIXED frame (physical LPS mm), phi(x) where that tissue is in the
MOVING frame. Therefore: landmarks of the fixed frame propagate exactly (``map_points``); the moving image
warps onto the fixed grid exactly (``warp_moving``); a label of the fixed frame reaches the moving grid
through phi's inverse (``propagate_fixed_label``, fixed-point iteration).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..core.atomic_file import atomic_path
from ..core.geometry import Geometry
from ..core.vocabulary import InputError
from ..core.volume import Volume
from ..fileio.displacement_field import write_displacement_field
from .config import RegistrationConfig
from .coordinates import NormalizedCoordinates
from .displacement_map import EVALUATION_CHUNK, DisplacementMap, numpy_in_chunks, tensor_chunks
from .interpolation import VolumeSampler
from .jacobian import determinant_of_identity_plus
from .siren import Siren

CHECKPOINT_FORMAT = "inr-cardiac-pair-checkpoint/1"


@dataclass
class PairRegistration(DisplacementMap):
    """A trained SIREN with its coordinate frame, configuration and training record."""

    network: Siren
    coordinates: NormalizedCoordinates
    config: RegistrationConfig
    fixed_geometry: Geometry
    alpha_used: float
    loss_history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"

    # --- basic evaluation --------------------------------------------------------------------
    @property
    def final_loss(self) -> float:
        return float(self.loss_history[-1]) if self.loss_history else float("nan")

    @property
    def torch_device(self) -> torch.device:
        return next(self.network.parameters()).device

    @torch.no_grad()
    def displacement_at(self, points_mm: np.ndarray) -> np.ndarray:
        """u (N, 3) in mm at fixed-frame physical points (N, 3) LPS mm."""
        return numpy_in_chunks(self.displacement_tensor, points_mm, self.torch_device)

    @torch.no_grad()
    def displacement_tensor(self, points_mm: torch.Tensor) -> torch.Tensor:
        """u (N, 3) in mm at fixed-frame points (N, 3) float32 LPS mm on the network's device (in chunks of
        :data:`EVALUATION_CHUNK` points, which bound the activations' memory)."""
        out = [self.coordinates.scale_mm * self.network(self.coordinates.to_normalized(x))
               for x in points_mm.split(EVALUATION_CHUNK)]
        return torch.cat(out) if out else torch.zeros_like(points_mm)

    @torch.no_grad()
    def jacobian_determinant_at(self, points_mm: np.ndarray) -> np.ndarray:
        """det(grad phi) (N,) at fixed-frame points; grad phi is taken in physical mm (the normalisation
        scale cancels)."""
        out = []
        for x in tensor_chunks(points_mm, self.torch_device):
            _, jacobian_u = self.network.forward_with_jacobian(self.coordinates.to_normalized(x))
            out.append(determinant_of_identity_plus(jacobian_u))
        return torch.cat(out).double().cpu().numpy() if out else np.zeros((0,))

    @torch.no_grad()
    def deformation_gradient_at(self, points_mm: np.ndarray) -> np.ndarray:
        """F = grad phi (N, 3, 3) at fixed-frame points, exact (the network's analytic Jacobian; physical mm per
        mm, the normalisation scale cancels)."""
        eye = torch.eye(3, dtype=torch.float64)
        out = [self.network.forward_with_jacobian(self.coordinates.to_normalized(x))[1].double().cpu() + eye
               for x in tensor_chunks(points_mm, self.torch_device)]
        return torch.cat(out).numpy() if out else np.zeros((0, 3, 3))

    # --- grids ----------------------------------------------------------------------------------
    def displacement_on_grid(self, grid: Geometry | None = None) -> np.ndarray:
        """u sampled at the voxel centres of ``grid`` (default: the fixed grid): (k, j, i, 3), LPS mm."""
        grid = grid or self.fixed_geometry
        return self.displacement_at(grid.voxel_centres_physical()).reshape(*grid.array_shape, 3)

    def jacobian_determinant_on_grid(self, grid: Geometry | None = None) -> np.ndarray:
        """det(grad phi) at the voxel centres of ``grid`` (default: the fixed grid): (k, j, i)."""
        grid = grid or self.fixed_geometry
        return self.jacobian_determinant_at(grid.voxel_centres_physical()).reshape(grid.array_shape)

    def export_displacement_field(self, path: str | Path, grid: Geometry | None = None) -> Path:
        """Write u on ``grid`` (default: the fixed grid) as an ITK displacement-field transform in the
        resampling convention: ``sitk.ReadTransform(path).TransformPoint(p) == phi(p)``."""
        grid = grid or self.fixed_geometry
        return write_displacement_field(path, self.displacement_on_grid(grid), grid)

    # --- images and labels ------------------------------------------------------------------------
    def warp_moving(self, moving: Volume, grid: Geometry | None = None, interpolation: str = "linear") -> Volume:
        """The moving image resampled onto ``grid`` (default: the fixed grid): value at x = moving(phi(x)).

        ``interpolation``: "linear" (float32 result) or "nearest" (labels; keeps the dtype). Outside the
        moving grid the border value is repeated.
        """
        if interpolation not in ("linear", "nearest"):
            raise InputError(f"interpolation must be 'linear' or 'nearest', got {interpolation!r}")
        moving.require_finite()
        grid = grid or self.fixed_geometry
        mode = "bilinear" if interpolation == "linear" else "nearest"
        sampler = VolumeSampler([moving.array], moving.geometry, self.torch_device, mode=mode)
        mapped = self.map_points(grid.voxel_centres_physical().reshape(-1, 3))
        values = torch.cat([sampler(x)[:, 0] for x in tensor_chunks(mapped, self.torch_device)]).cpu().numpy()
        values = values.reshape(grid.array_shape)
        if interpolation == "nearest":
            values = np.rint(values).astype(moving.array.dtype)
        return Volume(values, grid, f"{moving.name} warped")

    def propagate_fixed_labels(self, labels: list[Volume], grid: Geometry, iterations: int = 100,
                               unresolved: dict[str, str] | None = None) -> list[Volume]:
        """Labels of the fixed frame carried into the moving frame, on ``grid`` (the moving grid); see
        :meth:`DisplacementMap.propagate_fixed_labels`. Each label must lie on the fixed grid."""
        for label in labels:
            if not self.fixed_geometry.matches(label.geometry):
                raise InputError(f"{label.name} grid ({label.geometry.describe()}) does not match the fixed frame "
                                 f"({self.fixed_geometry.describe()})")
        return super().propagate_fixed_labels(labels, grid, iterations, unresolved)

    # --- checkpoints --------------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        """Everything needed to rebuild this registration, as plain types + tensors (weights_only-safe)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": __version__,
            "network": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "network_hyperparameters": self.network.hyperparameters(),
            "coordinates": self.coordinates.to_dict(),
            "config": self.config.to_dict(),
            "fixed_geometry": self.fixed_geometry.to_dict(),
            "alpha_used": float(self.alpha_used),
            "loss_history": [float(v) for v in self.loss_history],
            "seconds": float(self.seconds),
            "device": self.device,
        }

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint atomically (``torch.save`` to a temporary file, then rename)."""
        with atomic_path(path) as temporary:
            torch.save(self.checkpoint(), temporary)
        return Path(path)

    @classmethod
    def from_checkpoint(cls, data: dict, device: str | torch.device = "cpu") -> PairRegistration:
        if data.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"not an inr-cardiac pair checkpoint (format {data.get('format')!r})")
        network = Siren(**data["network_hyperparameters"])
        network.load_state_dict(data["network"])
        network.to(device).eval()
        return cls(
            network=network,
            coordinates=NormalizedCoordinates.from_dict(data["coordinates"]),
            config=RegistrationConfig.from_dict(data["config"]),
            fixed_geometry=Geometry.from_dict(data["fixed_geometry"]),
            alpha_used=float(data["alpha_used"]),
            loss_history=list(data["loss_history"]),
            seconds=float(data["seconds"]),
            device=str(device),
        )

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> PairRegistration:
        """Load a checkpoint written by :meth:`save` (``torch.load(..., weights_only=True)``)."""
        path = Path(path)
        if not path.exists():
            raise InputError(f"checkpoint not found: {path}")
        return cls.from_checkpoint(torch.load(path, map_location="cpu", weights_only=True), device)
