"""The grid a run's transforms are written on, and the taper that gives each written field an honest edge.

Beyond its grid, ITK and SimpleITK apply a displacement field as the identity (zero displacement), while VTK's
grid transform, which Slicer uses, repeats the displacement of the grid's outermost nodes. The two agree only
where that outermost layer is zero, so every written field is multiplied by a weight that is 1 on the *core* (the
box of reference-grid nodes that holds the sampling mask and the landmarks, so that trilinear interpolation
anywhere inside it only uses nodes of weight 1: the field there is the network's, unchanged) and falls linearly to
exactly 0 on the grid's outermost nodes, over the margin around the core. A linear ramp has the smallest steepest
slope (1 / width): the tapered map cannot fold in the margin where the displacement there is smaller than the
ramp's width (a raised cosine folds from 2 / pi of it); :meth:`FieldRegion.margin_folds` counts the margin nodes
where a written field folds anyway.

Where the sampling mask reaches the image's first or last plane, the image cuts the heart (a cine MRI's stack of
10 mm slices ends inside the base): from frame to frame tissue from beyond the image moves into it (at end-systole
the base descends about 10-15 mm towards the apex), and a label carried there comes from beyond the image (its
signed distance is extended beyond the image as the border's). The map there must be the network's, so on such a
side the core reaches ``margin_mm`` beyond the mask (as far as the largest displacement the taper is built to bring
to zero). Tapering from the last slice instead shrank that tissue's motion: ACDC patient001's ED -> ES myocardium
Dice was 0.846 through the written field against 0.857 through the network (the voxels that differed lay in the
stack's first slice), patient005's 0.882 against 0.890; with the core reaching beyond, the two agree (0.8565 /
0.8565 and 0.8904 / 0.8903).

- ``region="heart"``: the grid is the core grown by ``margin_mm`` (at least one voxel) on every side, on the
  reference grid's lattice but not cut to the image, so the taper always has the whole margin to fall over. The
  network is evaluated on the core grown by one node only (:meth:`FieldRegion.extend_evaluated`): every further
  margin node takes the value of the evaluated node nearest to it (indices clamped to the box), then the taper. A
  network is untrained outside the sampling mask; what the margin needs is a displacement that goes smoothly to
  zero, and the box's edge value falling linearly is that (the criterion for folding is unchanged), for less than
  half the evaluations.
- ``region="full"``: the grid is the whole reference grid; the taper runs over the ``margin_mm`` band at its
  border (narrower where the core comes closer to the border; none on a side the core touches); it does not reach
  beyond the image.

Indices are (i, j, k) of the reference grid; arrays are (k, j, i) as everywhere in the Lib; mm are LPS.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..core.geometry import Geometry
from ..core.vocabulary import InputError
from ..core.volume import Volume
from ..fileio.displacement_field import displacement_image


@dataclass(frozen=True)
class FieldRegion:
    """A field grid and its taper: ``core_low``/``core_high`` (inclusive, (i, j, k) indices of ``grid``) bound
    the nodes of weight 1; ``ramp_low``/``ramp_high`` are the widths (voxels) over which the weight falls to 0
    at each side's outermost node (0: no taper on that side)."""

    grid: Geometry
    core_low: tuple[int, int, int]
    core_high: tuple[int, int, int]
    ramp_low: tuple[int, int, int]
    ramp_high: tuple[int, int, int]

    def weights(self) -> np.ndarray:
        """The taper weight of every node, (k, j, i), in [0, 1] (computed once per region; read-only)."""
        return self._weights

    @functools.cached_property
    def _weights(self) -> np.ndarray:
        per_axis = []
        for axis in range(3):
            n = np.arange(self.grid.size[axis], dtype=np.float64)
            weight = np.ones_like(n)
            low, high = self.ramp_low[axis], self.ramp_high[axis]
            last = self.grid.size[axis] - 1
            if low:
                weight = np.minimum(weight, np.clip(n / low, 0.0, 1.0))
            if high:
                weight = np.minimum(weight, np.clip((last - n) / high, 0.0, 1.0))
            per_axis.append(weight)
        w_i, w_j, w_k = per_axis
        weights = w_k[:, None, None] * w_j[None, :, None] * w_i[None, None, :]
        weights.setflags(write=False)
        return weights

    @functools.cached_property
    def evaluated_box(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)``: inclusive (i, j, k) bounds of the nodes where the maps are evaluated: the core grown by
        one node on every side (within the grid), so that central differences at the core's outermost nodes (the
        folding metric) still see the map's own values on both sides."""
        low = np.maximum(np.asarray(self.core_low) - 1, 0)
        high = np.minimum(np.asarray(self.core_high) + 1, np.asarray(self.grid.size) - 1)
        return low, high

    def evaluated_points(self) -> np.ndarray:
        """The centres (N, 3) LPS mm of the nodes of :attr:`evaluated_box`, in (k, j, i) order."""
        return self.grid.voxel_centres_physical(*self.evaluated_box).reshape(-1, 3)

    def extend_evaluated(self, displacement_mm: np.ndarray) -> np.ndarray:
        """The field (k, j, i, 3) on :attr:`grid` from its values at :meth:`evaluated_points` ((N, 3), their order):
        unchanged there, and on every other node the value of the evaluated node nearest to it (each index clamped
        to the box). Not yet tapered."""
        low, high = self.evaluated_box
        shape = tuple(int(n) for n in (high - low + 1)[::-1])
        values = np.asarray(displacement_mm).reshape(*shape, 3)
        clamped = [np.clip(np.arange(self.grid.size[axis]), low[axis], high[axis]) - low[axis] for axis in range(3)]
        return values[np.ix_(clamped[2], clamped[1], clamped[0])]

    def nodes_at(self, points_mm: np.ndarray) -> np.ndarray:
        """The (i, j, k) indices (N, 3) of the grid's nodes at ``points_mm`` (N, 3) LPS mm, which must be nodes (every
        reference voxel centre is one)."""
        ijk = self.grid.physical_to_index(np.asarray(points_mm, dtype=np.float64))
        nodes = np.rint(ijk).astype(int)
        if len(ijk) and np.abs(ijk - nodes).max() > 1e-3:
            raise InputError("nodes_at: a point is not a node of the field grid")
        return nodes

    def taper(self, displacement_mm: np.ndarray) -> np.ndarray:
        """``displacement_mm`` (k, j, i, 3) on :attr:`grid` times the taper weights."""
        displacement_mm = np.asarray(displacement_mm)
        if displacement_mm.shape != (*self.grid.array_shape, 3):
            raise InputError(f"displacement array shape {displacement_mm.shape} does not match the field grid "
                             f"{(*self.grid.array_shape, 3)}")
        return displacement_mm * self.weights()[..., None]

    def margin_folds(self, tapered_mm: np.ndarray) -> int:
        """How many nodes of the margin (weight < 1) have a Jacobian determinant <= 0 in the tapered field
        ``tapered_mm`` (k, j, i, 3): where the margin is too narrow for the displacement it has to bring to zero
        (SimpleITK's DisplacementFieldJacobianDeterminant, central differences in mm)."""
        determinant = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(
            displacement_image(tapered_mm, self.grid)))
        return int(np.count_nonzero((determinant <= 0) & (self.weights() < 1.0)))


