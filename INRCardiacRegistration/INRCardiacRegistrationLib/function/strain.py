"""Myocardial strain and twist from the deformation gradient, globally and per AHA segment.

At each myocardial point x of the reference frame, with ``F = grad phi_t(x)`` (reference -> frame t, LPS mm per mm)
the Green-Lagrange strain tensor is ``E = (F^T F - I) / 2`` and the normal strain along a unit direction d of the
reference frame is ``E_dd = d^T E d = (|F d|^2 - 1) / 2`` (Lagrangian; the engineering strain of a fibre along d
is ``sqrt(1 + 2 E_dd) - 1``). The directions are the LV's radial, circumferential and longitudinal ones at x
(:mod:`.lv_frame`). Reported in percent:

- **per segment** (AHA 1-17): the mean over the segment's points of ``E_RR``, ``E_CC``, ``E_LL``;
- **global** GRS, GCS, GLS: the mean over all myocardial points (each point stands for the same volume), i.e. the
  volume-weighted mean of the segments;
- **rotation** of a ring (the basal segments 1-6, the apical segments 13-16): the mean angle by which its points
  turn about the long axis, each taken about the ring's own centroid (so a translation of the heart is not a
  rotation), counter-clockwise seen from the apex positive (the echocardiographic convention);
- **twist** = apical rotation - basal rotation (degrees).

Peaks over the cycle: the most negative GLS and GCS, the largest GRS, the twist of largest magnitude.
(Sign conventions, global averaging, rotation and twist as in Voigt et al., "Definitions for a common standard for
2D speckle tracking echocardiography", Eur Heart J Cardiovasc Imaging 2015, with Green-Lagrange in place of
engineering strain and the directions cylindrical about the long axis, :mod:`.lv_frame`; points on the axis itself
have no radial or circumferential direction and are left out of those means.)

The myocardial points are the reference myocardium's voxel centres; above :data:`STRAIN_POINTS` voxels a fixed
random subset (seed 0) of that many.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.aha_segments import APICAL, BASAL, SEGMENTS
from ..core.geometry import Geometry
from ..core.vocabulary import InputError
from .lv_frame import LeftVentricleFrame

STRAIN_POINTS = 20_000


@dataclass(frozen=True)
class MyocardialPoints:
    """Reference-frame myocardial points (N, 3, LPS mm) with their AHA segment and local directions."""

    points_mm: np.ndarray
    segments: np.ndarray
    radial: np.ndarray
    circumferential: np.ndarray
    longitudinal: np.ndarray
    frame: LeftVentricleFrame

    @classmethod
    def of(cls, myocardium: np.ndarray, geometry: Geometry, frame: LeftVentricleFrame,
           limit: int = STRAIN_POINTS) -> MyocardialPoints:
        """The voxel centres of ``myocardium`` (bool (k, j, i) on ``geometry``), at most ``limit`` of them."""
        ijk = np.argwhere(np.asarray(myocardium, dtype=bool))[:, ::-1]
        if ijk.shape[0] > limit:
            ijk = ijk[np.sort(np.random.default_rng(0).choice(ijk.shape[0], limit, replace=False))]
        points = geometry.index_to_physical(ijk)
        radial, circumferential, longitudinal = frame.directions(points)
        return cls(points, frame.segments(points), radial, circumferential, np.array(longitudinal), frame)


@dataclass(frozen=True)
class FrameStrain:
    """One frame's strain: global values (%), twist (degrees), and per segment (17, 3) radial, circumferential,
    longitudinal (%, NaN for a segment without points)."""

    grs_pct: float
    gcs_pct: float
    gls_pct: float
    twist_deg: float
    apical_rotation_deg: float
    basal_rotation_deg: float
    segments_pct: np.ndarray


def normal_strains(deformation_gradient: np.ndarray, *directions: np.ndarray) -> list[np.ndarray]:
    """Green-Lagrange normal strain ``(|F d|^2 - 1) / 2`` (N,) along each unit ``directions`` (N, 3)."""
    return [0.5 * (np.sum(np.einsum("nij,nj->ni", deformation_gradient, d) ** 2, axis=1) - 1.0) for d in directions]


def ring_rotation_deg(reference_mm: np.ndarray, mapped_mm: np.ndarray, long_axis: np.ndarray) -> float:
    """Mean rotation (degrees) of a ring of points about ``long_axis`` (apex -> base), each point about its ring's
    centroid, counter-clockwise seen from the apex positive."""
    before = reference_mm - reference_mm.mean(axis=0)
    after = mapped_mm - mapped_mm.mean(axis=0)
    before = before - np.outer(before @ long_axis, long_axis)
    after = after - np.outer(after @ long_axis, long_axis)
    turn = np.arctan2(np.cross(before, after) @ long_axis, np.sum(before * after, axis=1))
    return float(-np.degrees(turn.mean()))  # right-handed about apex->base is clockwise seen from the apex


def frame_strain(points: MyocardialPoints, mapped_mm: np.ndarray, deformation_gradient: np.ndarray) -> FrameStrain:
    """The strain of one frame from the points' positions ``mapped_mm`` = phi_t(x) (N, 3) and ``F`` (N, 3, 3)."""
    mapped_mm = np.asarray(mapped_mm, dtype=np.float64)
    deformation_gradient = np.asarray(deformation_gradient, dtype=np.float64)
    if mapped_mm.shape != points.points_mm.shape or deformation_gradient.shape != (len(points.points_mm), 3, 3):
        raise InputError(f"strain needs phi (N, 3) and F (N, 3, 3) for the N = {len(points.points_mm)} points, got "
                         f"{mapped_mm.shape} and {deformation_gradient.shape}")
    radial, circumferential, longitudinal = (100.0 * e for e in normal_strains(
        deformation_gradient, points.radial, points.circumferential, points.longitudinal))
    per_segment = np.full((len(SEGMENTS), 3), np.nan)
    for row, segment in enumerate(SEGMENTS):
        inside = points.segments == segment
        if inside.any():
            per_segment[row] = (np.nanmean(radial[inside]), np.nanmean(circumferential[inside]),
                                np.nanmean(longitudinal[inside]))
    rotations = []
    for ring in (APICAL, BASAL):
        inside = np.isin(points.segments, ring)
        rotations.append(ring_rotation_deg(points.points_mm[inside], mapped_mm[inside], points.frame.long_axis)
                         if np.count_nonzero(inside) >= 3 else np.nan)
    apical, basal = rotations
    return FrameStrain(float(np.nanmean(radial)), float(np.nanmean(circumferential)), float(np.nanmean(longitudinal)),
                       apical - basal, apical, basal, per_segment)


def map_frame_strain(points: MyocardialPoints, motion) -> FrameStrain:
    """:func:`frame_strain` with phi and F from ``motion`` (a displacement map: ``map_points`` and
    ``deformation_gradient_at``)."""
    return frame_strain(points, motion.map_points(points.points_mm), motion.deformation_gradient_at(points.points_mm))


def identity_strain(points: MyocardialPoints) -> FrameStrain:
    """The reference frame's strain (zero everywhere)."""
    count = len(points.points_mm)
    return frame_strain(points, points.points_mm, np.repeat(np.eye(3)[None], count, axis=0))
