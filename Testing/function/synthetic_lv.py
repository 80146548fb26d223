"""A synthetic left ventricle for the function tests: a truncated prolate ellipsoidal shell (myocardium) around its
cavity, on an axial grid, with its long axis along any direction (LPS mm)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from INRCardiacRegistrationLib.core.geometry import Geometry


@dataclass(frozen=True)
class SyntheticLV:
    geometry: Geometry
    myocardium: np.ndarray  # bool (k, j, i)
    cavity: np.ndarray
    apex_mm: np.ndarray     # epicardial apex (LPS mm)
    long_axis: np.ndarray   # unit, apex -> base
    septum: np.ndarray      # unit, orthogonal to the axis
    base_height_mm: float   # truncation plane above the epicardial apex


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=float)
    return vector / np.linalg.norm(vector)


def synthetic_lv(spacing_mm: float = 1.5, long_axis=(-0.5, 0.5, 0.7), septum=(-1.0, -1.0, 0.0),
                 size_mm: float = 130.0, shift_mm=(0.0, 0.0, 0.0)) -> SyntheticLV:
    """Epicardium: semi-axes 32 mm (short) x 80 mm (long) about a centre 30 mm along the axis from the grid centre
    (plus ``shift_mm``); endocardium 10 mm inside; truncated 20 mm above the centre, i.e. 100 mm above the epicardial
    apex (the base). The cavity is everything inside the endocardium below the base."""
    axis = unit(long_axis)
    septum = unit(np.asarray(septum) - (np.asarray(septum) @ axis) * axis)
    n = int(round(size_mm / spacing_mm))
    origin = np.full(3, -0.5 * (n - 1) * spacing_mm)
    geometry = Geometry((n, n, n), (spacing_mm,) * 3, tuple(origin))
    points = geometry.voxel_centres_physical()
    centre = 30.0 * axis + np.asarray(shift_mm, dtype=float)  # the ellipsoids' centre (the LV spans -80..+20 mm)
    relative = points - centre
    height = relative @ axis
    radial = np.linalg.norm(relative - height[..., None] * axis, axis=-1)
    epicardium = (radial / 32.0) ** 2 + (height / 80.0) ** 2 <= 1.0
    endocardium = (radial / 22.0) ** 2 + (height / 70.0) ** 2 <= 1.0
    below_base = height <= 20.0
    apex = centre - 80.0 * axis
    return SyntheticLV(geometry, epicardium & ~endocardium & below_base, endocardium & below_base, apex, axis, septum,
                       100.0)
