"""A synthetic beating-heart contrast CT phantom whose motion is known everywhere (analytic).

Coordinates. Every physical point is LPS millimetres. The left ventricle (LV) lives in a *heart frame*:
origin at the epicardial apex, unit axes ``e1`` (towards the right ventricle, i.e. the septum),
``e2 = e3 x e1`` (the anterior wall) and ``e3`` (the long axis, apex -> base), tilted against the image
axes like a real heart (apex anterior, left and inferior of the base). Heart-frame cylindrical
coordinates are ``(r, theta, z)``; ``theta = 0`` is the septum, ``+90`` deg the anterior wall, ``180`` the
lateral wall, ``-90`` the inferior wall.

Anatomy (reference frame = frame 0 = end-diastole, ED): a truncated prolate-ellipsoidal LV myocardial
shell with its blood pool, papillary muscles and trabeculae, an RV crescent, the atria, aortic root and
pulmonary trunk, coronary arteries on the epicardium (LAD, diagonals, LCX, obtuse marginal, RCA, PDA), and a
thorax around it (lungs with vessels, chest wall, ribs, sternum, spine, descending aorta, liver dome).

Motion. ``phi_t`` maps a reference-frame point ``x`` to where that tissue is in frame ``t``
(``phi_t(x) = x + u_t(x)``, the project's one convention; see :mod:`displacement_field_io`). With the
contraction ``a(t)`` in [0, 1] (0 at ED, 1 at end-systole, ES; :func:`contraction`) it is, in the heart
frame, the composition of four steps, each changing one coordinate monotonically while the others stay:

1. twist ``theta' = theta + rot(z)``, linear from the apex (turning counter-clockwise seen from the apex)
   to the base (clockwise);
2. radial: in the cavity core ``r' = k r``; elsewhere ``r'^2 = r^2 + ((alpha - 1) r^2 + beta)`` with
   ``alpha = 1 / Z'(z)`` and ``beta = (k^2 - alpha) Rcore(z)^2``, which preserves volume exactly
   (det J = 1) in the myocardium while the cavity empties (ejection fraction as configured) and the wall
   thickens;
3. longitudinal ``z' = Z(z) = z - (1 - s) B(z)`` with ``B(z) = z`` on the LV: the apex stays, the base moves
   towards it by the configured shortening;
4. a small translation of the heart.

Every step fades smoothly to the identity away from the LV (from 40 to 85 mm off the long axis, and above
the base / below the apex), so lungs, ribs and spine stay still and nothing folds (each step is a bijection).
Frame ``t`` is rendered by evaluating the reference-frame model at ``phi_t^{-1}(y)`` for every voxel ``y``;
the inverse is closed form up to monotone 1-D Newton solves run to 1e-9 mm. Images, labels, landmarks and
the ground-truth fields therefore agree by construction.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.interpolate import CubicSpline
from scipy.spatial import cKDTree

from .. import __version__
from ..core.atomic_file import write_text_atomic
from ..core.geometry import Geometry
from ..core.vocabulary import InputError
from ..core.volume import Volume, write_image_atomic
from ..cycle.request import CycleConfig, InputFiles, RunRequest
from ..fileio.displacement_field import (
    read_displacement_field,
    read_displacement_transform,
    write_displacement_field,
)
from ..fileio.frame_sequence import read_4d_frames
from ..fileio.landmarks import (
    Landmarks,
    Trajectories,
    read_markups_json,
    read_trajectories_csv,
    write_markups_json,
    write_trajectories_csv,
)

PHANTOM_MODEL_VERSION = 1
LABEL_VALUES = {"myocardium": 1, "blood_pool": 2, "heart": 3}
"""Label map values. The whole-heart mask is ``labels >= 1`` (myocardium and LV blood pool are part of the
heart; 3 marks the rest of it: RV, atria, aortic root, pulmonary trunk). Papillary muscles and trabeculae
are inside the blood pool label, as in most LV segmentation conventions."""

# --- anatomy (heart frame, mm) ------------------------------------------------------------------------
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
_T_LOW, _T_HIGH = 10.0, 10.0              # saturation lengths of the longitudinal map below apex/above base
_D_UP, _D_DOWN = 40.0, 30.0               # ... then fading to no motion over these lengths (mm)
_R_FADE = (40.0, 85.0)                    # heart motion fades from 40 to 85 mm off the long axis
_MAX_VOXELS = 64_000_000                  # per frame (e.g. 400 x 400 x 400)
_APICAL_ROTATION_SHARE = 2.0 / 3.0        # apex turns 2/3 of the net torsion, the base 1/3 the other way
_RV_WALL_MM = 3.0
# chambers and great vessels, heart frame (mm): ellipsoids (centre, semi-axes), capsules (start, end, radius)
_RV = ((26.0, 0.0, 56.0), (20.0, 42.0, 46.0))
_LA = ((-12.0, -6.0, Z_BASE + 25.0), (27.0, 24.0, 20.0))
_RA = ((36.0, -14.0, Z_BASE + 18.0), (22.0, 22.0, 24.0))
_AORTA = ((9.0, 6.0, Z_BASE - 8.0), (40.0, 44.0, Z_BASE + 41.0), 12.5)
_PULMONARY = ((18.0, 32.0, Z_BASE + 2.0), (-15.0, 57.0, Z_BASE + 38.0), 12.0)
_MITRAL = ((-4.0, -2.0, Z_BASE - 6.0), (-10.0, -5.0, Z_BASE + 14.0), 15.0)  # LV inflow into the LA
_PAPILLARY_THETA_DEG = (135.0, -118.0)

# CT numbers (HU)
HU = {
    "air": -1000.0, "lung": -860.0, "fat": -100.0, "epicardial_fat": -85.0, "muscle": 45.0, "liver": 65.0,
    "bone_cortex": 750.0, "bone_marrow": 230.0, "myocardium": 125.0, "lv_blood": 390.0, "rv_blood": 320.0,
    "la_blood": 380.0, "ra_blood": 230.0, "aorta": 400.0, "pulmonary": 310.0, "coronary": 470.0,
    "papillary": 120.0, "thin_wall": 105.0, "esophagus": 35.0,
}


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


def _epi_radius(z: np.ndarray | float) -> np.ndarray:
    return A_EPI * np.sqrt(np.clip(1.0 - ((np.asarray(z) - Z_C) / C_EPI) ** 2, 0.0, None))


def _endo_radius(z: np.ndarray | float) -> np.ndarray:
    return A_ENDO * np.sqrt(np.clip(1.0 - ((np.asarray(z) - Z_C) / C_ENDO) ** 2, 0.0, None))


# --- configuration ------------------------------------------------------------------------------------
def _triple(name: str, value: object, kind: type) -> tuple:
    if isinstance(value, (int, float, np.integer, np.floating)):
        value = (value,)
    try:
        values = tuple(kind(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError) as error:
        raise InputError(f"PhantomConfig '{name}' must be one or three numbers, got {value!r}") from error
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise InputError(f"PhantomConfig '{name}' must be one or three numbers, got {value!r}")
    return values


@dataclass(frozen=True)
class PhantomConfig:
    """Everything that defines one synthetic patient (validated; ``to_dict``/``from_dict`` round-trip).

    Grid: ``spacing_mm`` (i, j, k) and ``size`` (voxels, i, j, k); without ``size`` the grid covers
    ``fov_mm`` around the heart. The grid is axial (identity direction) and centred at
    ``HEART_CENTRE_LPS``. Motion at ES: ``ejection_fraction`` of the LV blood pool,
    ``longitudinal_shortening`` (base towards the fixed apex, fraction of the LV length),
    ``torsion_deg`` (apical minus basal rotation, positive = apex counter-clockwise seen from the apex),
    ``translation_mm`` (LPS, heart only).
    ES is frame ``round(es_fraction * frames)``. ``noise_hu`` is the Gaussian noise standard deviation;
    ``blur_mm`` the Gaussian reconstruction-kernel sigma. ``gt_spacing_mm`` samples the ground-truth
    fields on a coarser grid over the same field of view (default: the image grid).

    ``texture_ct``: path of a real 3D CT (HU) used as the reference frame's intensities instead of the synthetic
    rendering, moved to the centre of the field of view (its grid centre on ``HEART_CENTRE_LPS``) and deformed
    with the same motion, so the ground truth stays exact. The labels and landmarks stay those of the phantom's
    anatomy (they do not follow the real CT's anatomy): score such runs by the dense error and landmark TRE.
    """

    frames: int = 20
    spacing_mm: tuple[float, float, float] = (1.75, 1.75, 1.75)
    size: tuple[int, int, int] | None = None
    fov_mm: tuple[float, float, float] = (150.0, 150.0, 120.0)
    seed: int = 0
    noise_hu: float = 20.0
    blur_mm: float = 0.6
    es_fraction: float = 0.375
    ejection_fraction: float = 0.58
    longitudinal_shortening: float = 0.13
    torsion_deg: float = 12.0
    translation_mm: tuple[float, float, float] = (1.0, -1.0, -1.5)
    gt_spacing_mm: tuple[float, float, float] | None = None
    texture_ct: str | None = None

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, value: object, expectation: str) -> None:
            if not ok:
                raise InputError(f"PhantomConfig '{name}' must be {expectation}, got {value!r}")

        set_ = functools.partial(object.__setattr__, self)
        check("frames", isinstance(self.frames, (int, np.integer)) and not isinstance(self.frames, bool)
              and 2 <= self.frames <= 200, self.frames, "an integer in [2, 200]")
        set_("frames", int(self.frames))
        spacing = _triple("spacing_mm", self.spacing_mm, float)
        check("spacing_mm", all(0.2 <= s <= 8.0 for s in spacing), self.spacing_mm, "in [0.2, 8] mm")
        set_("spacing_mm", spacing)
        fov = _triple("fov_mm", self.fov_mm, float)
        check("fov_mm", all(40.0 <= f <= 500.0 for f in fov), self.fov_mm, "in [40, 500] mm")
        set_("fov_mm", fov)
        if self.size is not None:
            size = _triple("size", self.size, float)
            check("size", all(s == int(s) and 8 <= s <= 1024 for s in size), self.size,
                  "integers in [8, 1024] voxels")
            set_("size", tuple(int(s) for s in size))
        if self.gt_spacing_mm is not None:
            gt = _triple("gt_spacing_mm", self.gt_spacing_mm, float)
            check("gt_spacing_mm", all(0.2 <= s <= 8.0 for s in gt), self.gt_spacing_mm, "in [0.2, 8] mm")
            set_("gt_spacing_mm", gt)
        check("seed", isinstance(self.seed, (int, np.integer)) and not isinstance(self.seed, bool)
              and self.seed >= 0, self.seed, "a non-negative integer")
        set_("seed", int(self.seed))
        for name, low, high, unit in (("noise_hu", 0.0, 500.0, "HU"), ("blur_mm", 0.0, 5.0, "mm"),
                                      ("es_fraction", 0.2, 0.6, ""), ("ejection_fraction", 0.0, 0.8, ""),
                                      ("longitudinal_shortening", 0.0, 0.3, ""),
                                      ("torsion_deg", -30.0, 30.0, "degrees")):
            value = getattr(self, name)
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
                and np.isfinite(value) and low <= value <= high
            check(name, ok, value, f"a number in [{low:g}, {high:g}]{' ' + unit if unit else ''}")
            set_(name, float(value))
        translation = _triple("translation_mm", self.translation_mm, float)
        check("translation_mm", all(np.isfinite(translation)) and np.linalg.norm(translation) <= 10.0,
              self.translation_mm, "an LPS vector of at most 10 mm")
        set_("translation_mm", translation)
        voxels = int(np.prod(self.grid_size))
        if voxels > _MAX_VOXELS:
            grid = "x".join(map(str, self.grid_size))
            raise InputError(f"PhantomConfig: a {grid} grid has {voxels} voxels per frame, more than "
                             f"{_MAX_VOXELS}; use a larger spacing_mm or a smaller size")
        if not 1 <= self.es_frame <= self.frames - 1:
            raise InputError(f"PhantomConfig: es_fraction {self.es_fraction} with {self.frames} frames puts "
                             f"ES at frame {self.es_frame}; it must be in [1, {self.frames - 1}]")
        _cavity_core_scale_squared(self.ejection_fraction, self.longitudinal_shortening)  # validates
        if self.texture_ct is not None:
            path = Path(self.texture_ct)
            check("texture_ct", path.is_file(), self.texture_ct, "an existing CT image file")
            set_("texture_ct", str(path.resolve()))

    # --- derived ---------------------------------------------------------------------------------------
    @classmethod
    def paper_like(cls, **overrides: object) -> PhantomConfig:
        """The paper's acquisition: 0.5 x 0.5 x 2 mm voxels and 20 frames (ground truth on a 1.75 mm grid)."""
        settings: dict = {"spacing_mm": (0.5, 0.5, 2.0), "frames": 20, "gt_spacing_mm": (1.75, 1.75, 1.75)}
        settings.update(overrides)
        return cls(**settings)

    @property
    def es_frame(self) -> int:
        """End-systolic frame number (ED is frame 0)."""
        return int(round(self.es_fraction * self.frames))

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """Image size in voxels (i, j, k)."""
        if self.size is not None:
            return self.size
        return tuple(max(8, int(round(f / s))) for f, s in zip(self.fov_mm, self.spacing_mm, strict=True))

    @property
    def geometry(self) -> Geometry:
        """The image grid (every frame and the reference share it): axial, centred at ``HEART_CENTRE_LPS``."""
        return _centred_geometry(self.grid_size, self.spacing_mm)

    @property
    def ground_truth_geometry(self) -> Geometry:
        """The grid the ground-truth displacement fields are sampled on (the image grid by default)."""
        if self.gt_spacing_mm is None:
            return self.geometry
        extent = [(n - 1) * s for n, s in zip(self.grid_size, self.spacing_mm, strict=True)]
        size = tuple(max(2, int(np.ceil(e / s - 1e-6)) + 1)
                     for e, s in zip(extent, self.gt_spacing_mm, strict=True))
        return _centred_geometry(size, self.gt_spacing_mm)

    def to_dict(self) -> dict:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> PhantomConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"PhantomConfig: unknown parameters {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _centred_geometry(size: Sequence[int], spacing: Sequence[float]) -> Geometry:
    half = (np.asarray(size, dtype=np.float64) - 1.0) * np.asarray(spacing) / 2.0
    origin = np.asarray(HEART_CENTRE_LPS) - half
    return Geometry(tuple(int(n) for n in size), tuple(float(s) for s in spacing),
                    tuple(float(o) for o in origin))


# --- motion model -------------------------------------------------------------------------------------
def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _smootherstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * t * (t * (6.0 * t - 15.0) + 10.0)


def contraction(phase: float, es_phase: float) -> float:
    """Contraction ``a`` in [0, 1] at cycle ``phase`` in [0, 1): 0 at ED (phase 0), 1 at ES (``es_phase``).

    Systole is a half cosine; diastole has rapid early filling (80 %), diastasis and an atrial kick; the
    curve is C1 and periodic.
    """
    phase = float(phase) % 1.0
    if phase <= es_phase:
        return float(0.5 * (1.0 - np.cos(np.pi * phase / es_phase)))
    tau = (phase - es_phase) / (1.0 - es_phase)
    return float(1.0 - 0.8 * _smoothstep(tau / 0.45) - 0.2 * _smoothstep((tau - 0.75) / 0.25))


def _profile_p(t: np.ndarray) -> np.ndarray:
    """Integral of (1 - smoothstep) from 0 to t (t in [0, 1]); 0.5 at t = 1."""
    t2 = t * t
    return t - t2 * t + 0.5 * t2 * t2


def _fade(t: np.ndarray) -> np.ndarray:
    """1 - smootherstep(t): 1 for t <= 0, 0 for t >= 1, C2."""
    return 1.0 - _smootherstep(t)


def _fade_slope(t: np.ndarray) -> np.ndarray:
    """d/dt of :func:`_fade` (zero outside [0, 1])."""
    t = np.clip(t, 0.0, 1.0)
    u = t * (1.0 - t)
    return -30.0 * u * u


def _radial_fade(r: np.ndarray) -> np.ndarray:
    """Share of the heart motion at distance ``r`` (mm) from the long axis: 1 up to 40 mm, 0 beyond 85 mm."""
    return _fade((r - _R_FADE[0]) / (_R_FADE[1] - _R_FADE[0]))


def _radial_fade_slope(r: np.ndarray) -> np.ndarray:
    return _fade_slope((r - _R_FADE[0]) / (_R_FADE[1] - _R_FADE[0])) / (_R_FADE[1] - _R_FADE[0])


def _long_profile(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Longitudinal profile at heart-frame height z (mm): ``(B, b, sat, fade)``.

    ``sat`` = z on [0, Z_BASE], saturating smoothly below the apex and above the base; ``fade`` is 1 on the
    LV and goes smoothly to 0 further out (``_D_DOWN`` below, ``_D_UP`` above); ``B = sat * fade`` is the
    shortening profile (the base moves by (1 - s) B) and ``b = dB/dz``.
    """
    sat = np.array(z, dtype=np.float64, copy=True)
    sat_slope = np.ones_like(sat)
    fade = np.ones_like(sat)
    fade_slope = np.zeros_like(sat)
    above = np.flatnonzero(sat > Z_BASE)
    if above.size:
        za = sat[above]
        t1 = np.clip((za - Z_BASE) / _T_HIGH, 0.0, 1.0)
        t2 = (za - Z_BASE - _T_HIGH) / _D_UP
        sat[above] = Z_BASE + _T_HIGH * _profile_p(t1)
        sat_slope[above] = 1.0 - _smoothstep(t1)
        fade[above] = _fade(t2)
        fade_slope[above] = _fade_slope(t2) / _D_UP
    below = np.flatnonzero(sat < 0.0)
    if below.size:
        zb = sat[below]
        t1 = np.clip(-zb / _T_LOW, 0.0, 1.0)
        t2 = (-zb - _T_LOW) / _D_DOWN
        sat[below] = -_T_LOW * _profile_p(t1)
        sat_slope[below] = 1.0 - _smoothstep(t1)
        fade[below] = _fade(t2)
        fade_slope[below] = -_fade_slope(t2) / _D_DOWN
    return sat * fade, sat_slope * fade + sat * fade_slope, sat, fade


def _core_radius_squared(z: np.ndarray) -> np.ndarray:
    """Squared radius (mm^2) of the cavity core (compressive map) at height z; <= the endocardium's."""
    v = 1.0 - ((z - Z_C) / _C_CORE) ** 2
    delta = 0.05
    g = np.where(v >= 2 * delta, v - delta, np.where(v > 0.0, v * v / (4 * delta), 0.0))
    fade = 1.0 - _smoothstep((z - Z_BASE) / _T_HIGH)
    return _A_CORE**2 * g * fade


@functools.cache
def _cavity_integrals() -> tuple[float, float]:
    """(integral of R_endo^2, integral of R_core^2) over the LV cavity's z range, mm^3 / pi."""
    z = np.linspace(Z_C - C_ENDO, Z_BASE, 200001)
    return float(np.trapezoid(_endo_radius(z) ** 2, z)), float(np.trapezoid(_core_radius_squared(z), z))


def _cavity_core_scale_squared(ejection_fraction: float, shortening: float) -> float:
    """k^2 at ES such that the LV blood-pool volume falls by ``ejection_fraction``."""
    endo, core = _cavity_integrals()
    s = 1.0 - shortening
    k2 = (core - ejection_fraction * endo) / (s * core)
    if not 0.1 <= k2 <= 1.0 / s:
        raise InputError(f"PhantomConfig 'ejection_fraction' {ejection_fraction} cannot be reached with "
                         f"longitudinal_shortening {shortening} (radial cavity scale^2 would be {k2:.3f})")
    return float(k2)


@dataclass(frozen=True)
class FrameMotion:
    """The scalar motion state of one frame (all relative to the reference frame 0)."""

    frame: int
    contraction: float            # a in [0, 1]
    s: float                      # longitudinal scale of the LV, 1 - a * shortening
    k2: float                     # squared radial scale of the cavity core
    rot_apex_rad: float           # rotation about e3 at the apical level (right-hand rule)
    rot_base_rad: float           # rotation about e3 at the base
    translation_mm: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))  # LPS

    @property
    def is_identity(self) -> bool:
        return self.contraction == 0.0


