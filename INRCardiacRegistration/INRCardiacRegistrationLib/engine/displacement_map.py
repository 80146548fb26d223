"""What every reference -> frame map can do, whatever holds it (a trained network or a sampled field).

A map is ``phi(x) = x + u(x)``: x is a point of the reference (fixed) frame in physical LPS mm, phi(x) where
that tissue is in the other (moving) frame. Subclasses provide :meth:`displacement_at`; the rest follows:
points propagate forward exactly (``map_points``); phi's inverse is found by fixed-point iteration
``x <- y - u(x)`` (``inverse_map_points``), which carries a reference label into the moving frame
(``propagate_fixed_label``).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..core.geometry import Geometry
from ..core.vocabulary import InputError
from ..core.volume import Volume
from .interpolation import VolumeSampler

EVALUATION_CHUNK = 1 << 16  # points per evaluation when sampling grids


class InverseNotConverged(UserWarning):
    """phi^-1 did not converge at some voxels that receive a propagated label; ``label_name`` says which label."""

    def __init__(self, message: str, label_name: str) -> None:
        super().__init__(message)
        self.label_name = label_name


def tensor_chunks(points_mm: np.ndarray, device: torch.device | str):
    """``points_mm`` (N, 3) as float32 tensors of at most :data:`EVALUATION_CHUNK` rows on ``device``."""
    points = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
    for start in range(0, points.shape[0], EVALUATION_CHUNK):
        yield torch.as_tensor(points[start:start + EVALUATION_CHUNK], dtype=torch.float32, device=device)


class DisplacementMap:
    """Base class: a map phi (reference -> moving frame, LPS mm) given by its displacement ``u``."""

    @property
    def torch_device(self) -> torch.device:
        return torch.device("cpu")

    def displacement_at(self, points_mm: np.ndarray) -> np.ndarray:
        """u (N, 3) in mm at reference-frame physical points (N, 3) LPS mm."""
        raise NotImplementedError

    def map_points(self, points_mm: np.ndarray) -> np.ndarray:
        """phi(x): reference-frame points (N, 3) LPS mm -> their positions in the moving frame (N, 3) LPS mm."""
        points_mm = np.asarray(points_mm, dtype=np.float64)
        return points_mm + self.displacement_at(points_mm).reshape(points_mm.shape)

    def jacobian_finite_difference(self, points_mm: np.ndarray, step_mm: float = 0.25) -> np.ndarray:
        """grad phi (N, 3, 3) at reference-frame points by central differences of ``displacement_at``
        (``J[n, i, j] = d phi_i / d x_j``, physical mm)."""
        points = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
        jacobian = np.repeat(np.eye(3)[None], points.shape[0], axis=0)
        for axis in range(3):
            offset = np.zeros(3)
            offset[axis] = step_mm
            difference = self.displacement_at(points + offset) - self.displacement_at(points - offset)
            jacobian[:, :, axis] += difference / (2.0 * step_mm)
        return jacobian

    def deformation_gradient_at(self, points_mm: np.ndarray) -> np.ndarray:
        """F = grad phi (N, 3, 3) at reference-frame points (``F[n, i, j] = d phi_i / d x_j``, LPS mm per mm).
        Here by central differences (:meth:`jacobian_finite_difference`); exact where a subclass can do better."""
        return self.jacobian_finite_difference(points_mm)

    def inverse_map_points(self, points_mm: np.ndarray, iterations: int = 100, tolerance_mm: float = 1e-3,
                           newton_iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
        """phi^-1: moving-frame points (N, 3) LPS mm -> the reference-frame points that map onto them.

        First the fixed-point iteration ``x <- y - u(x)`` from ``x = y`` (cheap; it converges where phi
        compresses or stretches by less than 2x); points where a step no longer halves ``|phi(x) - y|`` (slow or
        no convergence) continue with damped Newton steps ``x <- x - s (grad phi)^-1 (phi(x) - y)`` (grad phi by
        central differences, ``s`` halved until the residual drops; a point no step lowers is given up). Returns
        ``(x, residual_mm)`` with ``residual = |phi(x) - y|``.
        """
        targets = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
        x = targets.copy()
        error = self.map_points(x) - targets
        residual = np.linalg.norm(error, axis=1)

        def attempt(indices: np.ndarray, trial: np.ndarray) -> np.ndarray:
            """Move ``indices`` to ``trial`` where that lowers the residual; return which moved."""
            trial_error = self.map_points(trial) - targets[indices]
            trial_residual = np.linalg.norm(trial_error, axis=1)
            better = trial_residual < residual[indices]
            moved = indices[better]
            x[moved], error[moved], residual[moved] = trial[better], trial_error[better], trial_residual[better]
            return better

        stalled = np.zeros(targets.shape[0], dtype=bool)  # left to Newton: the plain step no longer halves it
        for _ in range(iterations):
            active = np.flatnonzero((residual > tolerance_mm) & ~stalled)
            if active.size == 0:
                break
            before = residual[active]
            attempt(active, x[active] - error[active])
            stalled[active[residual[active] > 0.5 * before]] = True
        hopeless = np.zeros(targets.shape[0], dtype=bool)  # no Newton step of any length lowered the residual
        for _ in range(newton_iterations):
            active = np.flatnonzero((residual > tolerance_mm) & ~hopeless)
            if active.size == 0:
                break
            jacobian = self.jacobian_finite_difference(x[active])
            usable = np.abs(np.linalg.det(jacobian)) > 1e-6
            hopeless[active[~usable]] = True
            active, jacobian = active[usable], jacobian[usable]
            if active.size == 0:
                break
            direction = np.linalg.solve(jacobian, error[active][..., None])[..., 0]
            scale = 1.0
            for _ in range(8):  # backtracking: halve the step until the residual drops
                better = attempt(active, x[active] - scale * direction)
                active, direction = active[~better], direction[~better]
                if active.size == 0:
                    break
                scale *= 0.5
            hopeless[active] = True
        return x, residual

    def propagate_fixed_label(self, label: Volume, grid: Geometry, iterations: int = 100) -> Volume:
        """A label of the reference frame carried into the moving frame, on ``grid`` (the moving grid).

        Each voxel y of ``grid`` takes the label found at phi^-1(y) in the reference frame: binary labels by
        trilinear interpolation thresholded at 0.5, multi-valued labels by nearest neighbour. Only voxels
        within the reach of the label (its box grown by the largest displacement) are evaluated.
        """
        return self.propagate_fixed_labels([label], grid, iterations)[0]

    def propagate_fixed_labels(self, labels: list[Volume], grid: Geometry, iterations: int = 100,
                               unresolved: dict[str, str] | None = None) -> list[Volume]:
        """Several labels of the reference frame carried into the moving frame (as :meth:`propagate_fixed_label`
        each) through one inverse map, computed once over the union of their reaches. Where phi^-1 did not converge
        at more than 0.1 % of the voxels it gives a label, an :class:`InverseNotConverged` warning names it, or,
        given ``unresolved``, its message is stored there under the label's name (no warning: safe in threads)."""
        boxes = []
        for label in labels:
            inside_ijk = np.argwhere(np.asarray(label.array) > 0)[:, ::-1]
            if inside_ijk.size == 0:
                raise InputError(f"{label.name} is empty: nothing to propagate")
            inside_mm = label.geometry.index_to_physical(inside_ijk)
            reach = float(np.max(np.linalg.norm(self.displacement_at(inside_mm), axis=1)))
            margin = reach + 2.0 * max(max(label.geometry.spacing), max(grid.spacing))
            boxes.append((inside_mm.min(0) - margin, inside_mm.max(0) + margin))
        centres = grid.voxel_centres_physical().reshape(-1, 3)
        within = [np.all((centres >= low) & (centres <= high), axis=1) for low, high in boxes]
        candidates = np.flatnonzero(np.any(within, axis=0))
        sources, residual = (None, None)
        if candidates.size:
            sources, residual = self.inverse_map_points(centres[candidates], iterations)
        return [self._sample_label(label, grid, candidates, sources, residual, unresolved) for label in labels]

    def _sample_label(self, label: Volume, grid: Geometry, candidates: np.ndarray, sources: np.ndarray | None,
                      residual: np.ndarray | None, unresolved_messages: dict[str, str] | None) -> Volume:
        """``label`` sampled at ``sources`` = phi^-1 of the ``candidates`` voxels of ``grid`` (zero elsewhere)."""
        values = np.asarray(label.array)
        result = np.zeros(grid.array_shape, dtype=values.dtype)
        if candidates.size == 0:
            return Volume(result, grid, f"{label.name} propagated")
        binary = np.array_equal(np.unique(values), [0, 1]) or values.dtype == bool
        mode = "bilinear" if binary else "nearest"
        sampler = VolumeSampler([values.astype(np.float32)], label.geometry, self.torch_device, mode=mode)
        sampled = torch.cat([sampler(x)[:, 0] for x in tensor_chunks(sources, self.torch_device)]).cpu().numpy()
        # Where the inverse matters: the voxels that receive the label.
        labelled = sampled >= 0.5
        unresolved = int(np.count_nonzero(residual[labelled] > 0.1))
        if unresolved > 0.001 * max(int(labelled.sum()), 1):
            message = (f"phi inverse did not converge for {unresolved} of the {int(labelled.sum())} voxels given the "
                       f"label of {label.name} (residual > 0.1 mm); the map may fold")
            if unresolved_messages is None:
                warnings.warn(InverseNotConverged(message, label.name), stacklevel=3)
            else:
                unresolved_messages[label.name] = message
        flat = result.reshape(-1)
        flat[candidates] = (sampled >= 0.5) if binary else np.rint(sampled).astype(values.dtype)
        return Volume(result, grid, f"{label.name} propagated")


