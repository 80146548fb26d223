"""NormalizedCoordinates: physical LPS mm <-> [-1, 1] with one isotropic scale around a mask's box.

The expected box is computed independently of the library's geometry code: SimpleITK maps the corners of every
mask voxel to physical space.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from helpers import oblique_direction
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.vocabulary import InputError
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.engine.coordinates import NormalizedCoordinates

SIZE = (14, 11, 9)  # (i, j, k): every axis different, so a swapped axis order shows
SPACING = (0.8, 1.3, 2.5)
ORIGIN = (-31.0, 12.5, 140.0)


def blob_mask() -> Volume:
    """An irregular mask (i 3..10, j 2..6, k 1..6, not a full box) on an anisotropic oblique grid."""
    array = np.zeros(SIZE[::-1], dtype=np.uint8)  # (k, j, i)
    array[1:7, 2:7, 3:11] = 1
    array[1:3, 2:4, 3:6] = 0  # a notch: the box still spans the same index range
    array[4, 5, 10] = 0
    return Volume(array, Geometry(SIZE, SPACING, ORIGIN, oblique_direction()), name="blob mask")


def voxel_corners_mm(mask: Volume) -> np.ndarray:
    """Physical corners (M, 3) of every voxel with ``mask > 0``, by SimpleITK."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(mask.array))
    image.SetSpacing(mask.geometry.spacing)
    image.SetOrigin(mask.geometry.origin)
    image.SetDirection(mask.geometry.direction)
    corners = []
    for k, j, i in np.argwhere(np.asarray(mask.array) > 0):
        for di, dj, dk in itertools.product((-0.5, 0.5), repeat=3):
            corners.append(image.TransformContinuousIndexToPhysicalPoint((i + di, j + dj, k + dk)))
    return np.asarray(corners)


def normalized(coordinates: NormalizedCoordinates, points_mm: np.ndarray) -> np.ndarray:
    return coordinates.to_normalized(torch.as_tensor(points_mm, dtype=torch.float64)).numpy()


@pytest.mark.parametrize("margin", [1.0, 1.05, 1.5])
def test_mask_box_is_centred_and_scaled_by_half_its_longest_side(margin):
    mask = blob_mask()
    corners = voxel_corners_mm(mask)
    low, high = corners.min(axis=0), corners.max(axis=0)
    coordinates = NormalizedCoordinates.around_mask(mask, margin)

    np.testing.assert_allclose(coordinates.centre_mm, (low + high) / 2, atol=1e-9)
    assert coordinates.scale_mm == pytest.approx(margin * np.max(high - low) / 2, rel=1e-12)
    corners_n = normalized(coordinates, corners)
    # the box fills [-1/margin, 1/margin] along its longest side and lies inside it along the others
    assert np.max(np.abs(corners_n)) == pytest.approx(1.0 / margin, rel=1e-12)
    longest = int(np.argmax(high - low))
    np.testing.assert_allclose([corners_n[:, longest].min(), corners_n[:, longest].max()],
                               [-1 / margin, 1 / margin], rtol=1e-12)
    assert np.all(np.abs(corners_n) <= 1.0 / margin + 1e-12)


def test_default_margin_keeps_the_mask_strictly_inside_the_unit_cube():
    mask = blob_mask()
    coordinates = NormalizedCoordinates.around_mask(mask)
    corners_n = normalized(coordinates, voxel_corners_mm(mask))
    assert np.max(np.abs(corners_n)) == pytest.approx(1 / 1.05, rel=1e-12)
    assert np.max(np.abs(corners_n)) < 1.0


def test_single_voxel_mask_box_is_that_voxel():
    array = np.zeros(SIZE[::-1], dtype=np.float32)
    array[4, 7, 2] = 0.5  # (k, j, i): any value > 0 counts
    mask = Volume(array, Geometry(SIZE, SPACING, ORIGIN), name="one voxel")
    coordinates = NormalizedCoordinates.around_mask(mask, margin=1.2)
    expected_centre = np.asarray(ORIGIN) + np.asarray(SPACING) * np.array([2, 7, 4])  # identity direction
    np.testing.assert_allclose(coordinates.centre_mm, expected_centre, atol=1e-9)
    assert coordinates.scale_mm == pytest.approx(1.2 * max(SPACING) / 2)


def test_only_positive_voxels_belong_to_the_mask():
    array = np.zeros(SIZE[::-1], dtype=np.int16)
    array[2:4, 3:5, 4:6] = 1
    with_negatives = array.copy()
    with_negatives[8, 10, 13] = -1  # far corner: would widen the box if counted
    geometry = Geometry(SIZE, SPACING, ORIGIN)
    assert (NormalizedCoordinates.around_mask(Volume(with_negatives, geometry))
            == NormalizedCoordinates.around_mask(Volume(array, geometry)))