def frame_motion(config: PhantomConfig, frame: int) -> FrameMotion:
    """Motion state of ``frame`` (0 <= frame < config.frames)."""
    if not 0 <= int(frame) < config.frames:
        raise InputError(f"frame must be in [0, {config.frames - 1}], got {frame}")
    a = contraction(frame / config.frames, config.es_frame / config.frames)
    k2_es = _cavity_core_scale_squared(config.ejection_fraction, config.longitudinal_shortening)
    torsion = np.deg2rad(config.torsion_deg)
    return FrameMotion(
        frame=int(frame), contraction=a, s=1.0 - a * config.longitudinal_shortening,
        k2=1.0 - a * (1.0 - k2_es), rot_apex_rad=-a * _APICAL_ROTATION_SHARE * torsion,
        rot_base_rad=a * (1.0 - _APICAL_ROTATION_SHARE) * torsion,
        translation_mm=tuple(a * t for t in config.translation_mm),
    )


def _twist_angle(sat: np.ndarray, fade: np.ndarray, r: np.ndarray, motion: FrameMotion) -> np.ndarray:
    """Rotation (rad, about e3) of the tissue at (r, z): linear apex -> base, fading away from the LV."""
    fraction = (sat - Z_APICAL) / (Z_BASE - Z_APICAL)
    angle = motion.rot_apex_rad + (motion.rot_base_rad - motion.rot_apex_rad) * fraction
    return angle * fade * _radial_fade(r)


