"""Maps given by a sampled displacement field: agreement with SimpleITK's own displacement-field transform,
the robust inverse (where the plain fixed-point iteration diverges), and label propagation."""

import numpy as np
import SimpleITK as sitk
from helpers import oblique_direction
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.metrics import dice
from INRCardiacRegistrationLib.core.sdf import signed_distance_mm
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.engine.displacement_map import SampledDisplacementMap
from INRCardiacRegistrationLib.fileio.displacement_field import displacement_image

GRID = Geometry((30, 28, 26), (1.5, 1.25, 2.0), (-20.0, 10.0, 5.0), oblique_direction())


def _centred(grid: Geometry) -> np.ndarray:
    points = grid.voxel_centres_physical()
    return points - grid.index_to_physical((np.asarray(grid.size) - 1) / 2.0)


def test_sampled_map_agrees_with_simpleitk(rng):
    """Trilinear interpolation of the field == ITK's DisplacementFieldTransform, on an oblique grid."""
    r = _centred(GRID)
    u = np.stack([3 * np.sin(r[..., 1] / 9), 2 * np.cos(r[..., 0] / 7), r[..., 2] / 10], axis=-1)
    ours = SampledDisplacementMap(u, GRID)
    transform = sitk.DisplacementFieldTransform(displacement_image(u, GRID))
    points = GRID.index_to_physical(rng.uniform(1, np.asarray(GRID.size) - 2, size=(300, 3)))
    theirs = np.array([transform.TransformPoint(tuple(map(float, p))) for p in points])
    assert np.abs(ours.map_points(points) - theirs).max() < 1e-4


def test_inverse_converges_where_the_map_stretches_more_than_twofold():
    """u = 2.5 x along one axis near the centre (grad phi = 3.5): the plain iteration x <- y - u(x) diverges
    there; the damped Newton steps still find phi^-1."""
    r = _centred(GRID)
    stretch = 2.5 * np.exp(-np.sum(r ** 2, axis=-1) / (2 * 6.0 ** 2))
    u = np.zeros((*GRID.array_shape, 3))
    u[..., 0] = stretch * r[..., 0]
    field = SampledDisplacementMap(u, GRID)
    centre = GRID.index_to_physical((np.asarray(GRID.size) - 1) / 2.0)
    sources = centre + np.random.default_rng(0).uniform(-4, 4, size=(200, 3))
    targets = field.map_points(sources)
    recovered, residual = field.inverse_map_points(targets)
    assert residual.max() < 1e-3
    assert np.abs(field.map_points(recovered) - targets).max() < 1e-3
    # the plain fixed-point iteration alone does not get there
    x = targets.copy()
    for _ in range(100):
        x = targets - field.displacement_at(x)
    assert np.linalg.norm(field.map_points(x) - targets, axis=1).max() > 0.1


