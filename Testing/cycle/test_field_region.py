"""The field grid and its edge taper: weight 1 on the core (sampling mask and landmarks), exactly 0 on the grid's
outermost nodes; on a real run, the written field is the network's on the sampling mask and SimpleITK applies it
as the identity outside its grid (the Slicer side is in Testing/mrml/test_slicer_transforms.py)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import oblique_direction, run_sampling_mask_and_region
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.vocabulary import InputError
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.cycle.field_region import field_lattice, field_region
from INRCardiacRegistrationLib.engine.registration_result import PairRegistration
from INRCardiacRegistrationLib.fileio.displacement_field import read_displacement_field

REFERENCE = Geometry((30, 24, 20), (1.5, 1.5, 2.0), (-10.0, 5.0, 3.0), (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))


def _mask(low, high) -> Volume:
    array = np.zeros(REFERENCE.array_shape, bool)
    (i0, j0, k0), (i1, j1, k1) = low, high
    array[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1] = True
    return Volume(array, REFERENCE, "mask")


def test_heart_region_core_is_one_and_the_border_is_zero():
    mask = _mask((10, 8, 6), (18, 15, 12))
    landmark = REFERENCE.index_to_physical(np.array([[20.3, 9.0, 7.0]]))  # beyond the mask in i, between nodes
    region = field_region(REFERENCE, mask, landmark, region="heart", margin_mm=4.0)
    weights = region.weights()
    margin = (3, 3, 2)  # ceil(4 / spacing)
    assert region.grid.size == (21 + 1 - 10 + 2 * 3, 15 - 8 + 1 + 2 * 3, 12 - 6 + 1 + 2 * 2)
    assert region.ramp_low == region.ramp_high == margin
    (i0, j0, k0), (i1, j1, k1) = region.core_low, region.core_high
    assert np.all(weights[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1] == 1.0)
    for border in (weights[0], weights[-1], weights[:, 0], weights[:, -1], weights[..., 0], weights[..., -1]):
        assert np.all(border == 0.0)
    assert np.all((weights >= 0) & (weights <= 1))
    # the core's nodes are the reference lattice's nodes of the mask box and the landmark's neighbours
    corner = region.grid.index_to_physical(np.array([[i0, j0, k0], [i1, j1, k1]], float))
    assert np.allclose(REFERENCE.physical_to_index(corner), [[10, 8, 6], [21, 15, 12]])


def test_where_the_image_cuts_the_mask_the_core_reaches_a_margin_beyond_it():
    """The mask touches the image's first planes in i and j: there the core (weight 1: the field is the network's)
    reaches one margin (2 nodes) beyond the image, as tissue from beyond it may move in (a cine MRI stack's base), and
    the taper falls over a second margin; in k the mask is inside the image and the core ends at the mask."""
    mask = _mask((0, 0, 5), (6, 6, 9))
    region = field_region(REFERENCE, mask, region="heart", margin_mm=3.0)
    origin_index = REFERENCE.physical_to_index(np.array([region.grid.origin]))[0]
    assert np.allclose(origin_index, [-4, -4, 5 - 2])
    weights = region.weights()
    (i0, j0, k0), (i1, j1, k1) = region.core_low, region.core_high
    corner = region.grid.index_to_physical(np.array([[i0, j0, k0], [i1, j1, k1]], float))
    assert np.allclose(REFERENCE.physical_to_index(corner), [[-2, -2, 5], [6, 6, 9]])
    assert np.all(weights[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1] == 1.0) and np.all(weights[:, :, 0] == 0)


def test_full_region_tapers_only_the_border_band():
    mask = _mask((10, 8, 6), (18, 15, 12))
    region = field_region(REFERENCE, mask, region="full", margin_mm=3.0)
    assert region.grid == REFERENCE
    weights = region.weights()
    assert region.ramp_low == (2, 2, 2) and region.ramp_high == (2, 2, 2)
    assert np.all(weights[2:-2, 2:-2, 2:-2] == 1.0) and np.all(weights[0] == 0)
    touching = field_region(REFERENCE, _mask((0, 8, 6), (18, 15, 12)), region="full", margin_mm=3.0)
    assert touching.ramp_low[0] == 0 and np.all(touching.weights()[2:-2, 2:-2, 0] == 1.0)


def test_zero_margin_still_leaves_one_zero_layer():
    region = field_region(REFERENCE, _mask((10, 8, 6), (18, 15, 12)), region="heart", margin_mm=0.0)
    assert region.ramp_low == (1, 1, 1)
    assert region.weights()[0].max() == 0.0 and region.weights()[1:-1, 1:-1, 1:-1].min() == 1.0


@pytest.mark.slow
def test_written_field_is_the_network_on_the_mask_and_the_identity_outside(tiny_run):
    """Acceptance 2 (SimpleITK side): on the sampling mask the written field equals the frame's network (the
    field before the taper) within 0.01 mm; points outside the field's grid map to themselves."""
    mask, region = run_sampling_mask_and_region(tiny_run)
    mask_points = mask.geometry.voxel_centres_physical()[np.asarray(mask.array) > 0]
    worst_inside, worst_outside = 0.0, 0.0
    for t in (1, 2, 3):
        u, grid = read_displacement_field(tiny_run.transform_path(t))
        assert grid == region.grid
        network = PairRegistration.load(tiny_run.checkpoint_path(t), "cpu")
        transform = sitk.ReadTransform(str(tiny_run.transform_path(t)))
        written = np.array([transform.TransformPoint(tuple(map(float, p))) for p in mask_points]) - mask_points
        worst_inside = max(worst_inside, float(np.abs(written - network.displacement_at(mask_points)).max()))
        # points a little and far outside the grid, on every side
        low = grid.index_to_physical(np.array([[-0.6, -0.6, -0.6], [-5.0, 3.0, 2.0]]))
        high = grid.index_to_physical(np.array([np.asarray(grid.size) - 0.4, np.asarray(grid.size) + 4.0]))
        for p in np.concatenate([low, high]):
            worst_outside = max(worst_outside, float(np.abs(np.array(transform.TransformPoint(tuple(p))) - p).max()))
        assert np.abs(u[0]).max() == 0.0 and np.abs(u[:, :, -1]).max() == 0.0
    print(f"written field vs network on the sampling mask: {worst_inside:.2e} mm; outside the grid: "
          f"{worst_outside:.2e} mm")
    assert worst_inside <= 0.01
    assert worst_outside <= 1e-9