def _radial_terms(z_slope: np.ndarray, z: np.ndarray, motion: FrameMotion) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, beta) of the radial map r1^2 = r^2 + ((alpha - 1) r^2 + beta) h(r) outside the cavity core.

    alpha = 1 / z-stretch makes the wall incompressible; beta = (k^2 - alpha) Rcore^2 joins the core map.
    """
    alpha = 1.0 / (1.0 - (1.0 - motion.s) * np.maximum(z_slope, 0.0))
    return alpha, (motion.k2 - alpha) * _core_radius_squared(z)


def _translation_weight(p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> np.ndarray:
    """Share of the heart translation at heart-frame point p (after the deformation): 1 on the heart."""
    r = np.sqrt(p1 * p1 + p2 * p2)
    return _fade((r - 40.0) / 50.0) * _fade((p3 - Z_BASE - 5.0) / 45.0) * _fade((-p3 - 5.0) / 45.0)


Components = tuple[np.ndarray, np.ndarray, np.ndarray]


def _heart_map(q1: np.ndarray, q2: np.ndarray, z: np.ndarray, motion: FrameMotion) -> Components:
    """phi_t in heart-frame coordinates (component arrays, mm): reference point -> its frame-t position.

    Composition translation o longitudinal o radial o twist; each step changes one coordinate as a
    monotone function of it (the others fixed), so the map is a bijection; in the LV wall (all fades 1)
    the determinants multiply to exactly 1.
    """
    r2 = q1 * q1 + q2 * q2
    r = np.sqrt(r2)
    big_b, small_b, sat, fade = _long_profile(z)
    # 1. twist about the long axis
    angle = _twist_angle(sat, fade, r, motion)
    cos, sin = np.cos(angle), np.sin(angle)
    t1, t2 = cos * q1 - sin * q2, sin * q1 + cos * q2
    # 2. radial: cavity core r1 = k r; elsewhere area-preserving up to the longitudinal stretch
    alpha, _ = _radial_terms(small_b, z, motion)
    core2 = _core_radius_squared(z)
    share = np.minimum(np.divide(core2, r2, out=np.zeros_like(r2), where=r2 > 0.0), 1.0)
    ratio = np.sqrt(np.where(r2 < core2, motion.k2,
                             1.0 + ((alpha - 1.0) + (motion.k2 - alpha) * share) * _radial_fade(r)))
    p1, p2 = ratio * t1, ratio * t2
    # 3. longitudinal shortening (apex fixed), fading with the new radius
    p3 = z - (1.0 - motion.s) * big_b * _radial_fade(ratio * r)
    # 4. heart translation
    g = _translation_weight(p1, p2, p3)
    shift = heart_axes_lps() @ np.asarray(motion.translation_mm)
    return p1 + g * shift[0], p2 + g * shift[1], p3 + g * shift[2]


def _inverse_heart_map(p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, motion: FrameMotion,
                       tolerance: float = 1e-9) -> Components:
    """phi_t^{-1} in heart-frame coordinates (component arrays, mm): frame-t point -> reference point."""
    shift = heart_axes_lps() @ np.asarray(motion.translation_mm)
    # 4. translation: x = p - g(x) shift, a contraction (|shift| |grad g| << 1); iterate where 0 < g < 1
    g = _translation_weight(p1 - shift[0], p2 - shift[1], p3 - shift[2])
    active = np.flatnonzero((g > 0.0) & (g < 1.0) | (g != _translation_weight(p1, p2, p3)))
    for _ in range(60):
        if active.size == 0:
            break
        previous = g[active]
        g[active] = _translation_weight(p1[active] - previous * shift[0], p2[active] - previous * shift[1],
                                        p3[active] - previous * shift[2])
        active = active[np.abs(g[active] - previous) * np.linalg.norm(shift) >= tolerance]
    q1, q2, z1 = p1 - g * shift[0], p2 - g * shift[1], p3 - g * shift[2]
    r1_sq = q1 * q1 + q2 * q2
    # 3. longitudinal: solve z - (1 - s) B(z) h(r1) = z1 (monotone) by Newton's method
    h1 = _radial_fade(np.sqrt(r1_sq)) * (1.0 - motion.s)
    z = z1 + h1 * _long_profile(z1)[0]
    active = np.flatnonzero(h1 > 0.0)
    for _ in range(60):
        if active.size == 0:
            break
        big_b, small_b, _, _ = _long_profile(z[active])
        residual = z[active] - h1[active] * big_b - z1[active]
        z[active] -= residual / (1.0 - h1[active] * small_b)
        active = active[np.abs(residual) >= tolerance]
    big_b, small_b, sat, fade = _long_profile(z)
    # 2. radial: closed form inside 40 mm (h = 1), Newton in r^2 in the fading shell
    alpha, beta = _radial_terms(small_b, z, motion)
    core2 = _core_radius_squared(z)
    in_core = r1_sq < motion.k2 * core2
    v = np.where(in_core, r1_sq / motion.k2, (r1_sq - beta) / alpha)
    shell = np.flatnonzero(~in_core & (v > _R_FADE[0] ** 2))
    if shell.size:
        a, b, target = alpha[shell], beta[shell], r1_sq[shell]
        vs = np.maximum(target, _R_FADE[0] ** 2)
        for _ in range(60):
            root = np.sqrt(vs)
            h = _radial_fade(root)
            residual = vs + ((a - 1.0) * vs + b) * h - target
            slope = 1.0 + (a - 1.0) * h + ((a - 1.0) * vs + b) * _radial_fade_slope(root) / (2.0 * root)
            vs = np.maximum(vs - residual / slope, 0.25 * _R_FADE[0] ** 2)
            if np.max(np.abs(residual), initial=0.0) < tolerance * 100.0:
                break
        v[shell] = vs
    on_axis = np.where(in_core, 1.0 / motion.k2, 1.0 / alpha)
    ratio = np.sqrt(np.divide(v, r1_sq, out=on_axis, where=r1_sq > 0.0))
    t1, t2 = ratio * q1, ratio * q2
    # 1. twist back
    angle = _twist_angle(sat, fade, np.sqrt(v), motion)
    cos, sin = np.cos(angle), np.sin(angle)
    return cos * t1 + sin * t2, -sin * t1 + cos * t2, z


def _heart_components(points_lps: np.ndarray) -> Components:
    """LPS points (N, 3) -> heart-frame component arrays (float64)."""
    axes, apex = heart_axes_lps(), heart_apex_lps()
    x, y, z = (points_lps[:, c] - apex[c] for c in range(3))
    return tuple(axes[row, 0] * x + axes[row, 1] * y + axes[row, 2] * z for row in range(3))


def _lps_points(q1: np.ndarray, q2: np.ndarray, q3: np.ndarray) -> np.ndarray:
    """Heart-frame component arrays -> LPS points (N, 3)."""
    axes, apex = heart_axes_lps(), heart_apex_lps()
    return np.stack([apex[c] + axes[0, c] * q1 + axes[1, c] * q2 + axes[2, c] * q3 for c in range(3)],
                    axis=-1)


def _checked_points(points_lps: np.ndarray) -> np.ndarray:
    points_lps = np.asarray(points_lps, dtype=np.float64)
    if points_lps.shape[-1] != 3:
        raise InputError(f"points_lps must have shape (..., 3), got {points_lps.shape}")
    return points_lps


def ground_truth_map(points_lps: np.ndarray, frame: int, config: PhantomConfig) -> np.ndarray:
    """phi_t: reference-frame (frame 0) LPS points (..., 3) in mm -> their LPS positions in ``frame``."""
    points_lps = _checked_points(points_lps)
    motion = frame_motion(config, frame)
    if motion.is_identity:
        return points_lps.copy()
    flat = points_lps.reshape(-1, 3)
    return _lps_points(*_heart_map(*_heart_components(flat), motion)).reshape(points_lps.shape)


def inverse_ground_truth_map(points_lps: np.ndarray, frame: int, config: PhantomConfig) -> np.ndarray:
    """phi_t^{-1}: LPS points (..., 3) of ``frame`` -> the reference-frame points that move there (mm).

    Closed form except three monotone 1-D solves (Newton) and a contracting fixed point for the
    translation, each run to 1e-9 mm, so ``phi_t(phi_t^{-1}(y)) = y`` to better than 1e-6 mm.
    """
    points_lps = _checked_points(points_lps)
    motion = frame_motion(config, frame)
    if motion.is_identity:
        return points_lps.copy()
    flat = points_lps.reshape(-1, 3)
    return _lps_points(*_inverse_heart_map(*_heart_components(flat), motion)).reshape(points_lps.shape)


def push_reference_mask(mask: np.ndarray, frame: int, config: PhantomConfig,
                        smoothing_voxels: float = 0.7) -> np.ndarray:
    """Carry a reference-frame (frame 0) mask (k, j, i) on the image grid to ``frame``: bool (k, j, i).

    Every frame-t voxel centre y is mapped back with ``phi_t^{-1}``; the mask, smoothed by a Gaussian of
    ``smoothing_voxels`` voxels against aliasing, is sampled there trilinearly and thresholded at 0.5.
    (Nearest-neighbour sampling of a binary mask shifts its boundary by about a quarter voxel on average,
    which alone costs ~0.05 Dice on a 10 mm wall at 1.75 mm voxels.)
    """
    geometry = config.geometry
    mask = np.asarray(mask)
    if mask.shape != geometry.array_shape:
        raise InputError(f"mask shape {mask.shape} does not match the phantom grid {geometry.array_shape}")
    if smoothing_voxels < 0:
        raise InputError(f"smoothing_voxels must be >= 0, got {smoothing_voxels}")
    source = mask.astype(np.float32)
    if smoothing_voxels > 0:
        source = ndimage.gaussian_filter(source, smoothing_voxels)
    points = inverse_ground_truth_map(geometry.voxel_centres_physical(), frame, config)
    index = geometry.physical_to_index(points)
    values = ndimage.map_coordinates(source, np.moveaxis(index[..., ::-1], -1, 0), order=1, mode="constant")
    return values >= 0.5


def ground_truth_displacement(config: PhantomConfig, frame: int,
                              geometry: Geometry | None = None) -> np.ndarray:
    """u_t = phi_t(p) - p at every voxel centre p of ``geometry`` (default: the ground-truth grid),
    shape (k, j, i, 3), LPS mm, resampling convention (reference point -> its position in ``frame``)."""
    geometry = geometry or config.ground_truth_geometry
    points = geometry.voxel_centres_physical()
    return ground_truth_map(points, frame, config) - points


# --- landmarks and coronary arteries ------------------------------------------------------------------
def _on_epicardium(theta_deg: float, z: float, height: float) -> np.ndarray:
    """Heart-frame point at angle theta (deg), height z, ``height`` mm outside the LV epicardium (along r)."""
    radius = float(_epi_radius(z)) + height
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
    rv_c = np.asarray(_RV[0])
    rv_axes = np.asarray(_RV[1]) + _RV_WALL_MM + np.array([2.5, 2.5, 0.0])  # the RCA runs on the RV surface
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
        middle = 0.5 * (float(_endo_radius(z)) + float(_epi_radius(z)))
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
    return _landmarks_heart()[2]


def landmark_trajectories(config: PhantomConfig) -> Trajectories:
    """Ground-truth landmark positions in every frame (``phi_t`` applied to the reference landmarks)."""
    reference = phantom_landmarks()
    points = np.stack([ground_truth_map(reference.points_lps, t, config) for t in range(config.frames)])
    return Trajectories(tuple(range(config.frames)), reference.labels, points)


# --- rendering the reference model --------------------------------------------------------------------
def _ellipsoid_sdf(a: np.ndarray, b: np.ndarray, c: np.ndarray | None, centre: Sequence[float],
                   axes: Sequence[float]) -> np.ndarray:
    """First-order signed distance (mm, negative inside) to an axis-aligned ellipsoid (an ellipse-based
    infinite cylinder when ``c`` is None), from component arrays."""
    da, db = (a - centre[0]) / axes[0], (b - centre[1]) / axes[1]
    f = da * da + db * db - 1.0
    g = (da / axes[0]) ** 2 + (db / axes[1]) ** 2
    if c is not None:
        dc = (c - centre[2]) / axes[2]
        f += dc * dc
        g += (dc / axes[2]) ** 2
    return f / (2.0 * np.sqrt(g) + 1e-6)


def _capsule_sdf(a: np.ndarray, b: np.ndarray, c: np.ndarray, start: Sequence[float], end: Sequence[float],
                 radius: float) -> np.ndarray:
    """Signed distance (mm) to a capsule (segment start-end thickened by ``radius``), component arrays."""
    d = [e - s for s, e in zip(start, end, strict=True)]
    length2 = sum(x * x for x in d)
    pa, pb, pc = a - start[0], b - start[1], c - start[2]
    t = np.clip((pa * d[0] + pb * d[1] + pc * d[2]) / length2, 0.0, 1.0)
    pa, pb, pc = pa - t * d[0], pb - t * d[1], pc - t * d[2]
    return np.sqrt(pa * pa + pb * pb + pc * pc) - radius


def _soft(sdf: np.ndarray, ramp: float) -> np.ndarray:
    """Partial-volume fraction of a voxel of size ~``ramp`` mm at signed distance ``sdf`` (mm)."""
    return np.clip(0.5 - sdf * (1.0 / ramp), 0.0, 1.0)


def _texture_step(field: np.ndarray, threshold: float, width: float) -> np.ndarray:
    """0 -> 1 as a texture field crosses ``threshold`` over ``width`` (field units, not mm)."""
    return np.clip(0.5 + (field - threshold) * (1.0 / width), 0.0, 1.0)


def _mix(hu: np.ndarray, value: np.ndarray | float, fraction: np.ndarray) -> None:
    """Paint ``value`` over ``hu`` with coverage ``fraction`` (in place)."""
    hu += fraction * (value - hu)


@dataclass(frozen=True)
class _Texture:
    """Smooth random fields attached to the reference anatomy (an LPS lattice, sampled trilinearly), so the
    texture moves with the tissue."""

    origin: np.ndarray
    spacing: float
    fields: np.ndarray   # (2, k, j, i): [0] ~1.5 mm correlation, [1] ~6 mm correlation, unit variance

    def sample(self, points_lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index = ((points_lps - self.origin) / self.spacing).T[::-1]  # (k, j, i) rows for map_coordinates
        fine = ndimage.map_coordinates(self.fields[0], index, order=1, mode="nearest")
        coarse = ndimage.map_coordinates(self.fields[1], index, order=1, mode="nearest")
        return fine, coarse


@functools.lru_cache(maxsize=2)
def _texture(seed: int, extent_mm: tuple[float, float, float]) -> _Texture:
    rng = np.random.default_rng([seed, 7])
    half = np.asarray(extent_mm) / 2.0 + 25.0
    spacing = max(1.0, float(np.max(2.0 * half)) / 320.0)  # at most ~320^3 lattice points
    origin = np.asarray(HEART_CENTRE_LPS) - half
    shape = tuple(int(np.ceil(2 * h / spacing)) + 1 for h in half[::-1])

    def field(sigma: float) -> np.ndarray:
        noise = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma / spacing)
        return noise / noise.std()

    return _Texture(origin, spacing, np.stack([field(1.5), field(6.0)]))


_BODY_MIDLINE = (HEART_CENTRE_LPS[0] - 45.0, HEART_CENTRE_LPS[1] + 12.0)  # LPS (x, y) of the body axis



def _thorax(x: np.ndarray, y: np.ndarray, z: np.ndarray, hu: np.ndarray, fine: np.ndarray, coarse: np.ndarray,
            ramp: float, mediastinum_sdf: np.ndarray) -> None:
    """Static body around the heart (LPS), painted into ``hu``: chest wall, ribs, lungs, spine, aorta,
    liver."""
    dx, dy, dz = x - _BODY_MIDLINE[0], y - _BODY_MIDLINE[1], z - HEART_CENTRE_LPS[2]
    hu[:] = HU["air"]
    _mix(hu, HU["fat"] + 10.0 * coarse, _soft(_ellipsoid_sdf(dx, dy, None, (0, 0), (165.0, 125.0)), ramp))
    _mix(hu, HU["muscle"] + 8.0 * coarse, _soft(_ellipsoid_sdf(dx, dy, None, (0, 0), (153.0, 113.0)), ramp))
    cavity = _ellipsoid_sdf(dx, dy, None, (0, 0), (138.0, 92.0))
    # ribs: oblique bony bands in the chest wall just outside the pleura
    rib_phase = np.sin((2.0 * np.pi / 38.0) * (dz + 54.0 * np.arctan2(dy, dx)))
    rib = _soft(np.abs(cavity + 6.0) - 5.5, ramp) * _soft((0.55 - rib_phase) * 9.0, ramp)
    _mix(hu, HU["bone_cortex"] - 400.0 * _soft(np.abs(cavity + 6.0) - 3.0, ramp), rib)
    sternum = _ellipsoid_sdf(dx, dy, None, (0.0, -98.0), (17.0, 8.0))
    _mix(hu, HU["bone_cortex"], _soft(sternum, ramp))
    _mix(hu, HU["bone_marrow"], _soft(sternum + 2.0, ramp))
    # pleural cavity: lungs with vessels, except the mediastinum (heart and fat, the posterior mediastinum
    # around oesophagus and descending aorta)
    in_cavity = _soft(cavity, ramp)
    lung = HU["lung"] + 25.0 * coarse + 860.0 * _texture_step(fine, 1.45, 0.6)
    mediastinum = np.minimum.reduce([
        mediastinum_sdf,
        _ellipsoid_sdf(dx, dy, None, (10.0, 50.0), (34.0, 26.0)),
    ])
    in_mediastinum = _soft(mediastinum, 2.0 * ramp)
    _mix(hu, lung, in_cavity * (1.0 - in_mediastinum))
    _mix(hu, HU["fat"] + 10.0 * coarse, in_cavity * in_mediastinum)
    # spine (vertebral body), descending aorta, oesophagus
    vertebra = _ellipsoid_sdf(dx, dy, None, (0.0, 74.0), (21.0, 18.0))
    _mix(hu, HU["bone_cortex"], _soft(vertebra, ramp))
    _mix(hu, HU["bone_marrow"] + 30.0 * coarse, _soft(vertebra + 2.5, ramp))
    _mix(hu, HU["aorta"], _soft(_ellipsoid_sdf(dx, dy, None, (30.0, 52.0), (12.5, 12.5)), ramp))
    _mix(hu, HU["esophagus"], _soft(_ellipsoid_sdf(dx, dy, None, (9.0, 45.0), (8.0, 6.0)), ramp))
    # liver under the diaphragm dome (the right dome higher)
    dome = -62.0 + 0.22 * np.clip(40.0 - dx, 0.0, None) - 0.002 * (dx * dx + (dy - 20.0) ** 2)
    _mix(hu, HU["liver"] + 8.0 * coarse, _soft(dz - dome, 2.0 * ramp) * in_cavity)


def _render_reference(points_lps: np.ndarray, texture: _Texture, ramp: float,
                      with_intensities: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """The reference-frame (ED) model at LPS points (N, 3) in mm -> (HU float32 (N,), labels uint8 (N,)).

    Intensities are partial-volume blended over ``ramp`` mm; labels are evaluated at the points themselves.
    ``with_intensities=False`` returns ``(None, labels)`` without computing the intensities.
    """
    q1, q2, z = (c.astype(np.float32) for c in _heart_components(points_lps))
    n = points_lps.shape[0]
    # LV (truncated prolate ellipsoids) and the other chambers
    base_cut = z - Z_BASE
    lv_cav_full = _ellipsoid_sdf(q1, q2, z, (0, 0, Z_C), (A_ENDO, A_ENDO, C_ENDO))
    lv_epi = np.maximum(_ellipsoid_sdf(q1, q2, z, (0, 0, Z_C), (A_EPI, A_EPI, C_EPI)), base_cut)
    lv_cav = np.maximum(lv_cav_full, base_cut)
    lv_inflow = np.maximum(_capsule_sdf(q1, q2, z, *_MITRAL), -base_cut)
    rv_in = np.maximum(_ellipsoid_sdf(q1, q2, z, *_RV), -lv_epi - 0.5)
    rv_out = np.maximum(_ellipsoid_sdf(q1, q2, z, _RV[0], tuple(a + _RV_WALL_MM for a in _RV[1])), -lv_epi)
    la_in = _ellipsoid_sdf(q1, q2, z, *_LA)
    ra_in = _ellipsoid_sdf(q1, q2, z, *_RA)
    aorta_in = _capsule_sdf(q1, q2, z, *_AORTA)
    pa_in = _capsule_sdf(q1, q2, z, *_PULMONARY)
    wall = 2.0
    heart_sdf = np.minimum.reduce([lv_epi, rv_out, la_in - wall, ra_in - wall, aorta_in - wall, pa_in - wall])
    # labels (hard, at the point itself)
    labels = np.zeros(n, dtype=np.uint8)
    labels[(heart_sdf <= 0.0) | (lv_inflow <= 0.0)] = LABEL_VALUES["heart"]
    labels[lv_epi <= 0.0] = LABEL_VALUES["myocardium"]
    labels[lv_cav <= 0.0] = LABEL_VALUES["blood_pool"]
    if not with_intensities:
        return None, labels
    fine, coarse = texture.sample(points_lps)
    hu = np.empty(n, dtype=np.float32)
    x, y, zz = (points_lps[:, c].astype(np.float32) for c in range(3))
    fat_thickness = 4.5 + 2.5 * coarse
    _thorax(x, y, zz, hu, fine, coarse, ramp, heart_sdf - fat_thickness - 2.0)
    # epicardial fat and pericardium
    pericardium = heart_sdf - fat_thickness
    _mix(hu, 25.0, _soft(np.abs(pericardium) - 0.4, ramp) * 0.6)
    _mix(hu, HU["epicardial_fat"] + 10.0 * coarse, _soft(pericardium, ramp))
    # atria, great vessels, RV (thin walls, then blood)
    for inner, value in ((ra_in, HU["ra_blood"]), (la_in, HU["la_blood"]), (pa_in, HU["pulmonary"]),
                         (aorta_in, HU["aorta"])):
        _mix(hu, HU["thin_wall"], _soft(inner - wall, ramp))
        _mix(hu, value + 12.0 * coarse, _soft(inner, ramp))
    _mix(hu, HU["thin_wall"] + 8.0 * coarse, _soft(rv_out, ramp))
    rv_trabeculae = (1.0 - _texture_step(fine, 0.6, 0.5)) * _soft(np.abs(rv_in + 2.5) - 2.5, ramp)
    _mix(hu, HU["rv_blood"] + 15.0 * coarse - (HU["rv_blood"] - HU["myocardium"]) * 0.8 * rv_trabeculae,
         _soft(rv_in, ramp))
    # LV: myocardium, blood pool with trabeculae, papillary muscles
    _mix(hu, HU["myocardium"] + 8.0 * coarse, _soft(lv_epi, ramp))
    blood = np.minimum(lv_cav, lv_inflow)
    trabeculae = (1.0 - _texture_step(fine, 0.4, 0.5)) * _soft(np.abs(lv_cav + 1.8) - 1.8, ramp) \
        * _soft((z - 0.8 * Z_BASE) * 0.5, 1.0)
    blood_hu = HU["lv_blood"] + 12.0 * coarse - (HU["lv_blood"] - HU["myocardium"]) * trabeculae
    _mix(hu, blood_hu, _soft(blood, ramp))
    papillary = np.full(n, np.inf, dtype=np.float32)
    for theta in _PAPILLARY_THETA_DEG:
        c, s = np.cos(np.deg2rad(theta)), np.sin(np.deg2rad(theta))
        r1, r2 = float(_endo_radius(22.0)) - 4.0, 0.72 * float(_endo_radius(52.0))
        muscle = _capsule_sdf(q1, q2, z, (r1 * c, r1 * s, 20.0), (r2 * c, r2 * s, 52.0), 5.0)
        papillary = np.minimum(papillary, muscle)
    _mix(hu, HU["papillary"] + 8.0 * coarse, _soft(papillary, ramp))
    # coronary arteries in the epicardial fat (evaluated near the heart's surface only)
    near = np.flatnonzero((heart_sdf > -3.0) & (heart_sdf < 10.0))
    if near.size:
        tree, radius = _coronary_tree()
        distance, index = tree.query(np.stack([q1[near], q2[near], z[near]], axis=-1),
                                     distance_upper_bound=5.0)
        inside = np.isfinite(distance)
        sdf = np.full(near.size, np.inf, dtype=np.float32)
        sdf[inside] = distance[inside] - radius[index[inside]]
        sub = hu[near]
        _mix(sub, HU["coronary"], _soft(sdf, ramp))
        hu[near] = sub
    return hu, labels


@functools.cache
def _coronary_tree() -> tuple[cKDTree, np.ndarray]:
    vessels = coronary_vessels()
    centreline = np.concatenate([v.centreline for v in vessels])
    return cKDTree(centreline), np.concatenate([v.radius for v in vessels])


# --- frames -------------------------------------------------------------------------------------------
@dataclass
class PhantomFrame:
    """One frame of the phantom in memory.

    ``image`` (HU, int16) and ``labels`` (uint8, :data:`LABEL_VALUES`) on the image grid;
    ``displacement_mm`` = u_t on the ground-truth grid ``displacement_geometry`` (k, j, i, 3; LPS mm;
    resampling convention: reference point p -> p + u_t(p) in this frame); ``landmarks_lps`` the
    ground-truth landmark positions in this frame (N, 3; LPS mm).
    """

    frame: int
    image: Volume
    labels: Volume
    displacement_mm: np.ndarray | None
    displacement_geometry: Geometry
    landmarks_lps: np.ndarray


def _slab_points(geometry: Geometry, k_start: int, k_stop: int) -> np.ndarray:
    """LPS centres (N, 3) of the voxels in slices k_start..k_stop-1, in array (k, j, i) order."""
    k, j, i = np.meshgrid(np.arange(k_start, k_stop, dtype=np.float64),
                          np.arange(geometry.size[1], dtype=np.float64),
                          np.arange(geometry.size[0], dtype=np.float64), indexing="ij")
    return geometry.index_to_physical(np.stack([i, j, k], axis=-1).reshape(-1, 3))


@functools.lru_cache(maxsize=2)
def _texture_ct(path: str) -> Volume:
    """The real CT of ``PhantomConfig.texture_ct``, translated so that its grid centre is ``HEART_CENTRE_LPS``."""
    volume = Volume.read(path, name=f"texture CT {Path(path).name}")
    geometry = volume.geometry
    centre = geometry.index_to_physical(((np.asarray(geometry.size, dtype=float) - 1.0) / 2.0)[None])[0]
    origin = np.asarray(geometry.origin) + np.asarray(HEART_CENTRE_LPS) - centre
    return Volume(volume.array.astype(np.float32), Geometry(geometry.size, geometry.spacing, tuple(origin),
                                                            geometry.direction), volume.name)


def _sample_texture_ct(path: str, points_lps: np.ndarray) -> np.ndarray:
    """HU of the texture CT at physical points (linear; air, -1000 HU, outside its grid)."""
    volume = _texture_ct(path)
    ijk = volume.geometry.physical_to_index(points_lps)
    return ndimage.map_coordinates(volume.array, ijk[:, ::-1].T, order=1, mode="constant", cval=-1000.0)


def _texture_for(config: PhantomConfig) -> _Texture:
    extent = tuple(float(n * s) for n, s in zip(config.grid_size, config.spacing_mm, strict=True))
    return _texture(config.seed, extent)


def _render_frame(config: PhantomConfig, frame: int,
                  chunk_voxels: int = 1 << 17) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``frame`` on the image grid: (HU int16, labels uint8), both (k, j, i)."""
    geometry = config.geometry
    shape = geometry.array_shape
    texture = _texture_for(config)
    ramp = float(np.mean(config.spacing_mm))
    hu = np.empty(shape, dtype=np.float32)
    labels = np.empty(shape, dtype=np.uint8)
    slices = max(1, chunk_voxels // (shape[1] * shape[2]))
    for k in range(0, shape[0], slices):
        stop = min(shape[0], k + slices)
        x = inverse_ground_truth_map(_slab_points(geometry, k, stop), frame, config)
        slab_hu, slab_labels = _render_reference(x, texture, ramp, with_intensities=config.texture_ct is None)
        if config.texture_ct is not None:  # the real CT's intensities instead of the synthetic ones
            slab_hu = _sample_texture_ct(config.texture_ct, x)
        hu[k:stop] = slab_hu.reshape(-1, shape[1], shape[2])
        labels[k:stop] = slab_labels.reshape(-1, shape[1], shape[2])
    if config.blur_mm > 0:
        hu = ndimage.gaussian_filter(hu, [config.blur_mm / s for s in config.spacing_mm[::-1]], truncate=3.0)
    if config.noise_hu > 0:
        rng = np.random.default_rng([config.seed, 1000 + frame])
        hu += rng.normal(0.0, config.noise_hu, shape).astype(np.float32)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), labels


