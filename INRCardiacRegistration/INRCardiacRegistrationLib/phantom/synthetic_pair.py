"""A small synthetic image pair with a known smooth deformation, for tests and benchmarks.

The fixed image is an analytic texture (Gaussian blobs) plus a bright ellipsoidal shell (the "myocardium");
the known map ``phi(x) = x + u(x)`` (fixed -> moving, LPS mm) is a sum of smooth Gaussian bumps. The moving
image is rendered exactly as ``moving(y) = fixed(phi^-1(y))``, so a perfect registration recovers phi.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.geometry import Geometry
from ..core.volume import Volume


@dataclass
class SyntheticPair:
    fixed: Volume
    moving: Volume
    fixed_label: Volume
    moving_label: Volume
    centres: np.ndarray       # (K, 3) bump centres, mm
    amplitudes: np.ndarray    # (K, 3) bump displacements, mm
    width_mm: float

    def displacement(self, points_mm: np.ndarray) -> np.ndarray:
        """The true u (N, 3) in mm at fixed-frame points (N, 3)."""
        return _bumps(np.asarray(points_mm, dtype=np.float64), self.centres, self.amplitudes, self.width_mm)

    def phi(self, points_mm: np.ndarray) -> np.ndarray:
        """The true map fixed -> moving at fixed-frame points (N, 3), LPS mm."""
        points_mm = np.asarray(points_mm, dtype=np.float64)
        return points_mm + self.displacement(points_mm)


def _bumps(points: np.ndarray, centres: np.ndarray, amplitudes: np.ndarray, width: float) -> np.ndarray:
    out = np.zeros_like(points)
    for centre, amplitude in zip(centres, amplitudes, strict=True):
        weight = np.exp(-np.sum((points - centre) ** 2, axis=-1) / (2.0 * width**2))
        out += weight[..., None] * amplitude
    return out


def _texture(points: np.ndarray, blobs: np.ndarray, shell_radii: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Analytic intensity: background blobs + a bright shell between two ellipsoids."""
    values = np.zeros(points.shape[:-1])
    for x, y, z, size, amplitude in blobs:
        values += amplitude * np.exp(-np.sum((points - (x, y, z)) ** 2, axis=-1) / (2.0 * size**2))
    return values + 1.5 * _shell(points, shell_radii, centre)


def _shell(points: np.ndarray, radii: np.ndarray, centre: np.ndarray, thickness: float = 0.3) -> np.ndarray:
    """Smooth indicator (0..1) of an ellipsoidal shell: normalised radius in [1 - thickness, 1]."""
    rho = np.sqrt(np.sum(((points - centre) / radii) ** 2, axis=-1))
    return 1.0 / (1.0 + np.exp(-(rho - (1 - thickness)) * 40)) * (1.0 / (1.0 + np.exp((rho - 1.0) * 40)))


def _invert(targets: np.ndarray, centres: np.ndarray, amplitudes: np.ndarray, width: float) -> np.ndarray:
    x = targets.copy()
    for _ in range(60):
        x = targets - _bumps(x, centres, amplitudes, width)
    return x


def make_synthetic_pair(size: int = 40, spacing_mm: float = 1.5, max_displacement_mm: float = 5.0,
                        seed: int = 0, direction: tuple[float, ...] | None = None) -> SyntheticPair:
    """A ``size``^3 pair with ``spacing_mm`` voxels and a known deformation of at most ~``max_displacement_mm``.

    ``direction`` (row-major 3x3) lets tests use an oblique grid; the origin centres the grid at 0.
    """
    rng = np.random.default_rng(seed)
    direction = direction or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    half = (size - 1) * spacing_mm / 2.0
    origin = -d @ np.full(3, half)
    geometry = Geometry((size,) * 3, (spacing_mm,) * 3, tuple(origin), tuple(direction))
    extent = half * 0.7
    blobs = np.column_stack([rng.uniform(-extent, extent, (60, 3)), rng.uniform(2.5, 6.0, 60),
                             rng.uniform(-1.0, 1.0, 60)])
    shell_radii = np.array([0.45, 0.38, 0.55]) * half
    shell_centre = rng.uniform(-2, 2, 3)
    centres = rng.uniform(-extent * 0.6, extent * 0.6, (4, 3))
    amplitudes = rng.normal(size=(4, 3))
    width = 0.35 * half
    points = geometry.voxel_centres_physical()
    peak = np.max(np.linalg.norm(_bumps(points, centres, amplitudes, width), axis=-1))
    amplitudes *= max_displacement_mm / peak
    sources = _invert(points, centres, amplitudes, width)
    fixed = Volume(_texture(points, blobs, shell_radii, shell_centre).astype(np.float32), geometry, "fixed")
    moving = Volume(_texture(sources, blobs, shell_radii, shell_centre).astype(np.float32), geometry, "moving")
    fixed_label = Volume(_shell(points, shell_radii, shell_centre) > 0.5, geometry, "fixed myocardium")
    moving_label = Volume(_shell(sources, shell_radii, shell_centre) > 0.5, geometry, "moving myocardium")
    return SyntheticPair(fixed, moving, fixed_label, moving_label, centres, amplitudes, width)
