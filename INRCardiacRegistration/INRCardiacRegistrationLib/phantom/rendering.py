"""Rendering the phantom: the reference model (thorax, heart, texture) in HU and labels, and frame t sampled
from it through the inverse ground-truth map, with blur and noise (:func:`phantom_frames`, in memory).

Frame ``t`` is the reference-frame model evaluated at ``phi_t^{-1}(y)`` for every voxel centre ``y`` (LPS mm),
so images, labels, landmarks and the ground-truth fields agree by construction.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..core.geometry import Geometry
from ..core.vocabulary import InputError
from ..core.volume import Volume
from .anatomy import (
    AORTA,
    LA,
    MITRAL,
    PAPILLARY_THETA_DEG,
    PULMONARY,
    RA,
    RV,
    RV_WALL_MM,
    coronary_tree,
    phantom_landmarks,
)
from .config import HU, LABEL_VALUES, PhantomConfig
from .heart_frame import A_ENDO, A_EPI, C_ENDO, C_EPI, HEART_CENTRE_LPS, Z_BASE, Z_C, endo_radius, heart_components
from .motion import ground_truth_displacement, ground_truth_map, inverse_ground_truth_map


# --- the reference model (frame 0, ED) ---------------------------------------------------------------
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
    q1, q2, z = (c.astype(np.float32) for c in heart_components(points_lps))
    n = points_lps.shape[0]
    # LV (truncated prolate ellipsoids) and the other chambers
    base_cut = z - Z_BASE
    lv_cav_full = _ellipsoid_sdf(q1, q2, z, (0, 0, Z_C), (A_ENDO, A_ENDO, C_ENDO))
    lv_epi = np.maximum(_ellipsoid_sdf(q1, q2, z, (0, 0, Z_C), (A_EPI, A_EPI, C_EPI)), base_cut)
    lv_cav = np.maximum(lv_cav_full, base_cut)
    lv_inflow = np.maximum(_capsule_sdf(q1, q2, z, *MITRAL), -base_cut)
    rv_in = np.maximum(_ellipsoid_sdf(q1, q2, z, *RV), -lv_epi - 0.5)
    rv_out = np.maximum(_ellipsoid_sdf(q1, q2, z, RV[0], tuple(a + RV_WALL_MM for a in RV[1])), -lv_epi)
    la_in = _ellipsoid_sdf(q1, q2, z, *LA)
    ra_in = _ellipsoid_sdf(q1, q2, z, *RA)
    aorta_in = _capsule_sdf(q1, q2, z, *AORTA)
    pa_in = _capsule_sdf(q1, q2, z, *PULMONARY)
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
    for theta in PAPILLARY_THETA_DEG:
        c, s = np.cos(np.deg2rad(theta)), np.sin(np.deg2rad(theta))
        r1, r2 = float(endo_radius(22.0)) - 4.0, 0.72 * float(endo_radius(52.0))
        muscle = _capsule_sdf(q1, q2, z, (r1 * c, r1 * s, 20.0), (r2 * c, r2 * s, 52.0), 5.0)
        papillary = np.minimum(papillary, muscle)
    _mix(hu, HU["papillary"] + 8.0 * coarse, _soft(papillary, ramp))
    # coronary arteries in the epicardial fat (evaluated near the heart's surface only)
    near = np.flatnonzero((heart_sdf > -3.0) & (heart_sdf < 10.0))
    if near.size:
        tree, radius = coronary_tree()
        distance, index = tree.query(np.stack([q1[near], q2[near], z[near]], axis=-1),
                                     distance_upper_bound=5.0)
        inside = np.isfinite(distance)
        sdf = np.full(near.size, np.inf, dtype=np.float32)
        sdf[inside] = distance[inside] - radius[index[inside]]
        sub = hu[near]
        _mix(sub, HU["coronary"], _soft(sdf, ramp))
        hu[near] = sub
    return hu, labels


# --- frame t: the reference model sampled at phi_t^{-1}(y) ---------------------------------------------
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


def sample_texture_ct(path: str, points_lps: np.ndarray) -> np.ndarray:
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
            slab_hu = sample_texture_ct(config.texture_ct, x)
        hu[k:stop] = slab_hu.reshape(-1, shape[1], shape[2])
        labels[k:stop] = slab_labels.reshape(-1, shape[1], shape[2])
    if config.blur_mm > 0:
        hu = ndimage.gaussian_filter(hu, [config.blur_mm / s for s in config.spacing_mm[::-1]], truncate=3.0)
    if config.noise_hu > 0:
        rng = np.random.default_rng([config.seed, 1000 + frame])
        hu += rng.normal(0.0, config.noise_hu, shape).astype(np.float32)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), labels


def make_phantom_frame(config: PhantomConfig, frame: int, with_displacement: bool) -> PhantomFrame:
    """Frame ``frame`` in memory: image and labels on the image grid, landmarks in LPS mm and, with
    ``with_displacement``, u_t on the ground-truth grid (see :class:`PhantomFrame`)."""
    image, labels = _render_frame(config, frame)
    geometry = config.geometry
    gt_geometry = config.ground_truth_geometry
    displacement = ground_truth_displacement(config, frame, gt_geometry) if with_displacement else None
    landmarks = ground_truth_map(phantom_landmarks().points_lps, frame, config)
    return PhantomFrame(frame, Volume(image, geometry, f"phantom CT frame {frame}"),
                        Volume(labels, geometry, f"phantom labels frame {frame}"), displacement, gt_geometry,
                        landmarks)


def prepare_rendering(config: PhantomConfig) -> None:
    """Build the cached lookups (texture lattice, coronary tree, landmarks) once, before worker threads."""
    _texture_for(config)
    coronary_tree()
    phantom_landmarks()


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def worker_count(workers: int | None) -> int:
    """How many threads render frames: ``workers`` checked (a positive integer), or up to 4, one per CPU."""
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
    workers = worker_count(workers)
    prepare_rendering(config)
    if workers == 1 or len(frames) == 1:
        return [make_phantom_frame(config, f, with_displacement) for f in frames]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda f: make_phantom_frame(config, f, with_displacement), frames))
