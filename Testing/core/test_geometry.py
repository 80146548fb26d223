"""Geometry and Volume against SimpleITK's own index <-> physical mapping (oblique grids included)."""

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import oblique_direction
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.volume import Volume


def test_index_to_physical_matches_simpleitk(rng):
    geometry = Geometry((7, 9, 5), (0.7, 1.3, 2.5), (10.0, -20.0, 5.0), oblique_direction())
    image = geometry.reference_image()
    for ijk in rng.uniform(-1, 8, size=(20, 3)):
        expected = image.TransformContinuousIndexToPhysicalPoint(ijk.tolist())
        np.testing.assert_allclose(geometry.index_to_physical(ijk), expected, atol=1e-9)
        np.testing.assert_allclose(geometry.physical_to_index(expected), ijk, atol=1e-9)


def test_voxel_centres_follow_numpy_order():
    geometry = Geometry((4, 3, 2), (1.0, 2.0, 3.0), (0.0, 0.0, 0.0))
    centres = geometry.voxel_centres_physical()
    assert centres.shape == (2, 3, 4, 3)
    np.testing.assert_allclose(centres[1, 2, 3], [3.0, 4.0, 3.0])


def test_voxel_centres_of_a_box_are_those_of_the_whole_grid_there():
    geometry = Geometry((6, 5, 4), (0.5, 0.7, 3.0), (1.0, -2.0, 3.0), oblique_direction())
    box = geometry.voxel_centres_physical((1, 2, 0), (4, 2, 3))  # (i, j, k), inclusive
    assert box.shape == (4, 1, 4, 3)
    np.testing.assert_array_equal(box, geometry.voxel_centres_physical()[0:4, 2:3, 1:5])


def test_volume_roundtrip_through_file(tmp_path):
    geometry = Geometry((5, 4, 3), (0.5, 0.5, 2.0), (1.0, 2.0, 3.0), oblique_direction())
    array = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    Volume(array, geometry).write(tmp_path / "v.nrrd")
    back = Volume.read(tmp_path / "v.nrrd")
    np.testing.assert_array_equal(back.array, array)
    assert back.geometry.matches(geometry, 1e-6)


def test_volume_rejects_bad_input(tmp_path):
    geometry = Geometry((5, 4, 3), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="3D"):
        Volume(np.zeros((3, 4)), geometry)
    with pytest.raises(ValueError, match="does not match its geometry"):
        Volume(np.zeros((4, 4, 4)), geometry)
    with pytest.raises(ValueError, match="NaN"):
        Volume(np.full((3, 4, 5), np.nan, np.float32), geometry).require_finite()
    with pytest.raises(ValueError, match="not found"):
        Volume.read(tmp_path / "missing.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="is not an image SimpleITK can read .* convert it"):
        Volume.read(tmp_path / "junk.nii.gz")  # what to do, not ITK's "Unable to determine ImageIO reader"
    image4d = sitk.Image([3, 3, 3, 2], sitk.sitkFloat32)
    with pytest.raises(ValueError, match="3D"):
        Volume.from_sitk(image4d)
    with pytest.raises(ValueError, match="spacing"):
        Geometry((2, 2, 2), (1.0, 0.0, 1.0), (0.0, 0.0, 0.0))