def test_margin_folds_only_where_the_displacement_exceeds_the_ramp():
    """The linear ramp folds a displacement pointing out of the core only once it is larger than the ramp is
    wide: 5 mm over a 6 mm margin is fold-free, 9 mm is not (counted by margin_folds)."""
    region = field_region(REFERENCE, _mask((10, 8, 6), (18, 15, 12)), region="heart", margin_mm=6.0)
    ramp_mm = region.ramp_low[0] * REFERENCE.spacing[0]
    outward = np.zeros((*region.grid.array_shape, 3))
    i = np.arange(region.grid.size[0])
    direction = np.asarray(region.grid.direction).reshape(3, 3)[:, 0]  # the grid's i axis in LPS
    for magnitude, folds in ((0.8 * ramp_mm, False), (1.5 * ramp_mm, True)):
        outward[...] = np.where(i < region.core_low[0], -magnitude, 0.0)[None, None, :, None] * direction
        count = region.margin_folds(region.taper(outward))
        assert (count > 0) == folds, (magnitude, count)


def test_the_ramp_is_linear():
    region = field_region(REFERENCE, _mask((10, 8, 6), (18, 15, 12)), region="heart", margin_mm=6.0)
    ramp = region.weights()[region.core_low[2], region.core_low[1], :region.core_low[0] + 1]
    assert np.allclose(ramp, np.linspace(0.0, 1.0, region.core_low[0] + 1))


def test_a_resumed_run_keeps_the_grid_it_started_with():
    """Runs made before the grid could reach beyond the image keep their (clipped) grid: the taper uses the room
    there is; a grid that does not hold the core (other inputs) is made anew."""
    mask = _mask((0, 0, 5), (6, 6, 9))
    clipped = REFERENCE.subgrid(np.array([-2, -2, 3]), np.array([8, 8, 11]))  # clipped at i = j = 0
    region = field_region(REFERENCE, mask, region="heart", margin_mm=3.0, grid=clipped)
    assert region.grid == clipped and region.ramp_low == (0, 0, 2) and region.ramp_high == (2, 2, 2)
    assert np.all(region.weights()[2:-2, 0:-2, 0:-2] == 1.0)
    elsewhere = REFERENCE.subgrid(np.array([10, 10, 10]), np.array([20, 20, 15]))
    assert field_region(REFERENCE, mask, region="heart", margin_mm=3.0, grid=elsewhere).grid != elsewhere


