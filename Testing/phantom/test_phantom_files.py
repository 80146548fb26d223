"""The phantom on disk (``phantom.files``): the manifest names every file, the 4D CT and labels share one grid, and
the written ground-truth transforms, read with SimpleITK, reproduce the trajectories and the labels (acceptance 3)."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk
from INRCardiacRegistrationLib.core.metrics import dice
from INRCardiacRegistrationLib.phantom.config import PHANTOM_MODEL_VERSION, PhantomConfig
from small_phantom import BLOOD, HEART, MYO, SMALL


def test_manifest_names_every_file(manifest_path, phantom):
    manifest = json.loads(manifest_path.read_text())
    for key in ("image", "labels", "label_values", "landmarks", "trajectories", "ground_truth_transforms",
                "ed_frame", "es_frame", "spacing", "generator"):
        assert key in manifest, key
    root = manifest_path.parent
    for key in ("image", "labels", "landmarks", "trajectories", "montage"):
        assert (root / manifest[key]).is_file(), key
    assert manifest["label_values"] == {"myocardium": 1, "blood_pool": 2, "heart": 3}
    assert len(manifest["ground_truth_transforms"]) == SMALL.frames
    assert all((root / path).is_file() for path in manifest["ground_truth_transforms"])
    assert manifest["ed_frame"] == 0 and manifest["es_frame"] == SMALL.es_frame == 3
    assert manifest["spacing"] == [2.0, 2.0, 2.0]
    assert PhantomConfig.from_dict(manifest["generator"]["parameters"]) == SMALL
    assert manifest["generator"]["version"]
    assert manifest["generator"]["model_version"] == PHANTOM_MODEL_VERSION
    assert (root / manifest["montage"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_images_are_4d_ct_in_hu_with_labels_on_one_grid(manifest_path, phantom):
    image = sitk.ReadImage(str(manifest_path.parent / "ct_4d.nii.gz"))
    labels = sitk.ReadImage(str(manifest_path.parent / "labels_4d.nii.gz"))
    assert image.GetDimension() == 4 and image.GetSize()[3] == SMALL.frames
    assert image.GetPixelID() == sitk.sitkInt16 and labels.GetPixelID() == sitk.sitkUInt8
    assert len(phantom.images) == len(phantom.labels) == SMALL.frames
    for volume in phantom.images + phantom.labels:
        assert volume.geometry.matches(SMALL.geometry)
    ed, labels_ed = phantom.images[0].array, phantom.labels[0].array
    assert set(np.unique(labels_ed)) == {0, MYO, BLOOD, HEART}
    assert 300 <= ed[labels_ed == BLOOD].mean() <= 420        # contrast-filled LV blood pool
    assert 100 <= np.median(ed[labels_ed == MYO]) <= 150      # myocardium
    assert np.percentile(ed, 5) < -700                         # lungs
    assert ed.max() > 500                                      # bone / coronaries


def test_frame_zero_transform_is_identity_and_fields_are_finite(phantom):
    u0, geometry = phantom.ground_truth_displacement(0)
    assert geometry.matches(SMALL.ground_truth_geometry) and np.all(u0 == 0.0)
    u_es, _ = phantom.ground_truth_displacement(phantom.es_frame)
    assert np.isfinite(u_es).all() and 8.0 < np.linalg.norm(u_es, axis=-1).max() < 25.0


def test_written_transforms_reproduce_the_trajectories(phantom):
    reference = phantom.landmarks.points_lps
    for frame in range(SMALL.frames):
        transform = sitk.ReadTransform(str(phantom.ground_truth_path(frame)))
        moved = np.array([transform.TransformPoint(tuple(float(c) for c in p)) for p in reference])
        assert np.abs(moved - phantom.trajectories.points_lps[frame]).max() < 0.05, frame


def test_ground_truth_transform_resamples_frame_labels_back_onto_the_reference(phantom):
    """Resampling frame t through its transform (SimpleITK, nearest neighbour) recovers the ED labels up to
    the quarter-voxel discretisation of nearest-neighbour sampling."""
    es = phantom.es_frame
    moving = phantom.labels[es].to_sitk()
    warped = sitk.Resample(moving, phantom.labels[0].to_sitk(), phantom.ground_truth_transform(es),
                           sitk.sitkNearestNeighbor, 0)
    back = sitk.GetArrayFromImage(warped)
    assert dice(back == MYO, phantom.labels[0].array == MYO) > 0.93
    assert dice(back == BLOOD, phantom.labels[0].array == BLOOD) > 0.93