def _make_frame(config: PhantomConfig, frame: int, with_displacement: bool) -> PhantomFrame:
    image, labels = _render_frame(config, frame)
    geometry = config.geometry
    gt_geometry = config.ground_truth_geometry
    displacement = ground_truth_displacement(config, frame, gt_geometry) if with_displacement else None
    landmarks = ground_truth_map(phantom_landmarks().points_lps, frame, config)
    return PhantomFrame(frame, Volume(image, geometry, f"phantom CT frame {frame}"),
                        Volume(labels, geometry, f"phantom labels frame {frame}"), displacement, gt_geometry,
                        landmarks)


def _prepare(config: PhantomConfig) -> None:
    """Build the cached lookups (texture lattice, coronary tree, landmarks) once, before worker threads."""
    _texture_for(config)
    _coronary_tree()
    _landmarks_heart()


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _check_workers(workers: int | None) -> int:
    if workers is None:
        return _default_workers()
    if not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    return workers


def phantom_frames(config: PhantomConfig, frames: Sequence[int] | None = None, with_displacement: bool = True,
                   workers: int | None = None) -> list[PhantomFrame]:
    """Render ``frames`` (default: ED and ES, ``[0, config.es_frame]``) in memory, without writing files.

    Returns one :class:`PhantomFrame` per requested frame, in the requested order. ``with_displacement``
    also samples the ground-truth displacement u_t on the ground-truth grid. Frames are rendered in
    ``workers`` threads (default: up to 4, one per CPU); the result does not depend on it.
    """
    frames = [0, config.es_frame] if frames is None else [int(f) for f in frames]
    for f in frames:
        if not 0 <= f < config.frames:
            raise InputError(f"frames: frame {f} is outside [0, {config.frames - 1}]")
    workers = _check_workers(workers)
    _prepare(config)
    if workers == 1 or len(frames) == 1:
        return [_make_frame(config, f, with_displacement) for f in frames]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda f: _make_frame(config, f, with_displacement), frames))