def test_the_margin_extends_the_evaluated_boxs_values():
    """extend_evaluated: the evaluated box (the core grown by one node) keeps its values, every other node takes the
    value of the box node nearest to it (index clamped to the box), checked node by node against a direct search
    on the physical distance."""
    mask = _mask((10, 8, 6), (18, 15, 12))
    region = field_region(REFERENCE, mask, None, region="heart", margin_mm=4.0)
    low, high = region.evaluated_box
    assert np.array_equal(low, np.asarray(region.core_low) - 1) and np.array_equal(high, np.asarray(region.core_high)
                                                                                   + 1)
    box = region.evaluated_points()
    values = np.stack([box[:, 0] ** 2, np.sin(box[:, 1]), box[:, 2] - box[:, 0]], axis=-1)
    field = region.extend_evaluated(values)
    assert field.shape == (*region.grid.array_shape, 3)
    nodes = region.grid.voxel_centres_physical().reshape(-1, 3)
    # the nearest box node in index space is the nearest in physical space on this (rotated, anisotropic) lattice:
    # the box is a box of the lattice, so each axis clamps on its own
    rng = np.random.default_rng(4)
    for n in rng.choice(len(nodes), size=400, replace=False):
        nearest = np.argmin(np.linalg.norm(box - nodes[n], axis=1))
        assert np.array_equal(field.reshape(-1, 3)[n], values[nearest])
    (i0, j0, k0), (i1, j1, k1) = low, high
    assert np.array_equal(field[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1].reshape(-1, 3), values)
    assert len(box) < 0.7 * len(nodes)


def test_written_margin_is_the_evaluated_boxs_edge_value_tapered(tiny_run):
    """On a real run (heart region) the written field at every node is the network's value at the nearest node of
    the core grown by one, times the taper weight: the network is evaluated there only."""
    _, region = run_sampling_mask_and_region(tiny_run)
    box = region.evaluated_points()
    for t in (1, 3):
        written, _ = read_displacement_field(tiny_run.transform_path(t))
        network = PairRegistration.load(tiny_run.checkpoint_path(t), "cpu")
        expected = region.taper(region.extend_evaluated(network.displacement_at(box)))
        assert np.abs(written - expected).max() < 1e-5
        (i0, j0, k0), (i1, j1, k1) = region.core_low, region.core_high
        assert np.all(region.weights()[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1] == 1.0)


THICK = Geometry((20, 18, 6), (1.5, 1.5, 10.0), (-10.0, 5.0, 3.0), oblique_direction())


def test_thick_slices_get_a_finer_lattice_that_holds_every_voxel_centre():
    """10 mm slices at 1.5 mm pixels: the field lattice divides the slice axis in 4 (2.5 mm), keeps the grid's
    extent, and every reference voxel centre is one of its nodes; an isotropic-enough grid is its own lattice."""
    lattice = field_lattice(THICK)
    assert lattice.spacing == (1.5, 1.5, 2.5) and lattice.size == (20, 18, 21)
    centres = THICK.voxel_centres_physical().reshape(-1, 3)
    nodes = lattice.physical_to_index(centres)
    assert np.abs(nodes - np.rint(nodes)).max() < 1e-6 and np.all(np.rint(nodes[:, 2]) % 4 == 0)
    assert field_lattice(REFERENCE) is REFERENCE  # 2 mm against 1.5 mm: not more than twice as coarse


def test_a_thick_slice_region_lies_on_the_lattice_and_a_resumed_run_keeps_its_older_grid():
    """The heart region of a thick-slice image: on the lattice, its core holds the mask's voxel centres (weight 1)
    and its taper is as wide in mm as asked; a run begun on the reference grid's own lattice keeps that grid."""
    array = np.zeros(THICK.array_shape, bool)
    array[2:4, 5:12, 6:14] = True
    mask = Volume(array, THICK, "mask")
    region = field_region(THICK, mask, region="heart", margin_mm=10.0)
    assert region.grid.spacing == field_lattice(THICK).spacing
    centres = THICK.voxel_centres_physical()[array]
    nodes = region.nodes_at(centres)
    np.testing.assert_allclose(region.grid.index_to_physical(nodes), centres, atol=1e-6)
    assert np.all(region.weights()[nodes[:, 2], nodes[:, 1], nodes[:, 0]] == 1.0)
    with pytest.raises(InputError, match="not a node"):
        region.nodes_at(centres + np.asarray(THICK.direction).reshape(3, 3)[:, 2] * 1.25)  # half a node away
    assert region.ramp_low == (7, 7, 4) and region.ramp_high == (7, 7, 4)
    older = THICK.subgrid(np.array([4, 3, 0]), np.array([16, 13, 5]), clip=False)
    assert field_region(THICK, mask, region="heart", margin_mm=10.0, grid=older).grid == older


