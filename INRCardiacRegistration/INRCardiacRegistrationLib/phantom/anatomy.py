"""The phantom's reference anatomy (frame 0 = ED, heart frame, mm): chambers, coronary arteries, landmarks.

Anatomy (reference frame = frame 0 = end-diastole, ED): a truncated prolate-ellipsoidal LV myocardial
shell (:mod:`heart_frame`) with its blood pool, papillary muscles and trabeculae, an RV crescent, the atria,
aortic root and pulmonary trunk, coronary arteries on the epicardium (LAD, diagonals, LCX, obtuse marginal, RCA,
PDA), and a thorax around it (lungs with vessels, chest wall, ribs, sternum, spine, descending aorta, liver dome;
painted by :mod:`rendering`).

The landmarks are 4 coronary points as in the paper (just outside the myocardium) plus 13 mid-wall points;
their ground-truth trajectories follow the motion (:func:`landmark_trajectories`, LPS mm).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.spatial import cKDTree

from ..fileio.landmarks import Landmarks, Trajectories
from .config import PhantomConfig
from .heart_frame import C_ENDO, Z_BASE, Z_C, endo_radius, epi_radius, from_heart_frame
from .motion import ground_truth_map

RV_WALL_MM = 3.0
# chambers and great vessels, heart frame (mm): ellipsoids (centre, semi-axes), capsules (start, end, radius)
RV = ((26.0, 0.0, 56.0), (20.0, 42.0, 46.0))
LA = ((-12.0, -6.0, Z_BASE + 25.0), (27.0, 24.0, 20.0))
RA = ((36.0, -14.0, Z_BASE + 18.0), (22.0, 22.0, 24.0))
AORTA = ((9.0, 6.0, Z_BASE - 8.0), (40.0, 44.0, Z_BASE + 41.0), 12.5)
PULMONARY = ((18.0, 32.0, Z_BASE + 2.0), (-15.0, 57.0, Z_BASE + 38.0), 12.0)
MITRAL = ((-4.0, -2.0, Z_BASE - 6.0), (-10.0, -5.0, Z_BASE + 14.0), 15.0)  # LV inflow into the LA
PAPILLARY_THETA_DEG = (135.0, -118.0)


def _on_epicardium(theta_deg: float, z: float, height: float) -> np.ndarray:
    """Heart-frame point at angle theta (deg), height z, ``height`` mm outside the LV epicardium (along r)."""
    radius = float(epi_radius(z)) + height
    theta = np.deg2rad(theta_deg)
    return np.array([radius * np.cos(theta), radius * np.sin(theta), z])


@dataclass(frozen=True)
class _Vessel:
    name: str
    centreline: np.ndarray  # (M, 3) heart frame, ~0.25 mm apart
    radius: np.ndarray      # (M,) mm


def _vessel(name: str, control: list[np.ndarray], radius: tuple[float, float]) -> _Vessel:
    control_points = np.asarray(control, dtype=np.float64)
    chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(control_points, axis=0), axis=1))])
    spline = CubicSpline(chord, control_points, axis=0, bc_type="natural")
    samples = spline(np.linspace(0.0, chord[-1], max(2, int(chord[-1] / 0.25) + 1)))
    return _Vessel(name, samples, np.linspace(radius[0], radius[1], len(samples)))


def _lv_vessel(name: str, theta_z: list[tuple[float, float]], radius: tuple[float, float]) -> _Vessel:
    height = 0.9 + radius[0]
    return _vessel(name, [_on_epicardium(t, z, height) for t, z in theta_z], radius)


_BIFURCATION = (105.0, Z_BASE - 4.0)      # left main bifurcation, (theta deg, z mm)
_LAD_PATH = [_BIFURCATION, (92.0, 78.0), (78.0, 70.0), (70.0, 58.0), (68.0, 42.0), (66.0, 26.0), (62.0, 12.0),
             (40.0, 4.0)]
_LCX_PATH = [_BIFURCATION, (122.0, 81.5), (150.0, 80.0), (180.0, 79.0), (210.0, 78.0), (235.0, 77.0)]
_OM_PATH = [(163.0, 79.6), (166.0, 68.0), (172.0, 50.0), (176.0, 32.0), (178.0, 20.0)]
_D1_PATH = [(76.0, 68.0), (92.0, 60.0), (110.0, 48.0), (124.0, 34.0)]
_D2_PATH = [(68.0, 42.0), (84.0, 34.0), (100.0, 24.0), (110.0, 15.0)]
_PDA_PATH = [(-70.0, 76.0), (-69.0, 60.0), (-67.0, 42.0), (-64.0, 25.0), (-55.0, 12.0)]


@functools.cache
def coronary_vessels() -> tuple[_Vessel, ...]:
    """Coronary artery centrelines and radii in heart-frame coordinates (reference frame, mm)."""
    rv_c = np.asarray(RV[0])
    rv_axes = np.asarray(RV[1]) + RV_WALL_MM + np.array([2.5, 2.5, 0.0])  # the RCA runs on the RV surface
    scale = np.sqrt(1.0 - ((84.0 - rv_c[2]) / rv_axes[2]) ** 2)
    rca_arc = [np.array([rv_c[0] + rv_axes[0] * scale * np.cos(np.deg2rad(a)),
                         rv_axes[1] * scale * np.sin(np.deg2rad(a)), 84.0 - 0.04 * (80.0 - a)])
               for a in (80.0, 40.0, 0.0, -40.0, -75.0)]
    rca = [np.array([14.0, 26.0, Z_BASE + 8.0])] + rca_arc + [_on_epicardium(-72.0, 78.0, 2.6)]
    left_main = [np.array([10.0, 16.0, Z_BASE + 6.0]), np.array([-6.0, 34.0, Z_BASE + 2.0]),
                 _on_epicardium(*_BIFURCATION, 2.8)]
    return (
        _vessel("LM", left_main, (2.2, 2.1)),
        _lv_vessel("LAD", _LAD_PATH, (1.9, 0.9)),
        _lv_vessel("LCX", _LCX_PATH, (1.8, 1.1)),
        _lv_vessel("OM", _OM_PATH, (1.3, 0.8)),
        _lv_vessel("D1", _D1_PATH, (1.3, 0.8)),
        _lv_vessel("D2", _D2_PATH, (1.1, 0.7)),
        _vessel("RCA", rca, (2.0, 1.6)),
        _lv_vessel("PDA", _PDA_PATH, (1.4, 0.8)),
    )


def _point_along(vessel: _Vessel, distance_mm: float) -> np.ndarray:
    steps = np.linalg.norm(np.diff(vessel.centreline, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    return np.array([np.interp(distance_mm, arc, vessel.centreline[:, c]) for c in range(3)])


def _closest_on(vessel: _Vessel, point: np.ndarray) -> np.ndarray:
    return vessel.centreline[np.argmin(np.linalg.norm(vessel.centreline - point, axis=1))]


_WALL_SECTORS = (("septal", 0.0), ("anterior", 90.0), ("lateral", 180.0), ("inferior", -90.0))


@functools.cache
def _landmarks_heart() -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    vessels = {v.name: v for v in coronary_vessels()}
    names = ["1_LAD_start", "2_CX_start", "3_OM_branch", "4_last_diagonal_branch"]
    points = [
        _point_along(vessels["LAD"], 6.0),
        _point_along(vessels["LCX"], 6.0),
        _closest_on(vessels["LCX"], vessels["OM"].centreline[0]),
        _closest_on(vessels["LAD"], vessels["D2"].centreline[0]),
    ]
    descriptions = [
        "start of the left anterior descending artery (LAD), 6 mm after the left main bifurcation",
        "start of the circumflex artery (CX), 6 mm after the left main bifurcation",
        "point where the obtuse marginal (OM) branches off the circumflex artery",
        "point where the last diagonal branches off the LAD",
    ]
    for level_name, fraction in (("basal", 0.82), ("mid", 0.55), ("apical", 0.3)):
        z = fraction * Z_BASE
        middle = 0.5 * (float(endo_radius(z)) + float(epi_radius(z)))
        for wall_name, theta in _WALL_SECTORS:
            angle = np.deg2rad(theta)
            names.append(f"wall_{level_name}_{wall_name}")
            points.append(np.array([middle * np.cos(angle), middle * np.sin(angle), z]))
            descriptions.append(f"mid-wall myocardium, {level_name} {wall_name} segment")
    names.append("wall_apex")
    points.append(np.array([0.0, 0.0, 0.5 * (Z_C - C_ENDO)]))
    descriptions.append("mid-wall myocardium at the apex")
    return tuple(names), np.asarray(points), tuple(descriptions)


def phantom_landmarks() -> Landmarks:
    """Reference-frame (ED) landmarks, LPS mm: 4 coronary points as in the paper plus 13 mid-wall points."""
    names, points, _ = _landmarks_heart()
    return Landmarks(names, from_heart_frame(points))


def landmark_descriptions() -> tuple[str, ...]:
    """One sentence per landmark of :func:`phantom_landmarks`, in the same order."""
    return _landmarks_heart()[2]


def landmark_trajectories(config: PhantomConfig) -> Trajectories:
    """Ground-truth landmark positions in every frame (``phi_t`` applied to the reference landmarks)."""
    reference = phantom_landmarks()
    points = np.stack([ground_truth_map(reference.points_lps, t, config) for t in range(config.frames)])
    return Trajectories(tuple(range(config.frames)), reference.labels, points)


@functools.cache
def coronary_tree() -> tuple[cKDTree, np.ndarray]:
    """``(tree, radius)``: a k-d tree of every coronary centreline point (heart frame, mm) and their radii (mm)."""
    vessels = coronary_vessels()
    centreline = np.concatenate([v.centreline for v in vessels])
    return cKDTree(centreline), np.concatenate([v.radius for v in vessels])