# --- files --------------------------------------------------------------------------------------------
def _join_frames(volumes: Sequence[Volume]) -> sitk.Image:
    return sitk.JoinSeries([v.to_sitk() for v in volumes])


def _volume_ml(labels: np.ndarray, value: int, geometry: Geometry) -> float:
    return float(np.count_nonzero(labels == value)) * geometry.voxel_volume_mm3 / 1000.0


def generate_phantom(out_dir: str | Path, config: PhantomConfig | None = None, montage: bool = False,
                     progress: Callable[[str], None] | None = None, workers: int | None = None) -> Path:
    """Write one synthetic patient into ``out_dir`` and return the path of its ``manifest.json``.

    Files (paths in the manifest are relative to it): ``ct_4d.nii.gz`` (int16 HU, frames along the 4th
    axis), ``labels_4d.nii.gz`` (uint8, :data:`LABEL_VALUES`), ``landmarks_reference.mrk.json`` (Slicer
    markups, LPS), ``landmark_trajectories.csv`` (``frame,landmark,x,y,z``, LPS mm),
    ``ground_truth/frame_NNN.h5`` (ITK displacement-field transforms, frame 0 -> frame t, resampling
    convention) and, with ``montage``, ``montage.png``. The manifest is written last.
    """
    config = config or PhantomConfig()
    _prepare(config)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"out_dir exists and is not a folder: {out_dir}")
    (out_dir / "ground_truth").mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # a folder without a manifest is incomplete
    say = progress or (lambda message: None)
    started = time.perf_counter()
    images: list[Volume | None] = [None] * config.frames
    labels: list[Volume | None] = [None] * config.frames
    montage_frames: dict[int, PhantomFrame] = {}

    # Frames are rendered in worker threads (numpy releases the GIL); every file is written here, in this
    # thread, because SimpleITK's HDF5 writer is not thread-safe.
    with ThreadPoolExecutor(max_workers=_check_workers(workers)) as pool:
        results = pool.map(lambda f: _make_frame(config, f, with_displacement=True), range(config.frames))
        for result in results:
            frame = result.frame
            write_displacement_field(out_dir / f"ground_truth/frame_{frame:03d}.h5", result.displacement_mm,
                                     result.displacement_geometry)
            result.displacement_mm = None
            images[frame], labels[frame] = result.image, result.labels
            if montage and frame in (0, config.es_frame):
                montage_frames[frame] = result
            elapsed = time.perf_counter() - started
            say(f"frame {frame} rendered ({frame + 1}/{config.frames}, {elapsed:.1f} s)")
    gt_paths = [f"ground_truth/frame_{t:03d}.h5" for t in range(config.frames)]
    write_image_atomic(_join_frames(images), out_dir / "ct_4d.nii.gz")
    write_image_atomic(_join_frames(labels), out_dir / "labels_4d.nii.gz")
    reference = phantom_landmarks()
    write_markups_json(out_dir / "landmarks_reference.mrk.json", reference, name="PhantomLandmarks",
                       descriptions=list(landmark_descriptions()))
    write_trajectories_csv(out_dir / "landmark_trajectories.csv", landmark_trajectories(config))
    geometry = config.geometry
    blood = [_volume_ml(v.array, LABEL_VALUES["blood_pool"], geometry) for v in labels]
    myocardium = [_volume_ml(v.array, LABEL_VALUES["myocardium"], geometry) for v in labels]
    manifest = {
        "image": "ct_4d.nii.gz",
        "labels": "labels_4d.nii.gz",
        "label_values": dict(LABEL_VALUES),
        "heart_mask": "labels >= 1",
        "landmarks": "landmarks_reference.mrk.json",
        "trajectories": "landmark_trajectories.csv",
        "ground_truth_transforms": gt_paths,
        "ground_truth_convention": "ITK displacement field on the reference (frame 0) grid, resampling "
                                   "convention: TransformPoint(p) = position in frame t of reference point p",
        "coordinate_system": "LPS",
        "units": "mm",
        "frames": config.frames,
        "reference_frame": 0,
        "ed_frame": 0,
        "es_frame": config.es_frame,
        "spacing": list(geometry.spacing),
        "size": list(geometry.size),
        "geometry": geometry.to_dict(),
        "ground_truth_geometry": config.ground_truth_geometry.to_dict(),
        "label_volumes_ml": {"blood_pool": [round(v, 3) for v in blood],
                             "myocardium": [round(v, 3) for v in myocardium]},
        "generator": {"name": "INRCardiacRegistrationLib.phantom.model", "version": __version__,
                      "model_version": PHANTOM_MODEL_VERSION, "parameters": config.to_dict(),
                      "seconds": round(time.perf_counter() - started, 2)},
    }
    if montage:
        write_montage(out_dir / "montage.png", montage_frames[0], montage_frames[config.es_frame])
        manifest["montage"] = "montage.png"
    path = out_dir / "manifest.json"
    write_text_atomic(path, json.dumps(manifest, indent=2) + "\n")
    say(f"wrote {path} in {time.perf_counter() - started:.1f} s")
    return path


