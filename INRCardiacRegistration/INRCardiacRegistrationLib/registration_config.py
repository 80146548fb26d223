"""The one typed, self-validating configuration of a pairwise registration (defaults = the paper).

The same object is used by the Python API, the command line, ``run.json`` and (later) the Slicer parameter
node; ``to_dict``/``from_dict`` round-trip it, ``preset(name)`` gives the named presets.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

NORMALIZATIONS = ("quantile", "window")
JACOBIANS = ("analytic", "autograd")


@dataclass(frozen=True)
class RegistrationConfig:
    """Hyper-parameters of one pairwise SIREN registration. Units: mm for distances, HU for windows."""

    iterations: int = 2000            # optimiser steps of a pair trained from scratch (paper: 2000)
    warm_start_iterations: int = 1000  # steps of a pair warm-started from the previous pair (paper: 1000)
    points: int = 10_000              # random points per iteration in the sampling mask
    width: int = 256                  # SIREN hidden units per layer
    depth: int = 5                    # SIREN hidden (sine) layers
    omega: float = 30.0               # SIREN frequency factor
    learning_rate: float = 1e-5       # Adam
    alpha: float = 0.8                # weight of the SDF term; frames without an SDF use 0
    regularization_weight: float = 0.05  # lambda of the Jacobian-determinant term
    tau: float = 10.0                 # clip of the symmetric Jacobian penalty
    jacobian: str = "analytic"        # "analytic" (forward mode) or "autograd" (the paper's way; slower)
    jacobian_points: int = 0          # points per iteration carrying the Jacobian penalty; 0 = all (paper)
    seed: int = 0
    device: str = "auto"              # "auto" | "cpu" | "cuda[:N]"
    normalization: str = "quantile"   # "quantile" (per volume) or "window" (fixed HU window)
    quantiles: tuple[float, float] = (0.01, 0.99)
    window: tuple[float, float] = (-200.0, 600.0)  # HU, used when normalization == "window"
    sdf_clip_mm: float = 20.0         # SDF clipped to +-clip and divided by it
    mask_dilation_voxels: int = 2     # heart mask dilation for sampling
    myocardium_margin_mm: float = 10.0  # sampling margin around the myocardium when no heart mask exists
    coordinate_margin: float = 1.05   # normalised box = margin * half the longest side of the mask box
    progress_every: int = 10          # iterations between progress callbacks
    local_ncc_mm: float = 0.0         # 0: global NCC over all points (paper); > 0: image NCC in cubes of this edge
    local_ncc_points: int = 16        # points per cube when local_ncc_mm > 0 (points // this cubes per iteration)
    extra: dict = field(default_factory=dict, compare=False)  # free-form notes carried into run.json

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field and its value."""

        def need(condition: bool, name: str, rule: str) -> None:
            if not condition:
                raise ValueError(f"RegistrationConfig '{name}' must be {rule}, got {getattr(self, name)!r}")

        need(isinstance(self.iterations, int) and self.iterations >= 0, "iterations", "an integer >= 0")
        need(isinstance(self.warm_start_iterations, int) and self.warm_start_iterations >= 0,
             "warm_start_iterations", "an integer >= 0")
        need(isinstance(self.points, int) and self.points >= 2, "points", "an integer >= 2")
        need(isinstance(self.width, int) and self.width >= 1, "width", "an integer >= 1")
        need(isinstance(self.depth, int) and self.depth >= 1, "depth", "an integer >= 1")
        need(math.isfinite(self.omega) and self.omega > 0, "omega", "> 0")
        need(math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning_rate", "> 0")
        need(math.isfinite(self.alpha) and 0.0 <= self.alpha <= 1.0, "alpha", "in [0, 1]")
        need(math.isfinite(self.regularization_weight) and self.regularization_weight >= 0,
             "regularization_weight", ">= 0")
        need(math.isfinite(self.tau) and self.tau > 0, "tau", "> 0")
        need(self.jacobian in JACOBIANS, "jacobian", f"one of {JACOBIANS}")
        need(isinstance(self.jacobian_points, int) and self.jacobian_points >= 0, "jacobian_points",
             "an integer >= 0 (0 = all points)")
        need(isinstance(self.seed, int), "seed", "an integer")
        need(isinstance(self.device, str) and (self.device in ("auto", "cpu") or self.device.startswith("cuda")),
             "device", "'auto', 'cpu' or 'cuda[:N]'")
        need(self.normalization in NORMALIZATIONS, "normalization", f"one of {NORMALIZATIONS}")
        need(len(self.quantiles) == 2 and 0.0 <= self.quantiles[0] < self.quantiles[1] <= 1.0, "quantiles",
             "two numbers 0 <= low < high <= 1")
        need(len(self.window) == 2 and self.window[0] < self.window[1], "window", "(low, high) with low < high")
        need(math.isfinite(self.sdf_clip_mm) and self.sdf_clip_mm > 0, "sdf_clip_mm", "> 0")
        need(isinstance(self.mask_dilation_voxels, int) and self.mask_dilation_voxels >= 0,
             "mask_dilation_voxels", "an integer >= 0")
        need(math.isfinite(self.myocardium_margin_mm) and self.myocardium_margin_mm >= 0,
             "myocardium_margin_mm", ">= 0")
        need(math.isfinite(self.coordinate_margin) and self.coordinate_margin >= 1.0, "coordinate_margin",
             ">= 1")
        need(math.isfinite(self.local_ncc_mm) and self.local_ncc_mm >= 0, "local_ncc_mm", ">= 0 (0 = global NCC)")
        need(isinstance(self.local_ncc_points, int) and 4 <= self.local_ncc_points <= self.points, "local_ncc_points",
             "an integer in [4, points]")
        need(isinstance(self.progress_every, int) and self.progress_every >= 1, "progress_every",
             "an integer >= 1")

    def replace(self, **changes) -> RegistrationConfig:
        """A copy with some fields changed (validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"RegistrationConfig has no field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["quantiles"] = list(self.quantiles)
        data["window"] = list(self.window)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RegistrationConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"RegistrationConfig has no field(s) {sorted(unknown)}")
        values = dict(data)
        for key in ("quantiles", "window"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)


PRESETS: dict[str, dict] = {
    # The paper's configuration (Lowes et al., Sec. 4.1).
    "paper": {},
    # A CPU-friendly configuration; its accuracy is measured in docs/benchmarks.md, not assumed.
    "fast": {"iterations": 300, "warm_start_iterations": 150, "points": 4000, "width": 128, "depth": 3,
             "learning_rate": 1e-4},
}


def preset(name: str, **overrides) -> RegistrationConfig:
    """The named preset (``"paper"`` or ``"fast"``) with optional field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return RegistrationConfig(**{**PRESETS[name], **overrides})