def test_one_scale_for_every_axis():
    coordinates = NormalizedCoordinates.around_mask(blob_mask())
    rng = np.random.default_rng(7)
    a = rng.uniform(-80, 80, size=(200, 3)) + np.asarray(coordinates.centre_mm)
    b = rng.uniform(-80, 80, size=(200, 3)) + np.asarray(coordinates.centre_mm)
    ratio = (np.linalg.norm(normalized(coordinates, a) - normalized(coordinates, b), axis=1)
             / np.linalg.norm(a - b, axis=1))
    np.testing.assert_allclose(ratio, 1.0 / coordinates.scale_mm, rtol=1e-12)
    for axis in range(3):  # a step of d mm along any axis is d / scale_mm along that axis only
        step = np.zeros(3)
        step[axis] = 3.7
        np.testing.assert_allclose(normalized(coordinates, a + step) - normalized(coordinates, a),
                                   np.tile(step / coordinates.scale_mm, (len(a), 1)), atol=1e-12)
    np.testing.assert_allclose(normalized(coordinates, np.asarray([coordinates.centre_mm])), 0.0, atol=1e-12)


def test_round_trips_in_both_directions_and_keeps_the_dtype():
    coordinates = NormalizedCoordinates.around_mask(blob_mask())
    generator = torch.Generator().manual_seed(3)
    points_mm = torch.rand(500, 3, generator=generator, dtype=torch.float64) * 200 - 100
    points_n = torch.rand(500, 3, generator=generator, dtype=torch.float64) * 2 - 1
    np.testing.assert_allclose(coordinates.to_physical(coordinates.to_normalized(points_mm)).numpy(),
                               points_mm.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(coordinates.to_normalized(coordinates.to_physical(points_n)).numpy(),
                               points_n.numpy(), rtol=0, atol=1e-12)
    # to_physical is x_n * scale + centre, checked by hand
    np.testing.assert_allclose(coordinates.to_physical(points_n).numpy(),
                               points_n.numpy() * coordinates.scale_mm + np.asarray(coordinates.centre_mm),
                               atol=1e-12)
    single = points_mm.float()
    assert coordinates.to_normalized(single).dtype == torch.float32
    assert coordinates.to_physical(single).dtype == torch.float32
    np.testing.assert_allclose(coordinates.to_physical(coordinates.to_normalized(single)).numpy(),
                               single.numpy(), rtol=0, atol=1e-4)


def test_jacobians_are_the_scale_and_cancel_in_the_displacement_gradient():
    """d x_n / d x_mm = I / scale, d x_mm / d x_n = scale I; so grad of u_mm = scale * f(x_n) in mm is grad f."""
    coordinates = NormalizedCoordinates((4.0, -7.5, 120.0), 23.0)
    point = torch.tensor([10.0, -3.0, 130.0], dtype=torch.float64)
    to_n = torch.autograd.functional.jacobian(lambda x: coordinates.to_normalized(x[None])[0], point)
    to_mm = torch.autograd.functional.jacobian(lambda x: coordinates.to_physical(x[None])[0], point)
    np.testing.assert_allclose(to_n.numpy(), np.eye(3) / 23.0, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(to_mm.numpy(), np.eye(3) * 23.0, rtol=1e-12, atol=1e-12)

    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(3, 3, generator=generator, dtype=torch.float64)

    def field_n(x_n):  # any smooth displacement in normalised units
        return torch.sin(x_n @ weights.T)

    def field_mm(x_mm):
        return coordinates.scale_mm * field_n(coordinates.to_normalized(x_mm[None])[0])

    gradient_mm = torch.autograd.functional.jacobian(field_mm, point)
    gradient_n = torch.autograd.functional.jacobian(field_n, coordinates.to_normalized(point[None])[0])
    np.testing.assert_allclose(gradient_mm.numpy(), gradient_n.numpy(), rtol=1e-12, atol=1e-14)
    assert not np.allclose(gradient_n.numpy(), 0.0)  # a real gradient, not a trivially equal zero


def test_dict_round_trip_through_json():
    coordinates = NormalizedCoordinates.around_mask(blob_mask(), margin=1.3)
    data = json.loads(json.dumps(coordinates.to_dict()))
    assert data == {"centre_mm": list(coordinates.centre_mm), "scale_mm": coordinates.scale_mm}
    assert NormalizedCoordinates.from_dict(data) == coordinates


def test_empty_mask_is_an_input_error():
    mask = Volume(np.zeros(SIZE[::-1], dtype=np.uint8), Geometry(SIZE, SPACING, ORIGIN), name="heart mask")
    with pytest.raises(InputError, match="heart mask is empty"):
        NormalizedCoordinates.around_mask(mask)
    with pytest.raises(InputError):  # negative values do not count either
        NormalizedCoordinates.around_mask(mask.with_array(-np.ones(SIZE[::-1])))


@pytest.mark.parametrize("margin", [0.0, -1.05, float("nan"), float("inf")])
def test_bad_margin_is_an_input_error(margin):
    with pytest.raises(InputError, match="scale_mm"):
        NormalizedCoordinates.around_mask(blob_mask(), margin)


@pytest.mark.parametrize("scale", [0.0, -2.0, float("nan"), float("inf")])
def test_bad_scale_is_an_input_error(scale):
    with pytest.raises(InputError):
        NormalizedCoordinates((0.0, 0.0, 0.0), scale)
    with pytest.raises(InputError):
        NormalizedCoordinates.from_dict({"centre_mm": [0, 0, 0], "scale_mm": scale})
    assert issubclass(InputError, ValueError)
