"""The phantom's heart frame and the shape of its left ventricle (reference frame = frame 0 = ED).

Coordinates. Every physical point is LPS millimetres. The left ventricle (LV) lives in a *heart frame*:
origin at the epicardial apex, unit axes ``e1`` (towards the right ventricle, i.e. the septum),
``e2 = e3 x e1`` (the anterior wall) and ``e3`` (the long axis, apex -> base), tilted against the image
axes like a real heart (apex anterior, left and inferior of the base). Heart-frame cylindrical
coordinates are ``(r, theta, z)``; ``theta = 0`` is the septum, ``+90`` deg the anterior wall, ``180`` the
lateral wall, ``-90`` the inferior wall.

The LV is a truncated prolate-ellipsoidal shell: epicardium (semi-axes ``A_EPI`` radial, ``C_EPI`` long) and
endocardium (``A_ENDO``, ``C_ENDO``), both centred on the long axis at ``z = Z_C`` and cut at the base plane
``z = Z_BASE`` (heart frame, mm). The motion's compressive map acts on the *cavity core*, 1.5 mm inside the
endocardium; :func:`cavity_core_scale_squared` is the squared radial scale of that core that empties the blood
pool by a given ejection fraction.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from ..core.vocabulary import InputError

HEART_CENTRE_LPS = (20.0, -15.0, -125.0)   # centre of the field of view, LPS mm (scanner-like position)
_LONG_AXIS_LPS = (-0.542, 0.542, 0.643)   # e3: apex -> base (apex anterior, left, inferior of the base)
_SEPTUM_LPS = (-0.707, -0.707, 0.0)       # towards the RV (right, anterior); made orthogonal to e3
_FOV_CENTRE_HEART = (12.0, 0.0, 66.0)     # heart-frame point placed at HEART_CENTRE_LPS + _HEART_SHIFT_LPS
_HEART_SHIFT_LPS = (0.0, 0.0, 5.0)        # leaves room for the diaphragm and liver below the apex
A_EPI, C_EPI = 36.0, 78.0                 # LV epicardial ellipsoid semi-axes (radial, long)
A_ENDO, C_ENDO = 26.0, 70.0               # LV endocardial ellipsoid semi-axes
Z_C = C_EPI                               # both ellipsoids centred on the long axis at z = Z_C
Z_BASE = Z_C + 8.0                        # base (truncation) plane
Z_APICAL = 0.15 * Z_BASE                  # apical level at which the configured torsion is measured
_CAVITY_CORE_MARGIN = 1.5                 # the compressive cavity map acts 1.5 mm inside the endocardium
_A_CORE, _C_CORE = A_ENDO - _CAVITY_CORE_MARGIN, C_ENDO - _CAVITY_CORE_MARGIN
T_LOW, T_HIGH = 10.0, 10.0                # saturation lengths of the longitudinal map below apex/above base


def _unit(vector: Sequence[float]) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


@functools.cache
def heart_axes_lps() -> np.ndarray:
    """3x3 matrix whose rows are the heart-frame axes e1 (septum), e2 (anterior), e3 (apex -> base) in LPS."""
    e3 = _unit(_LONG_AXIS_LPS)
    septum = np.asarray(_SEPTUM_LPS, dtype=np.float64)
    e1 = _unit(septum - np.dot(septum, e3) * e3)
    e2 = np.cross(e3, e1)
    axes = np.stack([e1, e2, e3])
    axes.setflags(write=False)
    return axes


@functools.cache
def heart_apex_lps() -> np.ndarray:
    """LPS position (mm) of the heart-frame origin, the LV epicardial apex, in the reference frame."""
    centre = np.asarray(HEART_CENTRE_LPS) + np.asarray(_HEART_SHIFT_LPS)
    apex = centre - heart_axes_lps().T @ np.asarray(_FOV_CENTRE_HEART)
    apex.setflags(write=False)
    return apex


def to_heart_frame(points_lps: np.ndarray) -> np.ndarray:
    """LPS points (..., 3) in mm -> heart-frame coordinates (..., 3) = (along e1, along e2, z) in mm."""
    return (np.asarray(points_lps, dtype=np.float64) - heart_apex_lps()) @ heart_axes_lps().T


def from_heart_frame(points_heart: np.ndarray) -> np.ndarray:
    """Heart-frame coordinates (..., 3) in mm -> LPS points (..., 3) in mm."""
    return np.asarray(points_heart, dtype=np.float64) @ heart_axes_lps() + heart_apex_lps()


Components = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Heart-frame coordinates as three component arrays (along e1, along e2, z), mm."""


def heart_components(points_lps: np.ndarray) -> Components:
    """LPS points (N, 3) -> heart-frame component arrays (float64)."""
    axes, apex = heart_axes_lps(), heart_apex_lps()
    x, y, z = (points_lps[:, c] - apex[c] for c in range(3))
    return tuple(axes[row, 0] * x + axes[row, 1] * y + axes[row, 2] * z for row in range(3))


def epi_radius(z: np.ndarray | float) -> np.ndarray:
    """Radius (mm) of the LV epicardial ellipsoid at heart-frame height ``z`` (mm); 0 beyond its ends."""
    return A_EPI * np.sqrt(np.clip(1.0 - ((np.asarray(z) - Z_C) / C_EPI) ** 2, 0.0, None))


def endo_radius(z: np.ndarray | float) -> np.ndarray:
    """Radius (mm) of the LV endocardial ellipsoid at heart-frame height ``z`` (mm); 0 beyond its ends."""
    return A_ENDO * np.sqrt(np.clip(1.0 - ((np.asarray(z) - Z_C) / C_ENDO) ** 2, 0.0, None))


def smoothstep(t: np.ndarray) -> np.ndarray:
    """C1 ramp: 0 for t <= 0, 1 for t >= 1, 3 t^2 - 2 t^3 between (the motion's time course and fades use it)."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def core_radius_squared(z: np.ndarray) -> np.ndarray:
    """Squared radius (mm^2) of the cavity core (compressive map) at height z; <= the endocardium's."""
    v = 1.0 - ((z - Z_C) / _C_CORE) ** 2
    delta = 0.05
    g = np.where(v >= 2 * delta, v - delta, np.where(v > 0.0, v * v / (4 * delta), 0.0))
    fade = 1.0 - smoothstep((z - Z_BASE) / T_HIGH)
    return _A_CORE**2 * g * fade


@functools.cache
def _cavity_integrals() -> tuple[float, float]:
    """(integral of R_endo^2, integral of R_core^2) over the LV cavity's z range, mm^3 / pi."""
    z = np.linspace(Z_C - C_ENDO, Z_BASE, 200001)
    return float(np.trapezoid(endo_radius(z) ** 2, z)), float(np.trapezoid(core_radius_squared(z), z))


def cavity_core_scale_squared(ejection_fraction: float, shortening: float) -> float:
    """k^2 at ES such that the LV blood-pool volume falls by ``ejection_fraction``."""
    endo, core = _cavity_integrals()
    s = 1.0 - shortening
    k2 = (core - ejection_fraction * endo) / (s * core)
    if not 0.1 <= k2 <= 1.0 / s:
        raise InputError(f"PhantomConfig 'ejection_fraction' {ejection_fraction} cannot be reached with "
                         f"longitudinal_shortening {shortening} (radial cavity scale^2 would be {k2:.3f})")
    return float(k2)