def field_lattice(reference: Geometry) -> Geometry:
    """The lattice a run's fields are written on: the reference grid, with every axis whose spacing is more than
    twice the finest one divided into equal parts until it is at most twice as fine (a cine MRI's 10 mm slices at
    1.5 mm pixels: 2.5 mm). Every reference voxel centre is a node of it. A field sampled only on thick slices
    interpolates the motion linearly across them, which the network does not, and its central differences over two
    slices (20 mm) report folds that the network does not have (ACDC cine MRI: 0.229 % of the sampling mask in a
    frame where the network has none). Isotropic grids are their own lattice."""
    spacing = np.asarray(reference.spacing, dtype=np.float64)
    parts = np.maximum(np.ceil(spacing / (2.0 * spacing.min()) - 1e-9), 1).astype(int)
    if np.all(parts == 1):
        return reference
    size = (np.asarray(reference.size) - 1) * parts + 1
    return Geometry(_ints(size), tuple(float(v) for v in spacing / parts), reference.origin, reference.direction)


def field_region(reference: Geometry, mask: Volume, landmarks_lps: np.ndarray | None = None, *,
                 region: str = "heart", margin_mm: float = 20.0, grid: Geometry | None = None) -> FieldRegion:
    """The field grid and taper of a run whose sampling mask is ``mask`` (on the ``reference`` grid) and whose
    reference landmarks are ``landmarks_lps`` ((N, 3) LPS mm, or None); ``region`` and ``margin_mm`` are
    :class:`~.request.CycleConfig`'s ``field_region`` and ``field_margin_mm``. The grid lies on
    :func:`field_lattice`. ``grid``: the field grid a run already has (a resumed run keeps the grid it started with,
    also one made on the reference grid's own lattice, or before the grid could reach beyond the image); it must
    lie on one of the two lattices and hold the core, else the grid is made anew."""
    points = reference.index_to_physical(np.argwhere(np.asarray(mask.array) > 0)[:, ::-1].astype(np.float64))
    if landmarks_lps is not None and len(landmarks_lps):
        points = np.concatenate([points, np.asarray(landmarks_lps, dtype=np.float64)])
    if not len(points):
        raise InputError("the sampling mask is empty: no field region")
    lattice = field_lattice(reference)
    core_low, core_high = _core(lattice, points)
    margin = _margin_nodes(lattice, margin_mm)
    cut_low, cut_high = _cut_sides(mask)
    wide_low, wide_high = core_low - margin * cut_low, core_high + margin * cut_high
    if grid is not None and not _holds(grid, lattice, wide_low, wide_high):
        # a run begun before the core reached beyond the image, or before the lattice was refined, keeps its grid
        if _holds(grid, lattice, core_low, core_high):
            wide_low, wide_high = core_low, core_high
        elif lattice is not reference and _holds(grid, reference, *_core(reference, points)):
            lattice = reference
            wide_low, wide_high = _core(lattice, points)
            margin = _margin_nodes(lattice, margin_mm)
    core_low, core_high = wide_low, wide_high
    if grid is None or not _holds(grid, lattice, core_low, core_high):
        grid = lattice if region == "full" else lattice.subgrid(core_low - margin, core_high + margin, clip=False)
    offset = np.rint(lattice.physical_to_index(np.asarray([grid.origin]))[0]).astype(int)
    size = np.asarray(grid.size)
    low, high = np.clip(core_low - offset, 0, size - 1), np.clip(core_high - offset, 0, size - 1)
    return FieldRegion(grid, _ints(low), _ints(high), _ints(np.minimum(margin, low)),
                       _ints(np.minimum(margin, size - 1 - high)))