def test_a_label_at_the_end_of_a_slice_stack_is_carried_as_by_the_untapered_map():
    """A cine MRI's stack ends inside the heart: at the next frame tissue from beyond its first slice moves into it
    (the base descends) and takes the label extended beyond the stack (the signed distance is border-padded). A
    uniform motion of 6 mm into the stack and 3 mm in-plane: the label carried through the written field (tapered,
    margin 10 mm) equals the label carried through the motion itself in every slice. Before the core reached beyond
    the image, the taper began at the first slice and shrank the motion of that tissue (the first slice lost its
    in-plane shift)."""
    from INRCardiacRegistrationLib.engine.displacement_map import SampledDisplacementMap

    size_k = THICK.size[2]
    centres = THICK.voxel_centres_physical()
    axes = np.asarray(THICK.direction).reshape(3, 3)  # columns: the i, j, k axes in LPS
    in_plane = np.einsum("kjia,a->kji", centres - centres[0, 9, 10], axes[:, 0]) ** 2 + np.einsum(
        "kjia,a->kji", centres - centres[0, 9, 10], axes[:, 1]) ** 2
    label = Volume((in_plane <= 6.0 ** 2).astype(np.uint8), THICK, "disc column")  # every slice, radius 6 mm
    mask = Volume(in_plane <= 11.0 ** 2, THICK, "mask")
    region = field_region(THICK, mask, region="heart", margin_mm=10.0)
    motion = 6.0 * axes[:, 2] + 3.0 * axes[:, 0]
    written = region.taper(np.broadcast_to(motion, (*region.grid.array_shape, 3)))
    wide = THICK.subgrid(np.array([-12, -12, -4]), np.array([THICK.size[0] + 12, THICK.size[1] + 12, size_k + 4]),
                         clip=False)
    untapered = np.broadcast_to(motion, (*wide.array_shape, 3))
    expected = SampledDisplacementMap(untapered, wide).propagate_fixed_label(label, THICK).array
    carried = SampledDisplacementMap(written, region.grid).propagate_fixed_label(label, THICK).array
    assert expected[0].sum() > 0 and not np.array_equal(expected[0], label.array[0])  # moved in-plane
    assert np.array_equal(carried, expected)


def test_a_thick_slice_run_writes_the_network_between_its_slices_and_scores_folding_at_its_voxels(tmp_path):
    """The real worker on a phantom of 8 mm slices (3 mm pixels): the written field lies on the finer lattice
    (4 mm along the slices' axis) and equals the network on the sampling mask and at the nodes between its slices
    (within 0.01 mm), and the folding in metrics.csv is SimpleITK's Jacobian determinant of the written field (central
    differences) at the mask's voxel centres."""
    from helpers import register_argv
    from INRCardiacRegistrationLib.cli.main import main
    from INRCardiacRegistrationLib.cycle.run_folder import RunFolder
    from INRCardiacRegistrationLib.fileio.displacement_field import displacement_image
    from INRCardiacRegistrationLib.phantom.config import PhantomConfig
    from INRCardiacRegistrationLib.phantom.files import generate_phantom, load_phantom

    phantom = load_phantom(generate_phantom(tmp_path / "phantom", PhantomConfig(frames=3, spacing_mm=(3.0, 3.0, 8.0))))
    run = RunFolder(tmp_path / "run")
    options = ("--quiet", "--no-report", "--preset", "fast", "--iterations", "60", "--warm-start-iterations", "30",
               "--points", "1000", "--device", "cpu")
    assert main(register_argv(phantom, tmp_path / "run", *options)) == 0
    mask, region = run_sampling_mask_and_region(run)
    assert region.grid.spacing[2] == pytest.approx(4.0) and region.grid.spacing[:2] == mask.geometry.spacing[:2]
    (i0, j0, k0), (i1, j1, k1) = region.core_low, region.core_high
    between = region.grid.voxel_centres_physical()[k0 + 1:k1:2, j0:j1 + 1, i0:i1 + 1].reshape(-1, 3)  # odd nodes
    mask_points = mask.geometry.voxel_centres_physical()[np.asarray(mask.array) > 0]
    metrics = {row["frame"]: row for row in run.read_metrics()}
    for t in (1, 2):
        u, grid = read_displacement_field(run.transform_path(t))
        assert grid == region.grid
        network = PairRegistration.load(run.checkpoint_path(t), "cpu")
        for points in (mask_points, between):
            nodes = region.nodes_at(points)
            written = u[nodes[:, 2], nodes[:, 1], nodes[:, 0]]
            assert np.abs(written - network.displacement_at(points)).max() <= 0.01
        determinant = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(displacement_image(u, grid)))
        nodes = region.nodes_at(mask_points)
        expected = 100.0 * np.mean(determinant[nodes[:, 2], nodes[:, 1], nodes[:, 0]] <= 0)
        assert metrics[t]["negative_jacobian_pct"] == pytest.approx(expected, abs=1e-9)
