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
from scipy import ndimage

from ..core.geometry import Geometry
from ..core.sdf import kept_signed_distance_mm
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


def numpy_in_chunks(function, points_mm: np.ndarray, device: torch.device | str) -> np.ndarray:
    """``function`` (a float32 tensor (n, 3) -> (n, 3)) applied to ``points_mm`` (N, 3) chunk by chunk: (N, 3)
    float64."""
    out = [function(x) for x in tensor_chunks(points_mm, device)]
    return torch.cat(out).double().cpu().numpy() if out else np.zeros((0, 3))


def voxels_within(grid: Geometry, boxes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The voxels of ``grid`` whose centres lie in any of the physical boxes ``(low, high)`` (LPS mm): their flat
    indices into a (k, j, i) array, ascending, and their centres (N, 3). Only the block of the grid's index space
    that holds the boxes' corners is looked at."""
    corners = np.array([[(low, high)[(n >> axis) & 1][axis] for axis in range(3)]
                        for low, high in boxes for n in range(8)])
    ijk = grid.physical_to_index(corners)
    size = np.asarray(grid.size)
    first = np.clip(np.floor(ijk.min(0)).astype(int), 0, size - 1)
    last = np.clip(np.ceil(ijk.max(0)).astype(int), 0, size - 1)
    if np.any(ijk.max(0) < 0) or np.any(ijk.min(0) > size - 1):
        return np.zeros(0, dtype=np.int64), np.zeros((0, 3))
    k, j, i = np.meshgrid(*(np.arange(first[a], last[a] + 1) for a in (2, 1, 0)), indexing="ij")
    block = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
    centres = grid.index_to_physical(block)
    inside = np.zeros(len(block), dtype=bool)
    for low, high in boxes:
        inside |= np.all((centres >= low) & (centres <= high), axis=1)
    block = block[inside]
    return np.ravel_multi_index((block[:, 2], block[:, 1], block[:, 0]), grid.array_shape), centres[inside]


def near_label(label: Volume, margin_mm: float) -> np.ndarray:
    """The voxels of ``label``'s grid (k, j, i) that may lie within ``margin_mm`` of a voxel of ``label > 0``: a
    superset, the label dilated by a box of ``margin_mm / spacing + 1/2`` voxels along each axis (the half voxel
    covers a point's rounding to its nearest voxel)."""
    radius = np.ceil(margin_mm / np.asarray(label.geometry.spacing) + 0.5).astype(int)  # (i, j, k)
    return ndimage.maximum_filter((np.asarray(label.array) > 0).astype(np.uint8), size=tuple(2 * radius[::-1] + 1),
                                  mode="constant", cval=0) > 0


def within_reach(label: Volume, margin_mm: float, points_mm: np.ndarray) -> np.ndarray:
    """Which points (N, 3) LPS mm may lie within ``margin_mm`` of a voxel of ``label > 0`` (:func:`near_label` at
    each point's nearest voxel). Points beyond the label's grid are all kept."""
    geometry = label.geometry
    index = np.rint(geometry.physical_to_index(points_mm)).astype(np.int64)
    on_grid = np.all((index >= 0) & (index < np.asarray(geometry.size)), axis=1)
    keep = ~on_grid
    index = index[on_grid]
    keep[on_grid] = near_label(label, margin_mm)[index[:, 2], index[:, 1], index[:, 0]]
    return keep


def _is_binary(values: np.ndarray) -> bool:
    """Whether a label array holds exactly the values 0 and 1 (or is boolean), without sorting it."""
    if values.dtype == bool:
        return True
    if values.min() != 0 or values.max() != 1:
        return False
    return np.issubdtype(values.dtype, np.integer) or bool(np.all((values == 0) | (values == 1)))


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

    def displacement_tensor(self, points_mm: torch.Tensor) -> torch.Tensor:
        """u (N, 3) in mm at reference-frame points (N, 3) LPS mm given as a float32 tensor on :attr:`torch_device`
        (the inverse map's inner loop; subclasses avoid the round trip through numpy)."""
        values = self.displacement_at(points_mm.detach().cpu().numpy())
        return torch.as_tensor(values, dtype=points_mm.dtype, device=points_mm.device)

    def jacobian_tensor(self, points_mm: torch.Tensor, step_mm: float = 0.25) -> torch.Tensor:
        """grad phi (N, 3, 3) at reference-frame points (N, 3) float32 LPS mm on :attr:`torch_device`, by central
        differences of :meth:`displacement_tensor` (``J[n, i, j] = d phi_i / d x_j``; the six offsets in one call)."""
        offsets = step_mm * torch.eye(3, dtype=points_mm.dtype, device=points_mm.device)
        shifted = torch.cat([points_mm[None] + offsets[:, None], points_mm[None] - offsets[:, None]])  # (6, N, 3)
        values = self.displacement_tensor(shifted.reshape(-1, 3)).reshape(2, 3, -1, 3)  # (+/-, axis j, N, i)
        difference = (values[0] - values[1]).permute(1, 2, 0) / (2.0 * step_mm)  # (N, i, j)
        return difference + torch.eye(3, dtype=difference.dtype, device=difference.device)

    @torch.no_grad()
    def inverse_map_points(self, points_mm: np.ndarray, iterations: int = 100, tolerance_mm: float = 1e-3,
                           newton_iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
        """phi^-1: moving-frame points (N, 3) LPS mm -> the reference-frame points that map onto them.

        First the fixed-point iteration ``x <- y - u(x)`` from ``x = y`` (cheap; it converges where phi
        compresses or stretches by less than 2x); points where a step no longer halves ``|phi(x) - y|`` (slow or
        no convergence) continue with damped Newton steps ``x <- x - s (grad phi)^-1 (phi(x) - y)`` (grad phi by
        central differences, ``s`` halved until the residual drops; a point no step lowers is given up). A step is
        taken only where it lowers the residual. Returns ``(x, residual_mm)`` with ``residual = |phi(x) - y|``.

        Computed in float32 tensors on :attr:`torch_device`: positions of a few hundred mm carry ~1e-5 mm of
        rounding, far below the tolerance.
        """
        y = torch.as_tensor(np.asarray(points_mm, dtype=np.float64).reshape(-1, 3), dtype=torch.float32,
                            device=self.torch_device)
        x = y.clone()
        error = self.displacement_tensor(x)  # phi(x) - y at x = y
        residual = torch.linalg.vector_norm(error, dim=1)

        def attempt(indices: torch.Tensor, trial: torch.Tensor) -> torch.Tensor:
            """Move ``indices`` to ``trial`` where that lowers the residual; return which moved."""
            trial_error = trial + self.displacement_tensor(trial) - y[indices]
            trial_residual = torch.linalg.vector_norm(trial_error, dim=1)
            better = trial_residual < residual[indices]
            moved = indices[better]
            x[moved], error[moved], residual[moved] = trial[better], trial_error[better], trial_residual[better]
            return better

        active = torch.nonzero(residual > tolerance_mm).squeeze(1)
        for _ in range(iterations):
            if active.numel() == 0:
                break
            before = residual[active]
            attempt(active, x[active] - error[active])
            after = residual[active]
            active = active[(after <= 0.5 * before) & (after > tolerance_mm)]  # the rest: converged, or to Newton
        hopeless = torch.zeros(len(y), dtype=torch.bool, device=y.device)  # no Newton step lowered the residual
        for _ in range(newton_iterations):
            active = torch.nonzero((residual > tolerance_mm) & ~hopeless).squeeze(1)
            if active.numel() == 0:
                break
            jacobian = self.jacobian_tensor(x[active])
            usable = torch.linalg.det(jacobian).abs() > 1e-6
            hopeless[active[~usable]] = True
            active, jacobian = active[usable], jacobian[usable]
            if active.numel() == 0:
                break
            direction = torch.linalg.solve(jacobian, error[active])
            scale = 1.0
            for _ in range(8):  # backtracking: halve the step until the residual drops
                better = attempt(active, x[active] - scale * direction)
                active, direction = active[~better], direction[~better]
                if active.numel() == 0:
                    break
                scale *= 0.5
            hopeless[active] = True
        return x.double().cpu().numpy(), residual.double().cpu().numpy()

    def propagate_fixed_label(self, label: Volume, grid: Geometry, iterations: int = 100) -> Volume:
        """A label of the reference frame carried into the moving frame, on ``grid`` (the moving grid).

        Each voxel y of ``grid`` takes the label found at phi^-1(y) in the reference frame: a binary label is
        inside where its signed distance (mm, :func:`~..core.sdf.signed_distance_mm`), interpolated trilinearly,
        is negative (shape-based interpolation: between thick slices the surface moves smoothly from one slice's
        contour to the next, where interpolating the 0/1 values would jump halfway between them); a multi-valued
        label by nearest neighbour. Only voxels within the reach of the label are evaluated.
        """
        return self.propagate_fixed_labels([label], grid, iterations)[0]

    def propagate_fixed_labels(self, labels: list[Volume], grid: Geometry, iterations: int = 100,
                               unresolved: dict[str, str] | None = None) -> list[Volume]:
        """Several labels of the reference frame carried into the moving frame (as :meth:`propagate_fixed_label`
        each) through one inverse map, computed once over the union of their reaches. Where phi^-1 did not converge
        at more than 0.1 % of the voxels it gives a label, an :class:`InverseNotConverged` warning names it, or,
        given ``unresolved``, its message is stored there under the label's name (no warning: safe in threads)."""
        boxes, margins = [], []
        for label in labels:
            inside_ijk = np.argwhere(np.asarray(label.array) > 0)[:, ::-1]
            if inside_ijk.size == 0:
                raise InputError(f"{label.name} is empty: nothing to propagate")
            inside_mm = label.geometry.index_to_physical(inside_ijk)
            reach = float(np.max(np.linalg.norm(self.displacement_at(inside_mm), axis=1)))
            margins.append(reach + 2.0 * max(max(label.geometry.spacing), max(grid.spacing)))
            boxes.append((inside_mm.min(0) - margins[-1], inside_mm.max(0) + margins[-1]))
        # the voxels of grid near enough to a label to receive it (as far as its reach)
        if all(label.geometry.matches(grid) for label in labels):
            near = np.zeros(grid.array_shape, dtype=bool)
            for label, margin in zip(labels, margins, strict=True):
                near |= near_label(label, margin)
            candidates = np.flatnonzero(near)
            k, j, i = np.unravel_index(candidates, grid.array_shape)
            centres = grid.index_to_physical(np.stack([i, j, k], axis=1))
        else:
            candidates, centres = voxels_within(grid, boxes)
            if candidates.size:
                near = np.zeros(len(candidates), dtype=bool)
                for label, margin in zip(labels, margins, strict=True):
                    near |= within_reach(label, margin, centres)
                candidates, centres = candidates[near], centres[near]
        sources, residual = (None, None)
        if candidates.size:
            sources, residual = self.inverse_map_points(centres, iterations)
        return [self._sample_label(label, grid, candidates, sources, residual, unresolved) for label in labels]

    def _sample_label(self, label: Volume, grid: Geometry, candidates: np.ndarray, sources: np.ndarray | None,
                      residual: np.ndarray | None, unresolved_messages: dict[str, str] | None) -> Volume:
        """``label`` sampled at ``sources`` = phi^-1 of the ``candidates`` voxels of ``grid`` (zero elsewhere)."""
        values = np.asarray(label.array)
        result = np.zeros(grid.array_shape, dtype=values.dtype)
        if candidates.size == 0:
            return Volume(result, grid, f"{label.name} propagated")
        binary = _is_binary(values) and not np.all(values)  # a label filling its grid has no surface
        if binary:
            sampler = VolumeSampler([kept_signed_distance_mm(label).array], label.geometry, self.torch_device)
        else:
            sampler = VolumeSampler([values.astype(np.float32)], label.geometry, self.torch_device, mode="nearest")
        sampled = torch.cat([sampler(x)[:, 0] for x in tensor_chunks(sources, self.torch_device)]).cpu().numpy()
        # Where the inverse matters: the voxels that receive the label.
        labelled = sampled < 0 if binary else sampled >= 0.5
        unresolved = int(np.count_nonzero(residual[labelled] > 0.1))
        if unresolved > 0.001 * max(int(labelled.sum()), 1):
            message = (f"phi inverse did not converge for {unresolved} of the {int(labelled.sum())} voxels given the "
                       f"label of {label.name} (residual > 0.1 mm); the map may fold")
            if unresolved_messages is None:
                warnings.warn(InverseNotConverged(message, label.name), stacklevel=3)
            else:
                unresolved_messages[label.name] = message
        flat = result.reshape(-1)
        flat[candidates] = labelled if binary else np.rint(sampled).astype(values.dtype)
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
        return numpy_in_chunks(self._sampler, points_mm, self._device)

    @torch.no_grad()
    def displacement_tensor(self, points_mm: torch.Tensor) -> torch.Tensor:
        return self._sampler(points_mm)  # one grid_sample call: no network activations to bound

    def deformation_gradient_at(self, points_mm: np.ndarray) -> np.ndarray:
        """F = grad phi (N, 3, 3) by central differences one grid spacing either side (the trilinear field's
        gradient is constant within a cell and jumps between cells; this averages it over two cells)."""
        return self.jacobian_finite_difference(points_mm, step_mm=float(min(self.grid.spacing)))

    def deformation_gradient_at_nodes(self, ijk: np.ndarray) -> np.ndarray:
        """F = grad phi (N, 3, 3) at the grid's nodes ``ijk`` ((N, 3) integer (i, j, k) indices) by central
        differences of the node values one node either side along each index axis, taken to physical mm through
        the grid's direction and spacing; at the grid's edge the outermost value is repeated (as beyond the border).
        On an axis-aligned grid this equals :meth:`deformation_gradient_at` at the nodes' centres (trilinear
        interpolation is linear along each axis within a cell), without interpolating."""
        ijk = np.asarray(ijk, dtype=np.int64).reshape(-1, 3)
        size = np.asarray(self.grid.size)
        if len(ijk) and (ijk.min() < 0 or np.any(ijk.max(axis=0) >= size)):
            raise InputError(f"node indices outside the grid {tuple(size)}")
        differences = np.empty((len(ijk), 3, 3))  # [n, component i, index axis a]
        for axis in range(3):
            step = np.zeros(3, dtype=np.int64)
            step[axis] = 1
            ahead, behind = np.minimum(ijk + step, size - 1), np.maximum(ijk - step, 0)
            differences[:, :, axis] = (self.displacement_mm[ahead[:, 2], ahead[:, 1], ahead[:, 0]]
                                       - self.displacement_mm[behind[:, 2], behind[:, 1], behind[:, 0]]) / 2.0
        per_mm = np.linalg.inv(self.grid.index_to_physical_matrix)  # d(index) / d(mm)
        return np.eye(3) + differences @ per_mm