@dataclass
class Phantom:
    """A phantom read back from its manifest (see :func:`load_phantom`)."""

    manifest_path: Path
    manifest: dict
    images: list[Volume]
    labels: list[Volume]
    landmarks: Landmarks
    trajectories: Trajectories

    @property
    def ed_frame(self) -> int:
        return int(self.manifest["ed_frame"])

    @property
    def es_frame(self) -> int:
        return int(self.manifest["es_frame"])

    @property
    def label_values(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.manifest["label_values"].items()}

    @property
    def config(self) -> PhantomConfig:
        return PhantomConfig.from_dict(self.manifest["generator"]["parameters"])

    def ground_truth_path(self, frame: int) -> Path:
        paths = self.manifest["ground_truth_transforms"]
        if not 0 <= frame < len(paths):
            raise InputError(f"frame must be in [0, {len(paths) - 1}], got {frame}")
        return self.manifest_path.parent / paths[frame]

    def ground_truth_transform(self, frame: int) -> sitk.Transform:
        """The reference -> ``frame`` map as a SimpleITK transform (TransformPoint(p) = phi_t(p), LPS mm)."""
        return read_displacement_transform(self.ground_truth_path(frame))

    def ground_truth_displacement(self, frame: int) -> tuple[np.ndarray, Geometry]:
        """``(u, geometry)``: u (k, j, i, 3) LPS mm on the ground-truth grid."""
        return read_displacement_field(self.ground_truth_path(frame))

    def run_request(self, settings: CycleConfig | None = None) -> RunRequest:
        """The run request that registers this phantom (see :func:`phantom_request`)."""
        return phantom_request(self.manifest_path, settings)


