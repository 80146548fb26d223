"""The LV cavity closed at the mitral annulus plane: the annulus of a synthetic LV, its plane carried by known maps,
and the capped volume against voxel counts done here."""

from __future__ import annotations

import numpy as np
import pytest
from INRCardiacRegistrationLib.core.masks import volume_ml
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.engine.displacement_map import DisplacementMap
from INRCardiacRegistrationLib.function.basal_plane import find_basal_annulus
from INRCardiacRegistrationLib.function.volumes import capped_cavity, carried_cavity_volume_ml
from scipy import ndimage
from synthetic_lv import synthetic_lv


class _Shift(DisplacementMap):
    """phi(x) = x + shift below ``height`` along ``axis`` (mm from ``apex``), x + shift + drop above it: the base
    (and anything above it) moves ``drop`` further, as the annulus does in systole."""

    def __init__(self, shift, axis=None, apex=None, height=np.inf, drop=0.0):
        self.shift, self.axis, self.apex, self.height, self.drop = np.asarray(shift, float), axis, apex, height, drop

    def displacement_at(self, points_mm):
        points = np.asarray(points_mm, dtype=float).reshape(-1, 3)
        u = np.repeat(self.shift[None], len(points), axis=0)
        if self.axis is not None:
            above = (points - self.apex) @ self.axis >= self.height
            u[above] += self.drop * self.axis
        return u


def test_the_annulus_of_a_synthetic_lv_spans_its_base_plane():
    lv = synthetic_lv(spacing_mm=2.0)
    annulus = find_basal_annulus(lv.cavity, lv.myocardium, lv.geometry)
    assert annulus is not None
    plane = annulus.reference_plane
    assert np.degrees(np.arccos(plane.normal @ lv.long_axis)) < 3.0  # out of the cavity = towards the base
    assert (plane.centre - lv.apex_mm) @ lv.long_axis == pytest.approx(lv.base_height_mm, abs=2.0)
    radii = np.linalg.norm(annulus.points_mm - plane.centre - np.outer((annulus.points_mm - plane.centre)
                                                                        @ plane.normal, plane.normal), axis=1)
    assert radii.min() > 15.0  # only the rim, next to the wall (endocardial radius 22 mm at the base)
    capped = capped_cavity(lv.cavity, lv.geometry, annulus)
    assert 0.97 < capped.sum() / lv.cavity.sum() <= 1.0


def test_a_closed_cavity_has_no_annulus():
    """A cavity walled in on every side (no blood beyond it) gives no plane: the volumes stay uncapped."""
    lv = synthetic_lv(spacing_mm=2.0)
    cavity = np.zeros(lv.cavity.shape, dtype=bool)
    cavity[20:40, 20:40, 20:40] = True
    wall = np.zeros_like(cavity)
    wall[16:44, 16:44, 16:44] = True
    assert find_basal_annulus(cavity, wall & ~cavity, lv.geometry) is None
    assert capped_cavity(cavity, lv.geometry, None).sum() == cavity.sum()


def test_the_carried_plane_cuts_the_cavity_where_the_annulus_went():
    """A map that moves the base 10 mm towards the apex but leaves the cavity voxels in place (what happens when the
    registration does not move the blood's cap): the capped volume is the cavity below the lowered plane."""
    lv = synthetic_lv(spacing_mm=2.0)
    annulus = find_basal_annulus(lv.cavity, lv.myocardium, lv.geometry)
    cavity = Volume(lv.cavity.astype(np.uint8), lv.geometry, "cavity")
    height = (lv.geometry.voxel_centres_physical() - lv.apex_mm) @ lv.long_axis
    motion = _Shift((0.0, 0.0, 0.0), lv.long_axis, lv.apex_mm, height=lv.base_height_mm - 8.0, drop=-10.0)
    volume, warning, _ = carried_cavity_volume_ml(_Shift((0.0, 0.0, 0.0)), cavity, lv.geometry, annulus)
    assert warning is None
    assert volume == pytest.approx(volume_ml(capped_cavity(lv.cavity, lv.geometry, annulus), lv.geometry.spacing))
    carried_annulus = motion.map_points(annulus.points_mm)
    plane_height = float(np.mean((carried_annulus - lv.apex_mm) @ lv.long_axis))
    assert plane_height == pytest.approx(annulus.reference_plane.centre @ lv.long_axis - lv.apex_mm @ lv.long_axis
                                         - 10.0, abs=0.5)
    expected = volume_ml(lv.cavity & (height <= plane_height), lv.geometry.spacing)
    lowered = volume_ml(capped_cavity(lv.cavity, lv.geometry, annulus, carried_annulus), lv.geometry.spacing)
    assert lowered == pytest.approx(expected, rel=0.02)
    assert lowered < 0.9 * volume


def test_a_translation_carries_cavity_and_plane_together():
    lv = synthetic_lv(spacing_mm=2.0)
    annulus = find_basal_annulus(lv.cavity, lv.myocardium, lv.geometry)
    cavity = Volume(lv.cavity.astype(np.uint8), lv.geometry, "cavity")
    reference = volume_ml(capped_cavity(lv.cavity, lv.geometry, annulus), lv.geometry.spacing)
    moved, _, _ = carried_cavity_volume_ml(_Shift((4.0, -6.0, 2.0)), cavity, lv.geometry, annulus)  # whole voxels
    assert moved == pytest.approx(reference, rel=1e-6)


def test_holes_in_the_cavity_and_an_unlabelled_apex_do_not_move_the_plane():
    """An unlabelled papillary muscle (a hole in the cavity touching the wall) is not an opening; an apex left out
    of the labels is a second, smaller opening: the plane stays the base's."""
    lv = synthetic_lv(spacing_mm=2.0)
    points = lv.geometry.voxel_centres_physical()
    height = (points - lv.apex_mm) @ lv.long_axis
    across = points - lv.apex_mm - height[..., None] * lv.long_axis
    papillary = lv.cavity & (np.linalg.norm(across - 18.0 * lv.septum, axis=-1) < 4.0) & (np.abs(height - 50) < 4)
    assert papillary.any() and (papillary & ndimage.binary_dilation(lv.myocardium)).any()
    no_apex = lv.myocardium & ~(height < 12.0)
    for cavity, wall in ((lv.cavity & ~papillary, lv.myocardium), (lv.cavity, no_apex)):
        annulus = find_basal_annulus(cavity, wall, lv.geometry)
        plane = annulus.reference_plane
        assert np.degrees(np.arccos(plane.normal @ lv.long_axis)) < 3.0
        assert (plane.centre - lv.apex_mm) @ lv.long_axis == pytest.approx(lv.base_height_mm, abs=2.0)
