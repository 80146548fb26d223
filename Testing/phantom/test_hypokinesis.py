"""The phantom's regional dysfunction (``hypokinetic_segment``): still an exact, invertible, volume-keeping motion,
changed only in and near the chosen AHA segment, and refused for segments that do not exist."""

from __future__ import annotations

import numpy as np
import pytest
from INRCardiacRegistrationLib.core.vocabulary import InputError
from INRCardiacRegistrationLib.phantom.config import PhantomConfig
from INRCardiacRegistrationLib.phantom.heart_frame import endo_radius, epi_radius, from_heart_frame, to_heart_frame
from INRCardiacRegistrationLib.phantom.motion import (
    aha_segment_extent,
    ground_truth_deformation_gradient,
    ground_truth_map,
    inverse_ground_truth_map,
)

CONFIG = PhantomConfig(hypokinetic_segment=7, hypokinetic_motion=0.25)


def _wall_points(theta_deg: float, z: float, count: int = 5) -> np.ndarray:
    """Mid-wall-ish heart-frame points at one angle and height, across the wall, as LPS."""
    inner, outer = float(endo_radius(z)), float(epi_radius(z))
    radii = np.linspace(inner + 1.0, outer - 1.0, count)
    angle = np.radians(theta_deg)
    return from_heart_frame(np.c_[radii * np.cos(angle), radii * np.sin(angle), np.full(count, z)])


def test_the_map_stays_exact_invertible_and_incompressible_in_the_wall():
    rng = np.random.default_rng(0)
    points = from_heart_frame(np.c_[rng.uniform(-45, 45, (5000, 2)), rng.uniform(-5, 95, 5000)])
    frame = CONFIG.es_frame
    mapped = ground_truth_map(points, frame, CONFIG)
    assert np.abs(inverse_ground_truth_map(mapped, frame, CONFIG) - points).max() < 1e-6
    assert np.linalg.det(ground_truth_deformation_gradient(points, frame, CONFIG)).min() > 0.0
    low, high, z_low, z_high = aha_segment_extent(7)
    wall = _wall_points(0.5 * (low + high), 0.5 * (z_low + z_high))
    assert np.abs(np.linalg.det(ground_truth_deformation_gradient(wall, frame, CONFIG)) - 1.0).max() < 1e-4


def test_only_the_segment_moves_less():
    frame = CONFIG.es_frame
    normal = PhantomConfig()
    low, high, z_low, z_high = aha_segment_extent(7)
    inside = _wall_points(0.5 * (low + high), 0.5 * (z_low + z_high))
    opposite = _wall_points(0.5 * (low + high) + 180.0, 0.5 * (z_low + z_high))
    basal = _wall_points(0.5 * (low + high), z_high + 20.0)

    def inward(points, config):  # mean radial motion towards the long axis (mm)
        radius = np.linalg.norm(to_heart_frame(points)[:, :2], axis=1)
        return float((radius - np.linalg.norm(to_heart_frame(ground_truth_map(points, frame, config))[:, :2],
                                              axis=1)).mean())

    moved = {name: inward(p, CONFIG) for name, p in (("inside", inside), ("opposite", opposite), ("basal", basal))}
    usual = {name: inward(p, normal) for name, p in (("inside", inside), ("opposite", opposite), ("basal", basal))}
    assert usual["inside"] > 3.0 and moved["inside"] < 0.5 * usual["inside"]
    assert moved["opposite"] == pytest.approx(usual["opposite"], abs=1e-9)
    assert moved["basal"] == pytest.approx(usual["basal"], abs=1e-9)


def test_segments_follow_the_aha_layout():
    # anterior segments lie about +90 degrees (anterior) in the heart frame, septal ones about 0 (towards the RV)
    low, high, *_ = aha_segment_extent(1)
    assert (0.5 * (low + high)) % 360.0 == pytest.approx(90.0)
    low, high, *_ = aha_segment_extent(14)
    assert (0.5 * (low + high)) % 360.0 == pytest.approx(0.0)
    assert aha_segment_extent(1)[2] > aha_segment_extent(7)[2] > aha_segment_extent(13)[2]


@pytest.mark.parametrize("segment", [0, 17, True, 2.5])
def test_unknown_segments_are_refused(segment):
    with pytest.raises(InputError, match="hypokinetic_segment"):
        PhantomConfig(hypokinetic_segment=segment)
