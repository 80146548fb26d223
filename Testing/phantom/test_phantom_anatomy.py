"""The phantom's anatomy (``phantom.anatomy``): the landmarks and their trajectories agree with the ground-truth
map and sit where they should (coronary points outside the myocardium, wall points inside it) (acceptance 2)."""

from __future__ import annotations

import numpy as np
from INRCardiacRegistrationLib.fileio.landmarks import read_markups_json, read_trajectories_csv
from INRCardiacRegistrationLib.phantom.motion import ground_truth_map
from small_phantom import BLOOD, MYO, SMALL


def test_trajectories_equal_the_map_of_the_reference_landmarks(manifest_path, phantom):
    reference = read_markups_json(manifest_path.parent / "landmarks_reference.mrk.json")
    trajectories = read_trajectories_csv(manifest_path.parent / "landmark_trajectories.csv")
    assert len(reference) >= 16 and sum(label[0].isdigit() for label in reference.labels) == 4
    assert trajectories.frames == tuple(range(SMALL.frames)) and trajectories.labels == reference.labels
    np.testing.assert_allclose(trajectories.points_lps[0], reference.points_lps, atol=1e-5)
    for frame in range(SMALL.frames):
        mapped = ground_truth_map(reference.points_lps, frame, SMALL)
        assert np.abs(mapped - trajectories.points_lps[frame]).max() < 0.01
    # the coronary landmarks lie just outside the myocardium, the wall landmarks inside it
    index = np.rint(phantom.labels[0].geometry.physical_to_index(reference.points_lps)).astype(int)
    values = phantom.labels[0].array[index[:, 2], index[:, 1], index[:, 0]]
    coronary = np.array([label[0].isdigit() for label in reference.labels])
    assert np.all(values[~coronary] == MYO) and not np.any(values[coronary] == BLOOD)
