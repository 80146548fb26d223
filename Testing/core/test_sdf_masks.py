"""Signed distance fields against the analytic distance to a sphere; masks and their errors."""

import numpy as np
import pytest
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.masks import dilate_mm, label_mask, sampling_mask
from INRCardiacRegistrationLib.core.sdf import sdf_feature, signed_distance_mm
from INRCardiacRegistrationLib.core.volume import Volume
from scipy.ndimage import binary_dilation, distance_transform_edt


def _sphere(radius_mm=12.0, spacing=(1.0, 1.0, 2.5)):
    size = tuple(int(round(40.0 / h)) for h in spacing)
    geometry = Geometry(size, spacing, tuple(-0.5 * (n - 1) * h for n, h in zip(size, spacing, strict=True)))
    distance = np.linalg.norm(geometry.voxel_centres_physical(), axis=-1) - radius_mm
    return Volume(distance <= 0, geometry, "sphere"), distance


def test_sdf_is_signed_distance_in_mm():
    sphere, exact = _sphere(spacing=(1.0, 1.0, 1.0))
    field = signed_distance_mm(sphere).array
    assert np.all(field[sphere.array] < 0) and np.all(field[~sphere.array] > 0)
    near = np.abs(exact) < 10
    # the voxelised (staircase) sphere differs from the true one by up to half a voxel diagonal
    assert np.max(np.abs(field[near] - exact[near])) < np.sqrt(3) / 2
    assert np.mean(np.abs(field[near] - exact[near])) < 0.5  # measured 0.45 (staircase on a curved surface)


def test_sdf_uses_physical_spacing_along_the_slice_axis():
    """A slab of whole slices (faces exactly on voxel faces) with 2.5 mm slices: exact distances in mm."""
    geometry = Geometry((8, 8, 20), (1.0, 1.0, 2.5), (0.0, 0.0, 0.0))
    slab = np.zeros(geometry.array_shape, bool)
    slab[8:12] = True  # slices 8..11 -> faces at k = 7.5 and 11.5
    field = signed_distance_mm(Volume(slab, geometry, "slab")).array[:, 4, 4]
    k = np.arange(20)
    expected = np.where(slab[:, 4, 4], -2.5 * (np.minimum(k - 7.5, 11.5 - k)), 2.5 * (np.abs(k - 9.5) - 2.0))
    np.testing.assert_allclose(field, expected, atol=1e-5)


def test_sdf_matches_scipy_edt():
    """Independent implementation with scipy's exact EDT ((k, j, i) sampling): the field is the mean of
    (distance to the other region) and (distance to this region's own boundary voxels), signed."""
    sphere, _ = _sphere()
    sampling = sphere.geometry.spacing[::-1]
    inside = sphere.array
    outside = ~inside
    inner_boundary = inside & binary_dilation(outside, np.ones((3, 3, 3)))
    outer_boundary = outside & binary_dilation(inside, np.ones((3, 3, 3)))
    reference = np.where(
        inside,
        -0.5 * (distance_transform_edt(inside, sampling=sampling)
                + distance_transform_edt(~inner_boundary, sampling=sampling)),
        0.5 * (distance_transform_edt(outside, sampling=sampling)
               + distance_transform_edt(~outer_boundary, sampling=sampling)),
    )
    np.testing.assert_allclose(signed_distance_mm(sphere).array, reference, atol=1e-4)


def test_sdf_feature_is_clipped_and_scaled_by_a_fixed_factor():
    sphere, _ = _sphere()
    feature = sdf_feature(sphere, clip_mm=5.0).array
    raw = signed_distance_mm(sphere).array
    np.testing.assert_allclose(feature, np.clip(raw, -5, 5) / 5, atol=1e-6)
    assert feature.min() >= -1 and feature.max() <= 1


def test_empty_and_full_labels_are_rejected():
    sphere, _ = _sphere()
    with pytest.raises(ValueError, match="empty"):
        signed_distance_mm(sphere.with_array(np.zeros_like(sphere.array)))
    with pytest.raises(ValueError, match="whole image"):
        signed_distance_mm(sphere.with_array(np.ones_like(sphere.array)))


def test_label_mask_names_missing_value():
    sphere, _ = _sphere()
    labels = sphere.with_array(sphere.array.astype(np.uint8) * 2, "labels")
    assert label_mask(labels, 2).array.sum() == sphere.array.sum()
    with pytest.raises(ValueError, match="label value 3.*values present: 0, 2"):
        label_mask(labels, 3)


def test_sampling_mask_dilations():
    sphere, exact = _sphere(spacing=(1.0, 1.0, 1.0))
    by_mm = dilate_mm(sphere, 4.0).array
    staircase = np.sqrt(3) / 2  # voxelisation error bound, see test_sdf_is_signed_distance_in_mm
    assert np.all(by_mm[exact <= 4.0 - staircase]) and not np.any(by_mm[exact > 4.0 + staircase])
    sphere, exact = _sphere()
    heart = sampling_mask(heart=sphere, dilation_voxels=2)
    assert heart.array.sum() > sphere.array.sum() and np.all(heart.array[sphere.array])
    with pytest.raises(ValueError, match="heart mask or a myocardium"):
        sampling_mask()
    with pytest.raises(ValueError, match="empty"):
        sampling_mask(myocardium=sphere.with_array(np.zeros_like(sphere.array), "myocardium"))


def test_sdf_feature_is_kept_by_content_and_read_only():
    """The same label content (any name) gives the kept feature, equal to a fresh computation and read-only (a caller
    cannot change what a later pair gets); another label or clip gives its own."""
    from INRCardiacRegistrationLib.core import sdf

    geometry = Geometry((20, 18, 16), (1.0, 1.5, 2.0), (0.0, 0.0, 0.0))
    mask = np.zeros(geometry.array_shape, np.uint8)
    mask[4:10, 5:12, 6:14] = 1
    first = sdf_feature(Volume(mask, geometry, "a"), 5.0)
    again = sdf_feature(Volume(mask.copy(), geometry, "b"), 5.0)
    assert again.array is first.array and again.name == "SDF of b" and not first.array.flags.writeable
    fresh = np.clip(signed_distance_mm(Volume(mask, geometry)).array, -5.0, 5.0) / np.float32(5.0)
    np.testing.assert_array_equal(first.array, fresh)
    shifted = np.roll(mask, 1, axis=2)
    assert not np.array_equal(sdf_feature(Volume(shifted, geometry, "c"), 5.0).array, first.array)
    other_clip = sdf_feature(Volume(mask, geometry, "a"), 2.0).array
    np.testing.assert_array_equal(other_clip, np.clip(signed_distance_mm(Volume(mask, geometry)).array, -2.0, 2.0) / 2)
    assert len(sdf._FEATURES) <= sdf.FEATURES_KEPT
