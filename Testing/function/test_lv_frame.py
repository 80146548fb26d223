"""The LV's own frame (long axis, apex, AHA segments, orientation) on a synthetic LV with a known tilted axis, and
the one-line refusals for an LV too small or cut by the field of view."""

from __future__ import annotations

import numpy as np
import pytest
from INRCardiacRegistrationLib.core.vocabulary import InputError
from INRCardiacRegistrationLib.function.lv_frame import APICAL, BASAL, MID, estimate_lv_frame
from synthetic_lv import synthetic_lv, unit


def _angle_deg(a, b) -> float:
    return float(np.degrees(np.arccos(np.clip(abs(np.dot(a, b)), -1.0, 1.0))))


@pytest.mark.parametrize("with_cavity", [True, False])
def test_the_axis_apex_and_levels_of_a_tilted_lv(with_cavity):
    lv = synthetic_lv()
    frame = estimate_lv_frame(lv.myocardium, lv.geometry, lv.cavity if with_cavity else None)
    assert frame.long_axis @ lv.long_axis > 0  # apex -> base, not the other way
    assert _angle_deg(frame.long_axis, lv.long_axis) < 2.0
    assert np.linalg.norm(frame.apex_mm - lv.apex_mm) < 2.0 * max(lv.geometry.spacing)
    assert frame.base_height_mm == pytest.approx(lv.base_height_mm, abs=3.0)
    assert frame.cap_height_mm == pytest.approx(10.0, abs=3.0)  # the endocardial apex lies 10 mm above the epicardial
    points = lv.geometry.index_to_physical(np.argwhere(lv.myocardium)[:, ::-1])
    segments = frame.segments(points)
    counts = np.bincount(segments, minlength=18)[1:]
    assert set(np.unique(segments)) == set(range(1, 18))
    for ring in (BASAL, MID, APICAL):  # a rotationally symmetric wall: equal shares within a ring (5 %)
        shares = counts[np.asarray(ring) - 1]
        assert shares.max() / shares.min() < 1.05


def test_the_default_orientation_puts_the_septum_mid_way_through_the_septal_segments():
    lv = synthetic_lv()
    frame = estimate_lv_frame(lv.myocardium, lv.geometry, lv.cavity)
    assert "default" in frame.orientation
    mid_septum = lv.apex_mm + 50.0 * lv.long_axis + 27.0 * lv.septum
    assert frame.angles_deg(mid_septum[None])[0] == pytest.approx(60.0, abs=1.0)
    assert frame.segments(mid_septum[None])[0] in (8, 9)  # mid anteroseptal | inferoseptal boundary
    lateral = lv.apex_mm + 50.0 * lv.long_axis - 27.0 * lv.septum
    assert frame.angles_deg(lateral[None])[0] == pytest.approx(240.0, abs=1.0)
    anterior = unit(np.array([0.0, -1.0, 0.0]) - (np.array([0.0, -1.0, 0.0]) @ lv.long_axis) * lv.long_axis)
    basal_anterior = lv.apex_mm + 80.0 * lv.long_axis + 27.0 * anterior
    assert frame.segments(basal_anterior[None])[0] in (1, 2)


def test_an_rv_and_an_insertion_point_set_the_angular_origin():
    lv = synthetic_lv(spacing_mm=2.0)
    side = unit(np.cross(lv.long_axis, lv.septum))
    points = lv.geometry.voxel_centres_physical()
    relative = points - lv.apex_mm
    height = relative @ lv.long_axis
    across = relative - height[..., None] * lv.long_axis
    angle = np.degrees(np.arctan2(across @ side, across @ lv.septum))
    radius = np.linalg.norm(across, axis=-1)
    rv = (np.abs(angle - 0.0) <= 50.0) & (radius > 33.0) & (radius < 50.0) & (height > 20.0) & (height < 90.0)
    frame = estimate_lv_frame(lv.myocardium, lv.geometry, lv.cavity, right_ventricle=rv)
    assert frame.orientation.startswith("RV label")
    # the RV spans -50..+50 degrees around the septum; the anterior insertion is the end nearer to anterior
    ends = [np.cos(np.radians(a)) * lv.septum + np.sin(np.radians(a)) * side for a in (-50.0, 50.0)]
    expected = max(ends, key=lambda d: -d[1])
    assert _angle_deg(frame.anterior_insertion, expected) < 5.0
    given = lv.apex_mm + 50.0 * lv.long_axis + 30.0 * side
    pointed = estimate_lv_frame(lv.myocardium, lv.geometry, lv.cavity, anterior_insertion_mm=given)
    assert pointed.angles_deg(given[None])[0] == pytest.approx(0.0, abs=0.5) or \
        pointed.angles_deg(given[None])[0] == pytest.approx(360.0, abs=0.5)


def test_refusals_for_an_lv_too_small_or_cut_by_the_field_of_view():
    lv = synthetic_lv(spacing_mm=2.0)
    tiny = np.zeros_like(lv.myocardium)
    tiny[10:13, 10:13, 10:13] = True
    with pytest.raises(InputError, match="too small to define the LV long axis"):
        estimate_lv_frame(tiny, lv.geometry)
    shifted = synthetic_lv(spacing_mm=2.0, shift_mm=70.0 * lv.long_axis)  # the apex falls off the image
    with pytest.raises(InputError, match="cut by the field of view"):
        estimate_lv_frame(shifted.myocardium, shifted.geometry, shifted.cavity)


def test_points_at_segment_borders_and_on_the_axis():
    """Angles a rounding error below a border (15 degrees: -1e-15 % 360 is 360) get a segment; a grid-aligned LV has
    voxel centres on its axis, whose radial and circumferential directions are undefined (NaN), not zero."""
    lv = synthetic_lv(spacing_mm=2.0, long_axis=(0.0, 0.0, 1.0))
    frame = estimate_lv_frame(lv.myocardium, lv.geometry, lv.cavity)
    angle = np.nextafter(np.radians(15.0), 0.0)
    side = np.cross(frame.long_axis, frame.anterior_insertion) * frame.septal_sense
    border = frame.apex_mm + 20.0 * frame.long_axis + 25.0 * (np.cos(angle) * frame.anterior_insertion
                                                               + np.sin(angle) * side)
    nearly_zero = frame.apex_mm + 30.0 * (np.cos(-1e-17) * frame.anterior_insertion + np.sin(-1e-17) * side)
    angles = frame.angles_deg(np.stack([border, nearly_zero]))
    assert np.all((angles >= 0.0) & (angles < 360.0))
    assert set(frame.segments(np.stack([border, nearly_zero]))) <= set(range(1, 18))
    on_axis = frame.apex_mm + 5.0 * frame.long_axis
    radial, circumferential, longitudinal = frame.directions(on_axis[None])
    assert np.isnan(radial).all() and np.isnan(circumferential).all() and np.isfinite(longitudinal).all()