class SampledDisplacementMap(DisplacementMap):
    """phi given by a displacement field sampled on a grid: trilinear between voxel centres, as ITK applies an
    exported displacement-field file. Outside the grid the border value is repeated here (as VTK and Slicer do),
    while ITK uses the identity; the fields a run writes are zero on their border, so all of them agree.

    ``displacement_mm``: (k, j, i, 3) LPS mm on ``grid`` (the reference frame's field grid).
    """

    def __init__(self, displacement_mm: np.ndarray, grid: Geometry, device: torch.device | str = "cpu") -> None:
        displacement_mm = np.asarray(displacement_mm, dtype=np.float64)
        if displacement_mm.shape != (*grid.array_shape, 3):
            raise InputError(f"displacement array shape {displacement_mm.shape} does not match the grid "
                             f"{(*grid.array_shape, 3)}")
        self.grid = grid
        self.displacement_mm = displacement_mm
        self._device = torch.device(device)
        self._sampler = VolumeSampler([displacement_mm[..., c] for c in range(3)], grid, self._device)

    @property
    def torch_device(self) -> torch.device:
        return self._device

    @torch.no_grad()
    def displacement_at(self, points_mm: np.ndarray) -> np.ndarray:
        out = [self._sampler(x) for x in tensor_chunks(points_mm, self._device)]
        return torch.cat(out).double().cpu().numpy() if out else np.zeros((0, 3))

    def deformation_gradient_at(self, points_mm: np.ndarray) -> np.ndarray:
        """F = grad phi (N, 3, 3) by central differences one grid spacing either side (the trilinear field's
        gradient is constant within a cell and jumps between cells; this averages it over two cells)."""
        return self.jacobian_finite_difference(points_mm, step_mm=float(min(self.grid.spacing)))