def phantom_request(manifest_path: str | Path, settings: CycleConfig | None = None) -> RunRequest:
    """The run request that registers the phantom of ``manifest_path`` (its ``manifest.json`` or folder): its 4D CT,
    4D labels (myocardium value, every heart label for sampling), reference landmarks and their true trajectories
    (for the TRE), with ``settings`` (default: the paper's)."""
    manifest_path = Path(manifest_path)
    if manifest_path.is_dir():
        manifest_path = manifest_path / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(f"phantom manifest not found: {manifest_path}")
    info = json.loads(manifest_path.read_text(encoding="utf-8"))
    root = manifest_path.parent
    values = {key: int(value) for key, value in info["label_values"].items()}
    files = InputFiles(image=root / info["image"], labels=(str(root / info["labels"]),),
                       myocardium_label=values["myocardium"], heart_label=tuple(sorted(set(values.values()))),
                       landmarks=root / info["landmarks"], landmarks_annotated=root / info["trajectories"])
    return RunRequest(files, settings if settings is not None else CycleConfig())


def load_phantom(manifest_path: str | Path) -> Phantom:
    """Read a phantom written by :func:`generate_phantom`: frames as Volumes, landmarks, trajectories."""
    manifest_path = Path(manifest_path)
    if manifest_path.is_dir():
        manifest_path = manifest_path / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(f"phantom manifest not found: {manifest_path}")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    missing = [k for k in ("image", "labels", "label_values", "landmarks", "trajectories",
                           "ground_truth_transforms", "ed_frame", "es_frame") if k not in manifest]
    if missing:
        raise InputError(f"{manifest_path} lacks the keys {missing}")
    root = manifest_path.parent
    return Phantom(manifest_path, manifest, read_4d_frames(root / manifest["image"], "image"),
                   read_4d_frames(root / manifest["labels"], "labels"),
                   read_markups_json(root / manifest["landmarks"]),
                   read_trajectories_csv(root / manifest["trajectories"]))


