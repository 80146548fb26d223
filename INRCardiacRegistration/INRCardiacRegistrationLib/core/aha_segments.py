"""The AHA 17-segment model of the LV (Cerqueira et al., "Standardized myocardial segmentation and nomenclature for
tomographic imaging of the heart", Circulation 2002) as angle ranges about the LV long axis, and its bull's-eye.

Angles are in degrees about the long axis from the anterior RV insertion, increasing through the septum towards the
inferior insertion (how the axis and the insertion are found: :mod:`..function.lv_frame`). Rings: 0 the apical cap
(17), 1 apical (13-16: four 90-degree segments centred on the septum), 2 mid (7-12) and 3 basal (1-6: six 60-degree
segments, anterior first).

The bull's-eye (polar map) puts ring r between radii r and r + 1 (the apex in the centre) and turns angles by
:data:`BULLSEYE_TURN_DEG`, so the anterior wall is at the top, the septum on the left, the lateral wall on the right
and the inferior wall at the bottom, counter-clockwise angles on the page: a short-axis view seen from the apex.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEGMENT_NAMES = {
    1: "basal anterior", 2: "basal anteroseptal", 3: "basal inferoseptal", 4: "basal inferior",
    5: "basal inferolateral", 6: "basal anterolateral", 7: "mid anterior", 8: "mid anteroseptal",
    9: "mid inferoseptal", 10: "mid inferior", 11: "mid inferolateral", 12: "mid anterolateral",
    13: "apical anterior", 14: "apical septal", 15: "apical inferior", 16: "apical lateral", 17: "apex",
}
SEGMENTS = tuple(SEGMENT_NAMES)
BASAL, MID, APICAL = (1, 2, 3, 4, 5, 6), (7, 8, 9, 10, 11, 12), (13, 14, 15, 16)
BULLSEYE_TURN_DEG = 120.0  # page angle = anatomical angle + this (segment 1's centre, 330 degrees, at the top)


@dataclass(frozen=True)
class SegmentExtent:
    """Where one segment lies about the long axis: its ring and its angle range [start, start + width)."""

    ring: int
    start_deg: float
    width_deg: float

    @property
    def centre_deg(self) -> float:
        return (self.start_deg + self.width_deg / 2.0) % 360.0

    def contains(self, angles_deg: np.ndarray) -> np.ndarray:
        """Whether each angle (degrees, any turn) lies in the segment's range. Angles are brought into [0, 360) and
        compared with the range's ends, never offset, so each angle of a ring lies in exactly one segment."""
        angles = np.asarray(angles_deg, dtype=float) % 360.0
        angles = np.where(angles >= 360.0, 0.0, angles)  # -1e-15 % 360 rounds to 360
        end = self.start_deg + self.width_deg
        if end <= 360.0:
            return (angles >= self.start_deg) & (angles < end)
        return (angles >= self.start_deg) | (angles < end - 360.0)


EXTENTS = {
    **{s: SegmentExtent(3, (300.0 + 60.0 * k) % 360.0, 60.0) for k, s in enumerate(BASAL)},
    **{s: SegmentExtent(2, (300.0 + 60.0 * k) % 360.0, 60.0) for k, s in enumerate(MID)},
    **{s: SegmentExtent(1, (285.0 + 90.0 * k) % 360.0, 90.0) for k, s in enumerate(APICAL)},
    17: SegmentExtent(0, 0.0, 360.0),
}


def ring_segment(ring: tuple[int, ...], angles_deg: np.ndarray) -> np.ndarray:
    """The segment of ``ring`` (e.g. :data:`BASAL`) at each angle (degrees): an int array like ``angles_deg``."""
    found = np.zeros(np.shape(angles_deg), dtype=int)
    for segment in ring:
        found[EXTENTS[segment].contains(angles_deg)] = segment
    return found


def bullseye_angle_deg(anatomical_deg: float) -> float:
    """The page angle (degrees, counter-clockwise from the right) of an anatomical angle on the bull's-eye."""
    return (anatomical_deg + BULLSEYE_TURN_DEG) % 360.0
