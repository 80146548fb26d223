"""Dice, HD95 (physical spacing), TRE and folding percentage on shapes with known answers."""

import numpy as np
import pytest
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.metrics import dice, hd95_mm, negative_jacobian_percent, tre_mm


def test_dice_known_overlap():
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros((10, 10, 10), bool)
    a[:5] = True
    b[:4] = True
    assert dice(a, b) == pytest.approx(2 * 400 / (500 + 400))
    assert np.isnan(dice(np.zeros(3, bool), np.zeros(3, bool)))


def test_hd95_uses_physical_spacing():
    geometry = Geometry((20, 20, 20), (1.0, 1.0, 2.5), (0.0, 0.0, 0.0))
    a = np.zeros(geometry.array_shape, bool)
    b = np.zeros(geometry.array_shape, bool)
    a[5:10, 5:15, 5:15] = True
    b[7:12, 5:15, 5:15] = True  # shifted by 2 slices along k = 5 mm
    assert hd95_mm(a, b, geometry) == pytest.approx(5.0)
    assert hd95_mm(a, a, geometry) == 0.0
    assert np.isnan(hd95_mm(a, np.zeros_like(a), geometry))


def test_tre_and_folding():
    assert tre_mm(np.zeros((2, 3)), np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]])) == pytest.approx(3.0)
    assert negative_jacobian_percent(np.array([1.0, 0.5, 0.0, -0.2])) == pytest.approx(50.0)


def test_hd95_on_the_masks_box_equals_the_whole_grid():
    """hd95_mm measures on the masks' box grown by one voxel; masks touching the grid's edge (where the contour
    depends on the edge) and a stray voxel far away give the same distances as the whole grid."""
    from INRCardiacRegistrationLib.core.metrics import _surface_distances_mm

    geometry = Geometry((40, 36, 30), (1.5, 1.5, 2.0), (0.0, 0.0, 0.0))
    a = np.zeros(geometry.array_shape, bool)
    a[0:10, 0:20, 25:40] = True
    b = np.zeros(geometry.array_shape, bool)
    b[0:12, 2:20, 23:40] = True
    b[20, 30, 5] = True
    whole = max(np.percentile(_surface_distances_mm(a, b, geometry), 95),
                np.percentile(_surface_distances_mm(b, a, geometry), 95))
    assert hd95_mm(a, b, geometry) == pytest.approx(whole, abs=1e-9) and whole > 3.0