def test_propagated_label_follows_a_known_translation():
    """A constant displacement of 3 voxels along i moves a reference label by 3 voxels in the moving frame."""
    grid = Geometry((24, 20, 16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    u = np.zeros((*grid.array_shape, 3))
    u[..., 0] = 3.0
    label = np.zeros(grid.array_shape, np.uint8)
    label[5:10, 6:12, 4:9] = 1
    propagated = SampledDisplacementMap(u, grid).propagate_fixed_label(Volume(label, grid, "box"), grid).array
    expected = np.zeros_like(label)
    expected[5:10, 6:12, 7:12] = 1
    assert dice(propagated, expected) == 1.0


def test_labels_carried_together_equal_each_carried_alone():
    """propagate_fixed_labels shares one inverse map over the union of the labels' reaches: a binary and a
    multi-valued label (one far from the other) come out exactly as when each is propagated on its own."""
    r = _centred(GRID)
    u = np.stack([1.5 * np.sin(r[..., 1] / 5.0), 1.0 * np.cos(r[..., 0] / 6.0), 0.5 * np.sin(r[..., 2] / 4.0)], -1)
    field = SampledDisplacementMap(u, GRID)
    near = np.zeros(GRID.array_shape, np.uint8)
    near[8:14, 8:16, 9:15] = 1
    far = np.zeros(GRID.array_shape, np.uint8)
    far[2:6, 3:7, 2:8] = 3
    far[2:6, 3:7, 8:12] = 7
    labels = [Volume(near, GRID, "near"), Volume(far, GRID, "far")]
    together = field.propagate_fixed_labels(labels, GRID)
    for label, carried in zip(labels, together, strict=True):
        alone = field.propagate_fixed_label(label, GRID)
        assert np.array_equal(carried.array, alone.array) and carried.array.dtype == label.array.dtype
    assert set(np.unique(together[1].array)) == {0, 3, 7} and together[0].array.sum() > 0


def test_folding_of_a_sampled_field_agrees_with_simpleitk():
    """det grad phi at the grid's nodes (central differences one spacing wide: the run's folding metric) ==
    SimpleITK's DisplacementFieldJacobianDeterminantFilter at the interior nodes, on an axis-aligned anisotropic grid
    whose field folds somewhere (the filter takes differences along the index axes)."""
    grid = Geometry((30, 28, 26), (1.5, 1.25, 2.0), (-20.0, 10.0, 5.0))
    r = _centred(grid)
    u = np.stack([4.0 * np.sin(r[..., 0] / 3.0), 2 * np.cos(r[..., 0] / 7), r[..., 2] / 10], axis=-1)
    ours = np.linalg.det(SampledDisplacementMap(u, grid).deformation_gradient_at(grid.voxel_centres_physical()
                                                                                  .reshape(-1, 3)))
    ours = ours.reshape(grid.array_shape)[1:-1, 1:-1, 1:-1]
    theirs = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(displacement_image(u, grid)))
    theirs = theirs[1:-1, 1:-1, 1:-1]
    assert (theirs <= 0).mean() > 0.05 and (theirs > 0).mean() > 0.05  # it folds in places, not everywhere
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.array_equal(ours <= 0, theirs <= 0)


class _NoInverse(SampledDisplacementMap):
    """The identity map whose inverse search reports failure (residual 1 mm) at every voxel: a stand-in for a map
    that folds, so that only the reporting of non-convergence is tested here."""

    def inverse_map_points(self, points_mm, iterations=100, tolerance_mm=1e-3, newton_iterations=30):
        points = np.asarray(points_mm, dtype=np.float64)
        return points.copy(), np.ones(len(points))


def test_non_convergence_is_a_warning_or_a_message_for_the_caller():
    """Without ``unresolved`` a label whose inverse failed is named in an InverseNotConverged warning; with it (what
    threads use: the warnings machinery is not thread-safe) the message lands there and nothing is warned."""
    import warnings

    import pytest
    from INRCardiacRegistrationLib.engine.displacement_map import InverseNotConverged

    label = np.zeros(GRID.array_shape, np.uint8)
    label[8:14, 8:16, 9:15] = 1
    field = _NoInverse(np.zeros((*GRID.array_shape, 3)), GRID)
    with pytest.warns(InverseNotConverged, match="of the 288 voxels given the label of cavity") as caught:
        field.propagate_fixed_labels([Volume(label, GRID, "cavity")], GRID)
    assert caught[0].message.label_name == "cavity"
    unresolved = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        carried = field.propagate_fixed_labels([Volume(label, GRID, "cavity")], GRID, unresolved=unresolved)
    assert set(unresolved) == {"cavity"} and "288 of the 288 voxels" in unresolved["cavity"]
    assert np.array_equal(carried[0].array, label)


def _every_voxel_propagated(field: SampledDisplacementMap, label: Volume, grid: Geometry) -> np.ndarray:
    """The reference answer without any shortcut: phi^-1 at every voxel of ``grid``, the label's signed distance
    sampled there (scipy, trilinear, border value repeated), inside where negative."""
    sources, _ = field.inverse_map_points(grid.voxel_centres_physical().reshape(-1, 3))
    return (_trilinear(signed_distance_mm(label).array, label.geometry, sources) < 0).reshape(grid.array_shape)


def _trilinear(values: np.ndarray, grid: Geometry, points_mm: np.ndarray) -> np.ndarray:
    """``values`` (k, j, i) on ``grid`` at physical points, by scipy (trilinear, border value repeated)."""
    from scipy import ndimage

    index = grid.physical_to_index(points_mm)[:, ::-1].T
    return ndimage.map_coordinates(np.asarray(values, dtype=np.float64), index, order=1, mode="nearest")


def test_binary_labels_are_carried_by_shape_between_thick_slices():
    """A ball on 5 mm slices (1 mm in-plane), moved 2.5 mm through-plane (half a slice): carried as its signed
    distance it keeps its size on the slices between the ball's acquired contours (Dice against the moved ball,
    voxelised on the same grid, >= 0.95); carried as 0/1 values interpolated and thresholded at 0.5 each voxel
    would take the nearer slice's contour, and the ball's volume and shape would be those of one slice stack
    shifted by a whole slice or none (the Dice of that rule is checked to be lower)."""
    grid = Geometry((40, 40, 12), (1.0, 1.0, 5.0), (0.0, 0.0, 0.0))
    centre = np.array([20.0, 20.0, 27.0])
    points = grid.voxel_centres_physical()
    ball = Volume((np.linalg.norm(points - centre, axis=-1) <= 14.0).astype(np.uint8), grid, "ball")
    u = np.zeros((*grid.array_shape, 3))
    u[..., 2] = 2.5
    carried = np.asarray(SampledDisplacementMap(u, grid).propagate_fixed_label(ball, grid).array) > 0
    moved = np.linalg.norm(points - centre - np.array([0.0, 0.0, 2.5]), axis=-1) <= 14.0
    sources = points.reshape(-1, 3) - np.array([0.0, 0.0, 2.5])
    by_values = (_trilinear(ball.array, grid, sources) >= 0.5).reshape(grid.array_shape)
    assert dice(carried, moved) >= 0.95
    assert dice(carried, moved) > dice(by_values, moved) + 0.01


def test_propagation_looks_only_where_a_label_can_reach_and_misses_nothing():
    """propagate_fixed_labels evaluates phi^-1 only at voxels near a label (the label dilated by its reach), on the
    label's grid and on another grid (coarser, shifted: the general path). Both equal phi^-1 taken at every voxel,
    for a label moved by up to ~7 mm."""
    r = _centred(GRID)
    u = np.stack([7.0 * np.exp(-np.sum(r ** 2, -1) / 300.0), 2.0 * np.sin(r[..., 0] / 8.0), np.zeros(r.shape[:-1])], -1)
    field = SampledDisplacementMap(u, GRID)
    label = np.zeros(GRID.array_shape, np.uint8)
    label[9:15, 10:17, 11:18] = 1
    label = Volume(label, GRID, "box")
    other = Geometry((22, 25, 19), (2.0, 1.5, 2.5), tuple(GRID.index_to_physical(np.array([1.3, -0.7, 2.2]))),
                     GRID.direction)
    for grid in (GRID, other):
        carried = np.asarray(field.propagate_fixed_label(label, grid).array) > 0
        expected = _every_voxel_propagated(field, label, grid)
        assert carried.sum() > 50 and np.array_equal(carried, expected)


def test_deformation_gradient_at_nodes_is_the_central_difference_of_the_field():
    """On an axis-aligned anisotropic grid the node differences equal deformation_gradient_at at the nodes (trilinear
    interpolation is linear along each axis within a cell), edge nodes included (the border value repeated); on an
    oblique grid a linear field u = A x gives F = I + A exactly at interior nodes."""
    aligned = Geometry((12, 10, 8), (1.5, 1.25, 4.0), (-5.0, 3.0, 1.0))
    r = _centred(aligned)
    u = np.stack([2.0 * np.sin(r[..., 0] / 3.0) * r[..., 2] / 9.0, np.cos(r[..., 1] / 4.0), r[..., 0] * r[..., 1] / 40],
                 axis=-1)
    field = SampledDisplacementMap(u, aligned)
    k, j, i = np.meshgrid(*(np.arange(n) for n in aligned.array_shape), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
    at_nodes = field.deformation_gradient_at_nodes(ijk)
    np.testing.assert_allclose(at_nodes, field.deformation_gradient_at(aligned.index_to_physical(ijk)), atol=2e-5)
    a = np.array([[0.1, -0.2, 0.05], [0.3, 0.0, -0.1], [0.02, 0.15, -0.25]])
    linear = SampledDisplacementMap(_centred(GRID) @ a.T, GRID)
    interior = np.array([[1, 1, 1], [5, 7, 3], [GRID.size[0] - 2, GRID.size[1] - 2, GRID.size[2] - 2]])
    expected = np.broadcast_to(np.eye(3) + a, (3, 3, 3))
    np.testing.assert_allclose(linear.deformation_gradient_at_nodes(interior), expected, atol=1e-10)
    import pytest
    from INRCardiacRegistrationLib.core.vocabulary import InputError

    with pytest.raises(InputError, match="outside the grid"):
        linear.deformation_gradient_at_nodes(np.array([[0, 0, GRID.size[2]]]))
