"""Sub-voxel surface distances against shapes whose distances are known exactly (spheres)."""

from __future__ import annotations

import numpy as np
import pytest
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.metrics import hd95_mm
from INRCardiacRegistrationLib.core.surface_distance import surface_distances, surface_points

SPACING = 1.5
GRID = Geometry((60, 60, 60), (SPACING,) * 3, (-10.0, 4.0, 7.0))


def sphere(radius: float, centre=(0.0, 0.0, 0.0), grid: Geometry = GRID) -> np.ndarray:
    """A ball of ``radius`` mm around ``centre`` (mm from the grid's middle), voxel centres inside it."""
    kji = np.indices(grid.array_shape).astype(np.float64)
    shape = np.asarray(grid.array_shape)
    offsets = [(kji[axis] - (shape[axis] - 1) / 2) * grid.spacing[2 - axis] for axis in range(3)]
    z, y, x = offsets
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= radius ** 2


@pytest.mark.parametrize("shift", [0.3, 0.75, 1.2])
def test_a_shifted_sphere_is_measured_below_the_voxel_step(shift):
    """Two balls of 20 mm, one shifted by ``shift`` mm: a point of one surface is |shift cos(theta)| from the other,
    and |cos(theta)| is uniform on a sphere, so the exact HD95 is 0.95 shift and the mean 0.5 shift. The voxel HD95
    is one voxel (1.5 mm) for all three; the sub-voxel one within 0.2 mm (the balls' voxelisation) of the truth."""
    a, b = sphere(20.0), sphere(20.0, (shift, 0.0, 0.0))
    measured = surface_distances(a, b, GRID)
    assert hd95_mm(a, b, GRID) == pytest.approx(SPACING)
    assert measured.hd95_mm == pytest.approx(0.95 * shift, abs=0.2)
    assert measured.mean_mm == pytest.approx(0.5 * shift, abs=0.1)


def test_distances_grow_with_the_gap_and_vanish_for_equal_masks():
    hd95 = [surface_distances(sphere(15.0), sphere(15.0 + gap), GRID).hd95_mm for gap in (0.0, 0.6, 1.4, 3.0)]
    assert hd95[0] == 0.0 and all(x < y for x, y in zip(hd95, hd95[1:], strict=False))
    assert hd95[-1] == pytest.approx(3.0, abs=0.35)


def test_anisotropic_voxels_weigh_by_surface_area():
    """A slab 30 x 30 x 20 mm on 1 x 1 x 5 mm voxels against the same slab shifted by one slice (5 mm) along z: its
    two large faces (2 x 900 mm^2) are 5 mm from the other slab's, its sides (4 x 600 mm^2) 0 mm from the other's
    sides, so the area-weighted mean is 5 x 1800 / 4200 = 2.14 mm (counting face points instead, 900 per large face
    and 120 per side, would give 3.95 mm) and HD95 is 5 mm. The thick slices are not smoothed (sigma: the 1 mm
    in-plane spacing)."""
    grid = Geometry((40, 40, 12), (1.0, 1.0, 5.0), (0.0, 0.0, 0.0))
    a = np.zeros(grid.array_shape, dtype=bool)
    a[3:7, 5:35, 5:35] = True
    b = np.roll(a, 1, axis=0)
    measured = surface_distances(a, b, grid)
    assert measured.hd95_mm == pytest.approx(5.0, abs=0.1)
    assert measured.mean_mm == pytest.approx(5.0 * 1800 / 4200, abs=0.15)


def test_the_result_does_not_depend_on_where_the_masks_lie():
    """The fields are computed on the masks' box: a pair near the grid's edge gives what it gives in the middle."""
    middle = surface_distances(sphere(8.0), sphere(8.0, (0.7, 0.0, 0.0)), GRID)
    small = Geometry((16, 60, 60), GRID.spacing, GRID.origin)
    edge = surface_distances(sphere(8.0, grid=small), sphere(8.0, (0.7, 0.0, 0.0), grid=small), small)
    assert edge.hd95_mm == pytest.approx(middle.hd95_mm, abs=1e-9)
    assert edge.mean_mm == pytest.approx(middle.mean_mm, abs=1e-9)


def test_empty_masks_give_nan_and_surface_points_lie_between_the_voxels():
    assert np.isnan(surface_distances(np.zeros(GRID.array_shape, bool), sphere(10.0), GRID).hd95_mm)
    field = np.array([[[-1.0, 1.0, 3.0]]])
    points, weights = surface_points(field, (2.0, 3.0, 4.0))
    assert points.tolist() == [[0.0, 0.0, 0.5]] and weights.tolist() == [12.0]


def test_masks_thinner_than_the_smoothing_keep_their_own_surface():
    """A single voxel and a sheet one voxel thick vanish when smoothed: they are measured on their voxel faces."""
    grid = Geometry((20, 20, 20), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    cube = np.zeros(grid.array_shape, dtype=bool)
    cube[7:14, 7:14, 7:14] = True
    voxel = np.zeros_like(cube)
    voxel[10, 10, 10] = True
    sheet = np.zeros_like(cube)
    sheet[10, 5:15, 5:15] = True
    for thin in (voxel, sheet):
        measured = surface_distances(cube, thin, grid)
        assert np.isfinite(measured.hd95_mm) and measured.hd95_mm > 1.0 and measured.mean_mm > 0.5
    assert surface_distances(voxel, voxel, grid).hd95_mm == 0.0
