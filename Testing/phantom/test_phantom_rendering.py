"""Rendering the phantom (``phantom.rendering``): frames rendered in memory equal the written ones."""

from __future__ import annotations

import numpy as np
from INRCardiacRegistrationLib.phantom.rendering import phantom_frames
from small_phantom import SMALL


def test_in_memory_frames_equal_the_written_ones(phantom):
    frames = phantom_frames(SMALL, [SMALL.es_frame, 1], workers=1)
    assert [f.frame for f in frames] == [SMALL.es_frame, 1]
    es = frames[0]
    np.testing.assert_array_equal(es.image.array, phantom.images[SMALL.es_frame].array)
    np.testing.assert_array_equal(es.labels.array, phantom.labels[SMALL.es_frame].array)
    u, _ = phantom.ground_truth_displacement(SMALL.es_frame)
    np.testing.assert_allclose(es.displacement_mm, u, atol=1e-12)
    np.testing.assert_allclose(es.landmarks_lps, phantom.trajectories.points_lps[SMALL.es_frame], atol=1e-5)