# --- measurements (from the ground-truth map, not from the parameters) ---------------------------------
def measure_motion(config: PhantomConfig, frame: int | None = None) -> dict[str, float]:
    """Torsion and longitudinal shortening of ``frame`` (default ES), measured by mapping reference points.

    Rings of mid-wall points at the apical level (``Z_APICAL``, 15 % of the LV length above the epicardial
    apex) and at the base plane are pushed through :func:`ground_truth_map`; each ring's rotation about the
    long axis (around its own mapped centroid; right-handed about e3 = apex -> base) is averaged.
    ``torsion_deg`` = basal minus apical rotation: positive when the apex turns counter-clockwise and the base
    clockwise seen from the apex, as in systole. ``longitudinal_shortening`` = 1 - (apex to base-ring centroid
    distance along e3 in ``frame``) / (the same at ED).
    """
    frame = config.es_frame if frame is None else int(frame)
    axes = heart_axes_lps()
    angles = np.deg2rad(np.arange(0.0, 360.0, 10.0))

    def ring(z: float) -> np.ndarray:
        radius = 0.5 * (float(_endo_radius(z)) + float(_epi_radius(z)))
        ring_heart = np.stack([radius * np.cos(angles), radius * np.sin(angles), np.full_like(angles, z)], -1)
        return from_heart_frame(ring_heart)

    def rotation(points_ref: np.ndarray, points_t: np.ndarray) -> float:
        a = (points_ref - points_ref.mean(axis=0)) @ axes[:2].T
        b = (points_t - points_t.mean(axis=0)) @ axes[:2].T
        turn = np.arctan2(b[:, 1], b[:, 0]) - np.arctan2(a[:, 1], a[:, 0])
        return float(np.rad2deg(np.angle(np.mean(np.exp(1j * turn)))))

    apical, basal = ring(Z_APICAL), ring(Z_BASE)
    rot_apex = rotation(apical, ground_truth_map(apical, frame, config))
    rot_base = rotation(basal, ground_truth_map(basal, frame, config))
    apex = from_heart_frame(np.zeros(3))
    apex_t = ground_truth_map(apex, frame, config)
    length_ed = float((basal.mean(axis=0) - apex) @ axes[2])
    length_t = float((ground_truth_map(basal, frame, config).mean(axis=0) - apex_t) @ axes[2])
    return {"frame": frame, "apex_rotation_deg": rot_apex, "base_rotation_deg": rot_base,
            "torsion_deg": rot_base - rot_apex, "longitudinal_shortening": 1.0 - length_t / length_ed}


def verify_phantom(manifest_path: str | Path) -> dict:
    """The acceptance figures of a written phantom, measured from its files.

    - ``ejection_fraction``: 1 - blood-pool volume at ES / at ED (label voxels);
    - ``myocardium_volume_max_deviation``: max over frames of |V_myo(t) / V_myo(ED) - 1|;
    - ``torsion_deg``, ``longitudinal_shortening``: :func:`measure_motion` at ES (from the map);
    - ``pushed_myocardium_dice_min``: min over frames of Dice(ED myocardium label pushed to frame t by
      :func:`push_reference_mask`, the frame-t label);
    - ``trajectories_vs_map_max_mm``: max |CSV position - phi_t(reference landmark)|;
    - ``transforms_vs_trajectories_max_mm``: max |ReadTransform(frame_t.h5).TransformPoint(reference landmark)
      - CSV position| (SimpleITK);
    plus per-frame lists ``blood_pool_ml``, ``myocardium_ml`` and ``pushed_myocardium_dice``.
    """
    from ..core.metrics import dice

    phantom = load_phantom(manifest_path)
    config = phantom.config
    voxel_ml = phantom.images[0].geometry.voxel_volume_mm3 / 1000.0

    def volumes(value: int) -> list[float]:
        return [float(np.count_nonzero(v.array == value)) * voxel_ml for v in phantom.labels]

    blood, myocardium = volumes(LABEL_VALUES["blood_pool"]), volumes(LABEL_VALUES["myocardium"])
    ed_myocardium = phantom.labels[0].array == LABEL_VALUES["myocardium"]
    dices = [dice(push_reference_mask(ed_myocardium, t, config), v.array == LABEL_VALUES["myocardium"])
             for t, v in enumerate(phantom.labels)]
    reference = phantom.landmarks.points_lps
    csv_error = transform_error = 0.0
    for t in range(config.frames):
        expected = phantom.trajectories.points_lps[t]
        csv_error = max(csv_error, float(np.abs(ground_truth_map(reference, t, config) - expected).max()))
        transform = sitk.ReadTransform(str(phantom.ground_truth_path(t)))
        moved = np.array([transform.TransformPoint(tuple(float(c) for c in p)) for p in reference])
        transform_error = max(transform_error, float(np.linalg.norm(moved - expected, axis=1).max()))
    motion = measure_motion(config)
    return {
        "ed_frame": phantom.ed_frame, "es_frame": phantom.es_frame,
        "ejection_fraction": 1.0 - blood[phantom.es_frame] / blood[0],
        "myocardium_volume_max_deviation": max(abs(m / myocardium[0] - 1.0) for m in myocardium),
        "torsion_deg": motion["torsion_deg"], "longitudinal_shortening": motion["longitudinal_shortening"],
        "pushed_myocardium_dice_min": min(dices),
        "trajectories_vs_map_max_mm": csv_error, "transforms_vs_trajectories_max_mm": transform_error,
        "blood_pool_ml": blood, "myocardium_ml": myocardium, "pushed_myocardium_dice": dices,
    }


# --- montage ------------------------------------------------------------------------------------------
def _plane(centre: np.ndarray, u: np.ndarray, v: np.ndarray, half: float, step: float) -> np.ndarray:
    s = np.arange(-half, half + 1e-9, step)
    uu, vv = np.meshgrid(s, s[::-1])
    return centre + uu[..., None] * u + vv[..., None] * v


def _sample(volume: Volume, points: np.ndarray, order: int) -> np.ndarray:
    index = volume.geometry.physical_to_index(points)
    coordinates = np.stack([index[..., 2], index[..., 1], index[..., 0]])
    return ndimage.map_coordinates(volume.array.astype(np.float32), coordinates, order=order, mode="constant",
                                   cval=np.nan)


def write_montage(path: str | Path, reference: PhantomFrame, other: PhantomFrame) -> Path:
    """Write a PNG of axial, short-axis (mid and basal), 4-chamber and 2-chamber slices of two frames (rows)
    with label contours (myocardium yellow, LV blood pool red, rest of heart cyan) and the landmarks within
    3 mm of each plane (coronary magenta, mid-wall green). The planes are fixed in space (placed on the
    reference LV), so the second row shows the motion. Views follow the radiological conventions: axial seen
    from the feet (patient left on the image right), short axis seen from the apex (RV on the left)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    axes = heart_axes_lps()
    mid = from_heart_frame(np.array([0.0, 0.0, 0.55 * Z_BASE]))
    views = [
        ("axial", mid, np.array([1.0, 0.0, 0.0]), np.array([0.0, -1.0, 0.0])),
        ("short axis, mid", mid, -axes[0], axes[1]),
        ("short axis, base", from_heart_frame(np.array([0.0, 0.0, Z_BASE - 5.0])), -axes[0], axes[1]),
        ("4-chamber", from_heart_frame(np.array([8.0, 0.0, 0.62 * Z_BASE])), -axes[0], axes[2]),
        ("2-chamber", from_heart_frame(np.array([0.0, 0.0, 0.62 * Z_BASE])), -axes[1], axes[2]),
    ]
    half, step = 70.0, 0.5
    figure, grid = plt.subplots(2, len(views), figsize=(3.6 * len(views), 8.2), dpi=100)
    colours = {LABEL_VALUES["myocardium"]: "#ffd400", LABEL_VALUES["blood_pool"]: "#ff3030",
               LABEL_VALUES["heart"]: "#30d0ff"}
    names = phantom_landmarks().labels
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="#202040")
    for row, frame in enumerate((reference, other)):
        for column, (title, centre, u, v) in enumerate(views):
            points = _plane(centre, u, v, half, step)
            image = _sample(frame.image, points, order=1)
            labels = np.nan_to_num(_sample(frame.labels, points, order=0))
            ax = grid[row, column]
            ax.imshow(np.ma.masked_invalid(image), cmap=cmap, vmin=-250, vmax=650,
                      extent=(-half, half, -half, half))
            for value, colour in colours.items():
                mask = (labels == value).astype(np.float32)
                if mask.any():
                    ax.contour(np.linspace(-half, half, mask.shape[1]),
                               np.linspace(half, -half, mask.shape[0]), mask, levels=[0.5],
                               colors=[colour], linewidths=0.8)
            close = np.flatnonzero(np.abs((frame.landmarks_lps - centre) @ np.cross(u, v)) < 3.0)
            if close.size:
                in_plane = frame.landmarks_lps[close] - centre
                ax.scatter(in_plane @ u, in_plane @ v, s=18, zorder=3, edgecolors="black", linewidths=0.4,
                           c=["#ff40ff" if names[i][0].isdigit() else "#40ff40" for i in close])
            name = "ED, frame 0" if frame.frame == 0 else f"frame {frame.frame}"
            ax.set_title(f"{name}: {title}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    figure.suptitle("INR cardiac phantom (window 900/200 HU): labels yellow = myocardium, red = LV blood "
                    "pool, cyan = rest of heart; landmarks magenta = coronary, green = mid-wall", fontsize=10)
    figure.tight_layout(h_pad=1.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
