"""What defines one synthetic patient (:class:`PhantomConfig`), the phantom's label values and its CT numbers.

The image grid is axial (identity direction) and centred at ``HEART_CENTRE_LPS`` (LPS mm).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.geometry import Geometry
from ..core.vocabulary import InputError
from .heart_frame import HEART_CENTRE_LPS, cavity_core_scale_squared

PHANTOM_MODEL_VERSION = 1
LABEL_VALUES = {"myocardium": 1, "blood_pool": 2, "heart": 3}
"""Label map values. The whole-heart mask is ``labels >= 1`` (myocardium and LV blood pool are part of the
heart; 3 marks the rest of it: RV, atria, aortic root, pulmonary trunk). Papillary muscles and trabeculae
are inside the blood pool label, as in most LV segmentation conventions."""
_MAX_VOXELS = 64_000_000  # per frame (e.g. 400 x 400 x 400)

# CT numbers (HU)
HU = {
    "air": -1000.0, "lung": -860.0, "fat": -100.0, "epicardial_fat": -85.0, "muscle": 45.0, "liver": 65.0,
    "bone_cortex": 750.0, "bone_marrow": 230.0, "myocardium": 125.0, "lv_blood": 390.0, "rv_blood": 320.0,
    "la_blood": 380.0, "ra_blood": 230.0, "aorta": 400.0, "pulmonary": 310.0, "coronary": 470.0,
    "papillary": 120.0, "thin_wall": 105.0, "esophagus": 35.0,
}


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

    ``hypokinetic_segment``: an AHA segment (1-16) with regional dysfunction: there the cavity core's cross-section
    shrinks by only ``hypokinetic_motion`` of its normal area change (1 - k^2; :func:`.motion.hypokinesis_weight`),
    which leaves about 0.2 of the normal radial wall motion at 0.25; the EF then falls below ``ejection_fraction``
    (the labels give the true one).
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
    hypokinetic_segment: int | None = None
    hypokinetic_motion: float = 0.25

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
                                      ("longitudinal_shortening", 0.0, 0.3, ""), ("hypokinetic_motion", 0.0, 1.0, ""),
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
        cavity_core_scale_squared(self.ejection_fraction, self.longitudinal_shortening)  # validates
        if self.hypokinetic_segment is not None:
            check("hypokinetic_segment", isinstance(self.hypokinetic_segment, (int, np.integer))
                  and not isinstance(self.hypokinetic_segment, bool) and 1 <= self.hypokinetic_segment <= 16,
                  self.hypokinetic_segment, "an AHA segment in 1..16")
            set_("hypokinetic_segment", int(self.hypokinetic_segment))
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
