"""The AHA 17-segment angle ranges and the bull's-eye layout (Cerqueira et al., Circulation 2002)."""

from __future__ import annotations

import numpy as np
from INRCardiacRegistrationLib.core.aha_segments import (
    APICAL,
    BASAL,
    EXTENTS,
    MID,
    SEGMENT_NAMES,
    bullseye_angle_deg,
    ring_segment,
)


def test_each_ring_covers_every_angle_once():
    """Basal, mid and apical rings partition the full turn: every angle (also a rounding error below a border)
    lies in exactly one segment of each ring, and every segment gets its share (60 or 90 degrees)."""
    angles = np.concatenate([np.linspace(0.0, 360.0, 7201)[:-1], np.nextafter([15.0, 105.0, 300.0, 0.0], -1.0)])
    for ring, width in ((BASAL, 60.0), (MID, 60.0), (APICAL, 90.0)):
        claims = np.stack([EXTENTS[s].contains(angles) for s in ring])
        assert np.all(claims.sum(axis=0) == 1)
        found = ring_segment(ring, angles[:7200])
        for segment in ring:
            assert np.mean(found == segment) * 360.0 == np.float64(width)


def test_the_bullseye_shows_anterior_at_the_top_septum_left_lateral_right_inferior_bottom():
    """Page angles counter-clockwise from the right: the conventional polar map."""
    def page(segment):
        return bullseye_angle_deg(EXTENTS[segment].centre_deg)

    for segment, name in SEGMENT_NAMES.items():
        if segment == 17:
            continue
        x, y = np.cos(np.radians(page(segment))), np.sin(np.radians(page(segment)))
        if name.endswith(" anterior"):
            assert y > 0.99
        if name.endswith(" inferior"):
            assert y < -0.99
        if "septal" in name:
            assert x < -0.49
        if name.endswith("lateral"):
            assert x > 0.49
    assert [EXTENTS[s].ring for s in (17, 13, 7, 1)] == [0, 1, 2, 3]
