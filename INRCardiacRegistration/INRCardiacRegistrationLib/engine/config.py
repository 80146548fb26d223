"""The one typed, self-validating configuration of a pairwise registration (defaults = the paper).

Every field carries its meaning and its valid range (:func:`field_help`, :func:`field_range`): the checks of
:meth:`RegistrationConfig.validate`, the command line's help and the Slicer parameter node's defaults and ranges
all come from here. ``to_dict``/``from_dict`` round-trip it (``run.json``); ``preset(name)`` gives the named
presets. Importable without torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..core.vocabulary import InputError

NORMALIZATIONS = ("quantile", "window")
JACOBIANS = ("analytic", "autograd")
BLOOD_POOL_JACOBIANS = ("relative", "identity")
COMPILE_CHOICES = ("auto", "on", "off")


def _field(default, meaning: str, *, minimum: float | None = None, maximum: float | None = None,
           above: bool = False, limit: float | None = None):
    """A configuration field: ``meaning`` (help text, with units), the valid range (``minimum``/``maximum``
    inclusive; ``above``: strictly greater than ``minimum``) and ``limit``, the largest value a GUI offers when the
    range has no maximum."""
    metadata = {"help": meaning, "minimum": minimum, "maximum": maximum, "above": above, "limit": limit}
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RegistrationConfig:
    """Hyper-parameters of one pairwise SIREN registration. Units: mm for distances, HU for windows."""

    iterations: int = _field(2000, "optimiser iterations of a pair trained from scratch (the first pair of a cycle)",
                             minimum=0, limit=1_000_000)
    warm_start_iterations: int = _field(1000, "optimiser iterations of a pair warm-started from the previous pair",
                                        minimum=0, limit=1_000_000)
    points: int = _field(10_000, "random points per iteration in the sampling mask", minimum=2, limit=10_000_000)
    width: int = _field(256, "SIREN units per hidden layer", minimum=1, limit=4096)
    depth: int = _field(5, "SIREN hidden (sine) layers", minimum=1, limit=64)
    omega: float = _field(30.0, "SIREN frequency factor", minimum=0.0, above=True, limit=1000.0)
    learning_rate: float = _field(1e-5, "Adam learning rate", minimum=0.0, above=True, limit=1.0)
    alpha: float = _field(0.8, "weight of the SDF term in [0, 1] (frames without a label use 0)",
                          minimum=0.0, maximum=1.0)
    regularization_weight: float = _field(0.05, "lambda of the Jacobian-determinant penalty", minimum=0.0,
                                          limit=100.0)
    tau: float = _field(10.0, "clip of the Jacobian-determinant penalty", minimum=0.0, above=True, limit=1e6)
    jacobian: str = _field("analytic", "Jacobian computation: analytic (forward mode) or autograd (the paper's way, "
                                       "slower)")
    blood_pool_jacobian: str = _field("relative", "Jacobian penalty inside the LV blood pool, where its label is "
                                                  "given: relative (det J towards the pool's mean det J, so the "
                                                  "cavity may empty, evenly and without folding) or identity (det J "
                                                  "towards 1 as everywhere else: the paper)")
    jacobian_points: int = _field(0, "points per iteration that carry the Jacobian penalty (0 = all, the paper)",
                                  minimum=0, limit=10_000_000)
    plateau_window: int = _field(0, "0: every pair runs all its iterations (the paper); > 0: every this many "
                                    "iterations a warm-started pair stops once its loss has reached a plateau "
                                    "(engine/plateau.py)",
                                 minimum=0, limit=100_000)
    plateau_gain: float = _field(0.05, "plateau rule: the pair stops when its last window's loss gain is at most this "
                                       "share of its best window's gain", minimum=0.0, maximum=1.0,
                                 above=True)
    tail_average: int = _field(0, "0 or 1: a pair's result is its last iterate (the paper); n > 1: a pair whose loss "
                                  "only jitters over its last n iterations (it fell by no more than its standard "
                                  "deviation there) returns the mean of the weights of its last n iterates (Polyak "
                                  "averaging: the iterates jitter around the optimum, and their mean lies nearer it)",
                               minimum=0, limit=100_000)
    compile: str = _field("auto", "torch.compile of the training loss: on, off, or auto (on a CUDA device only; "
                                  "engine/compiled_loss.py). Equal to eager within float rounding")
    seed: int = _field(0, "random seed (frame t of a cycle uses seed + t)", limit=2**31 - 1)
    device: str = _field("auto", "auto, cpu or cuda[:N]")
    normalization: str = _field("quantile", "intensity normalisation: quantile (per volume) or window (fixed HU)")
    quantiles: tuple[float, float] = _field((0.01, 0.99), "low/high quantiles mapped to -1/+1")
    window: tuple[float, float] = _field((-200.0, 600.0), "fixed intensity window (HU) mapped to -1/+1, used with "
                                                          "normalization window")
    sdf_clip_mm: float = _field(20.0, "SDF clip distance in mm (the SDF is clipped to +-clip and divided by it)",
                                minimum=0.0, above=True, limit=1000.0)
    mask_dilation_voxels: int = _field(2, "heart-mask dilation (voxels) for sampling", minimum=0, limit=100)
    myocardium_margin_mm: float = _field(10.0, "sampling margin (mm) around the myocardium when no heart mask is "
                                               "given", minimum=0.0, limit=200.0)
    coordinate_margin: float = _field(1.05, "margin factor of the normalised coordinate box (half the longest side "
                                            "of the mask box times this)", minimum=1.0, limit=10.0)
    progress_every: int = _field(10, "iterations between progress reports", minimum=1, limit=1_000_000)
    local_ncc_mm: float = _field(0.0, "0: global image NCC (paper); > 0: local NCC in cubes of this edge in mm "
                                      "(e.g. 20 for cine MRI)", minimum=0.0, limit=1000.0)
    local_ncc_points: int = _field(16, "points per cube of the local NCC (points // this cubes per iteration)",
                                   minimum=4, limit=10_000_000)
    extra: dict = dataclasses.field(default_factory=dict, compare=False,
                                    metadata={"help": "free-form notes carried into run.json"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first invalid field and its value (``error.option`` = the field)."""

        def need(condition: bool, name: str, rule: str) -> None:
            if not condition:
                raise InputError(f"'{name}' must be {rule}, got {getattr(self, name)!r}", option=name)

        for item in dataclasses.fields(self):
            if item.name in _RANGED:
                value = getattr(self, item.name)
                need(_in_range(value, item), item.name, _range_text(item))
        need(self.jacobian in JACOBIANS, "jacobian", f"one of {JACOBIANS}")
        need(self.blood_pool_jacobian in BLOOD_POOL_JACOBIANS, "blood_pool_jacobian", f"one of {BLOOD_POOL_JACOBIANS}")
        need(isinstance(self.device, str) and (self.device in ("auto", "cpu") or self.device.startswith("cuda")),
             "device", "'auto', 'cpu' or 'cuda[:N]'")
        need(self.compile in COMPILE_CHOICES, "compile", f"one of {COMPILE_CHOICES}")
        need(self.normalization in NORMALIZATIONS, "normalization", f"one of {NORMALIZATIONS}")
        need(len(self.quantiles) == 2 and 0.0 <= self.quantiles[0] < self.quantiles[1] <= 1.0, "quantiles",
             "two numbers 0 <= low < high <= 1")
        need(len(self.window) == 2 and self.window[0] < self.window[1], "window", "(low, high) with low < high")
        need(self.local_ncc_points <= self.points, "local_ncc_points", f"at most points ({self.points})")

    def replace(self, **changes) -> RegistrationConfig:
        """A copy with some fields changed (validated)."""
        require_fields(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["quantiles"] = list(self.quantiles)
        data["window"] = list(self.window)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RegistrationConfig:
        """The configuration stored by :meth:`to_dict`; a field missing from ``data`` (a run started before it
        existed) takes its default."""
        require_fields(data)
        values = dict(data)
        for key in ("quantiles", "window"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)


_RANGED = {item.name for item in dataclasses.fields(RegistrationConfig)
           if isinstance(item.default, int | float) and not isinstance(item.default, bool)}


def _in_range(value, item: dataclasses.Field) -> bool:
    rule = item.metadata
    if isinstance(item.default, int):
        if not isinstance(value, int) or isinstance(value, bool):
            return False
    elif not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return False
    low, high = rule["minimum"], rule["maximum"]
    if low is not None and (value <= low if rule["above"] else value < low):
        return False
    return high is None or value <= high


def _range_text(item: dataclasses.Field) -> str:
    rule = item.metadata
    low, high = rule["minimum"], rule["maximum"]
    kind = "an integer " if isinstance(item.default, int) else ""
    if low is not None and high is not None:
        text = f"in [{low:g}, {high:g}]"
    elif low is not None:
        text = f"{'>' if rule['above'] else '>='} {low:g}"
    else:
        return "an integer" if kind else "a finite number"
    return kind + text


def field_names(include_extra: bool = False) -> list[str]:
    """The configuration's field names (``extra``, the free-form notes, only when asked for)."""
    return [item.name for item in dataclasses.fields(RegistrationConfig) if include_extra or item.name != "extra"]


def require_fields(names) -> None:
    """InputError naming the registration parameters among ``names`` that do not exist (``extra`` does)."""
    unknown = sorted(set(names) - set(field_names(include_extra=True)))
    if unknown:
        raise InputError(f"unknown registration parameter(s) {unknown}; known: {', '.join(field_names())}")


def _field_of(name: str) -> dataclasses.Field:
    require_fields([name])
    return next(item for item in dataclasses.fields(RegistrationConfig) if item.name == name)


def field_help(name: str) -> str:
    """What field ``name`` means (with its unit)."""
    return _field_of(name).metadata["help"]


def field_range(name: str) -> tuple[float, float]:
    """``(lowest, highest)`` value a GUI should offer for the numeric field ``name``: the valid range, with the
    field's practical limit where the range has no maximum (a strict lower bound is returned as it is; the
    configuration still refuses it)."""
    item = _field_of(name)
    if name not in _RANGED:
        raise InputError(f"registration parameter {name!r} is not a number")
    rule = item.metadata
    low = rule["minimum"] if rule["minimum"] is not None else -rule["limit"] - 1
    high = rule["maximum"] if rule["maximum"] is not None else rule["limit"]
    return low, high


PRESETS: dict[str, dict] = {
    # The paper's configuration (Lowes et al., Sec. 4.1).
    "paper": {},
    # A CPU-friendly configuration; its accuracy is measured in docs/benchmarks.md, not assumed. Each warm-started
    # pair stops at its loss plateau (the iteration counts are ceilings) and the Jacobian penalty's mean is estimated
    # on a quarter of each iteration's points: on the phantom's cycle 138 s -> 78 s on 2 CPU cores, with the same
    # Dice and a lower dense error (docs/benchmarks.md, "Time to accuracy"). A pair whose loss only jitters over its
    # last 25 iterations returns the mean of its weights over them (docs/benchmarks.md, "Demo accuracy over seeds").
    "fast": {"iterations": 300, "warm_start_iterations": 150, "points": 4000, "width": 128, "depth": 3,
             "learning_rate": 1e-4, "plateau_window": 25, "jacobian_points": 1000, "tail_average": 25},
}
# Real images (issue 17): the fast schedule with the image NCC taken in 20 mm cubes of 16 points instead of over the
# whole mask, and a smoother network (omega 12). A global NCC is dominated by the mask's strongest edges (contrast
# blood against lung and fat, bright MRI blood against dark myocardium); taken per neighbourhood, every region's
# texture counts alike, whatever its contrast or shading (MRI coil shading, CT bolus). With the NCC local, omega 12
# (less bandwidth than the paper's 30) tracks better and folds less. Measured (docs/benchmarks.md, "Issue 17
# ablation"): the phantom carrying a real CT's texture, dense error 1.07 -> 0.25 mm and landmark TRE 0.79 ->
# 0.22 mm over its cycle (synthetic texture 0.41 -> 0.35 mm, 0.42 -> 0.32 mm); the ACDC cine MRI's ED -> ES pairs,
# mean Dice 0.857 -> 0.874 (better on 4 of the 5 patients), none folding. The same settings under two names, one
# per modality, so that each can follow its own data later.
_REAL_IMAGES = {**PRESETS["fast"], "omega": 12.0, "local_ncc_mm": 20.0}
PRESETS["ct"] = dict(_REAL_IMAGES)
PRESETS["cine-mri"] = dict(_REAL_IMAGES)

PRESET_DESCRIPTIONS: dict[str, str] = {
    "paper": "the paper's settings (GPU)",
    "fast": "a CPU-friendly network and schedule",
    "ct": "fast, for CT: omega 12, NCC in 20 mm cubes",
    "cine-mri": "fast, for cine MRI: omega 12, NCC in 20 mm cubes",
}


def preset(name: str, **overrides) -> RegistrationConfig:
    """The named preset (``"paper"``, ``"fast"``, ``"ct"`` or ``"cine-mri"``) with optional field overrides."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}", option="preset")
    require_fields(overrides)
    return RegistrationConfig(**{**PRESETS[name], **overrides})


def preset_label(name: str) -> str:
    """``"fast (300/150 iterations, 3x128; a CPU-friendly network and schedule)"``: a preset with its schedule,
    network and purpose, for menus."""
    config = preset(name)
    return (f"{name} ({config.iterations}/{config.warm_start_iterations} iterations, {config.depth}x{config.width}; "
            f"{PRESET_DESCRIPTIONS.get(name, '')})")


def overrides_of(config: RegistrationConfig, preset_name: str) -> dict:
    """The fields of ``config`` that differ from the preset ``preset_name`` (``extra`` left out)."""
    base = preset(preset_name)
    return {name: getattr(config, name) for name in field_names() if getattr(config, name) != getattr(base, name)}