def _margin_nodes(lattice: Geometry, margin_mm: float) -> np.ndarray:
    """``margin_mm`` in nodes of ``lattice`` along (i, j, k), at least one."""
    return np.maximum(np.ceil(margin_mm / np.asarray(lattice.spacing) - 1e-9), 1).astype(int)


def _cut_sides(mask: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Per axis (i, j, k), 1 where ``mask`` reaches the first (``low``) or last (``high``) plane of its image: there
    the image cuts the region (a cine MRI's stack ends inside the heart), else 0."""
    inside = np.argwhere(np.asarray(mask.array) > 0)[:, ::-1]
    if not len(inside):
        return np.zeros(3, dtype=int), np.zeros(3, dtype=int)
    size = np.asarray(mask.geometry.size)
    return (inside.min(axis=0) == 0).astype(int), (inside.max(axis=0) == size - 1).astype(int)


def _core(lattice: Geometry, points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inclusive (i, j, k) box of ``lattice`` nodes around ``points_mm`` (points on nodes stay on them)."""
    ijk = lattice.physical_to_index(points_mm)
    return np.floor(ijk.min(axis=0) + 1e-6).astype(int), np.ceil(ijk.max(axis=0) - 1e-6).astype(int)


def _holds(grid: Geometry, lattice: Geometry, core_low: np.ndarray, core_high: np.ndarray) -> bool:
    """Whether ``grid`` lies on ``lattice`` (same spacing and direction, origin on a node) and holds the core box."""
    if not (np.allclose(grid.spacing, lattice.spacing) and np.allclose(grid.direction, lattice.direction)):
        return False
    origin = lattice.physical_to_index(np.asarray([grid.origin]))[0]
    if not np.allclose(origin, np.rint(origin), atol=1e-3):
        return False
    low = np.rint(origin).astype(int)
    return bool(np.all(low <= core_low) and np.all(low + np.asarray(grid.size) - 1 >= core_high))


def _ints(values) -> tuple[int, int, int]:
    return tuple(int(v) for v in values)
