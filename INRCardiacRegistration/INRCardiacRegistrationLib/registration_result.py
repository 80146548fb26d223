"""The result of a pairwise registration: the trained map phi (fixed -> moving) and what it can do.

``phi(x) = x + u(x)``: x is a point of the FIXED frame (physical LPS mm), phi(x) where that tissue is in the
MOVING frame. Therefore: landmarks of the fixed frame propagate exactly (``map_points``); the moving image
warps onto the fixed grid exactly (``warp_moving``); a label of the fixed frame reaches the moving grid
through phi's inverse (``propagate_fixed_label``, fixed-point iteration).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .atomic_file import atomic_path
from .coordinates import NormalizedCoordinates
from .displacement_field_io import write_displacement_field
from .geometry import Geometry
from .interpolation import VolumeSampler
from .jacobian import determinant_of_identity_plus
from .registration_config import RegistrationConfig
from .siren import Siren
from .volume import Volume

CHECKPOINT_FORMAT = "inr-cardiac-pair-checkpoint/1"
EVALUATION_CHUNK = 1 << 16  # points per network evaluation when sampling grids


@dataclass
class PairRegistration:
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

    def _chunks(self, points_mm: np.ndarray):
        points = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
        for start in range(0, points.shape[0], EVALUATION_CHUNK):
            chunk = points[start:start + EVALUATION_CHUNK]
            yield torch.as_tensor(chunk, dtype=torch.float32, device=self.torch_device)

    @torch.no_grad()
    def displacement_at(self, points_mm: np.ndarray) -> np.ndarray:
        """u (N, 3) in mm at fixed-frame physical points (N, 3) LPS mm."""
        out = [self.coordinates.scale_mm * self.network(self.coordinates.to_normalized(x)) for x in
               self._chunks(points_mm)]
        return torch.cat(out).double().cpu().numpy() if out else np.zeros((0, 3))

    def map_points(self, points_mm: np.ndarray) -> np.ndarray:
        """phi(x): fixed-frame points (N, 3) LPS mm -> their positions in the moving frame (N, 3) LPS mm."""
        points_mm = np.asarray(points_mm, dtype=np.float64)
        return points_mm + self.displacement_at(points_mm).reshape(points_mm.shape)

    @torch.no_grad()
    def jacobian_determinant_at(self, points_mm: np.ndarray) -> np.ndarray:
        """det(grad phi) (N,) at fixed-frame points; grad phi is taken in physical mm (the normalisation
        scale cancels)."""
        out = []
        for x in self._chunks(points_mm):
            _, jacobian_u = self.network.forward_with_jacobian(self.coordinates.to_normalized(x))
            out.append(determinant_of_identity_plus(jacobian_u))
        return torch.cat(out).double().cpu().numpy() if out else np.zeros((0,))

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
            raise ValueError(f"interpolation must be 'linear' or 'nearest', got {interpolation!r}")
        moving.require_finite()
        grid = grid or self.fixed_geometry
        mode = "bilinear" if interpolation == "linear" else "nearest"
        sampler = VolumeSampler([moving.array], moving.geometry, self.torch_device, mode=mode)
        mapped = self.map_points(grid.voxel_centres_physical().reshape(-1, 3))
        values = torch.cat([sampler(x)[:, 0] for x in self._chunks(mapped)]).cpu().numpy()
        values = values.reshape(grid.array_shape)
        if interpolation == "nearest":
            values = np.rint(values).astype(moving.array.dtype)
        return Volume(values, grid, f"{moving.name} warped")

    def inverse_map_points(self, points_mm: np.ndarray, iterations: int = 50,
                           tolerance_mm: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
        """phi^-1 by fixed-point iteration ``x <- y - u(x)``: moving-frame points (N, 3) LPS mm -> the
        fixed-frame points that map onto them. Returns ``(x, residual_mm)`` with ``residual = |phi(x) - y|``."""
        targets = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
        x = targets.copy()
        active = np.arange(targets.shape[0])
        for _ in range(iterations):
            if active.size == 0:
                break
            updated = targets[active] - self.displacement_at(x[active])
            step = np.linalg.norm(updated - x[active], axis=1)
            x[active] = updated
            active = active[step > tolerance_mm]
        residual = np.linalg.norm(self.map_points(x) - targets, axis=1)
        return x, residual

    def propagate_fixed_label(self, label: Volume, grid: Geometry, iterations: int = 50) -> Volume:
        """A label of the fixed frame carried into the moving frame, on ``grid`` (the moving grid).

        Each voxel y of ``grid`` takes the label found at phi^-1(y) in the fixed frame: binary labels by
        trilinear interpolation thresholded at 0.5, multi-valued labels by nearest neighbour. Only voxels
        within the reach of the label (its box grown by the largest displacement) are evaluated.
        """
        if not self.fixed_geometry.matches(label.geometry):
            raise ValueError(f"{label.name} grid ({label.geometry.describe()}) does not match the fixed frame "
                             f"({self.fixed_geometry.describe()})")
        values = np.asarray(label.array)
        result = np.zeros(grid.array_shape, dtype=values.dtype)
        inside_ijk = np.argwhere(values > 0)[:, ::-1]
        if inside_ijk.size == 0:
            raise ValueError(f"{label.name} is empty: nothing to propagate")
        inside_mm = label.geometry.index_to_physical(inside_ijk)
        reach = float(np.max(np.linalg.norm(self.displacement_at(inside_mm), axis=1)))
        margin = reach + 2.0 * max(max(label.geometry.spacing), max(grid.spacing))
        low, high = inside_mm.min(0) - margin, inside_mm.max(0) + margin
        centres = grid.voxel_centres_physical().reshape(-1, 3)
        candidates = np.flatnonzero(np.all((centres >= low) & (centres <= high), axis=1))
        if candidates.size == 0:
            return Volume(result, grid, f"{label.name} propagated")
        sources, residual = self.inverse_map_points(centres[candidates], iterations)
        if np.percentile(residual, 99) > 0.1:
            warnings.warn(f"phi inverse did not converge everywhere (99th percentile residual "
                          f"{np.percentile(residual, 99):.3f} mm); the map may fold", stacklevel=2)
        binary = np.array_equal(np.unique(values), [0, 1]) or values.dtype == bool
        mode = "bilinear" if binary else "nearest"
        sampler = VolumeSampler([values.astype(np.float32)], label.geometry, self.torch_device, mode=mode)
        sampled = torch.cat([sampler(x)[:, 0] for x in self._chunks(sources)]).cpu().numpy()
        flat = result.reshape(-1)
        flat[candidates] = (sampled >= 0.5) if binary else np.rint(sampled).astype(values.dtype)
        return Volume(result, grid, f"{label.name} propagated")

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
            raise ValueError(f"not an inr-cardiac pair checkpoint (format {data.get('format')!r})")
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
            raise ValueError(f"checkpoint not found: {path}")
        return cls.from_checkpoint(torch.load(path, map_location="cpu", weights_only=True), device)
