"""Constants and small helpers shared by the tests (fixtures are in ``conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from INRCardiacRegistrationLib.cycle.request import CycleConfig, RunRequest
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder
from INRCardiacRegistrationLib.engine.config import RegistrationConfig, preset

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "INRCardiacRegistration" / "INRCardiacRegistrationLib"
SHARED_DATA = REPO.parent / "shared" / "data"

# A small CPU configuration. omega = 10: the synthetic pair's mask box is only ~50 mm wide, and with the
# coordinate scale set by that box omega = 30 fits detail finer than the motion has (measured: mean error
# 0.46 of the initial error with omega 30 vs 0.23 with omega 10 after 200 iterations).
SMALL = RegistrationConfig(iterations=200, points=4000, width=128, depth=3, omega=10.0, learning_rate=1e-4,
                           device="cpu", seed=0)

# A tiny network and few iterations: seconds per frame on a CPU, still a real optimisation. TINY is the same
# settings as command-line options (what a user types; the tests of the command line use it).
TINY_SETTINGS = CycleConfig(preset("fast", width=64, depth=3, points=2000, iterations=60, warm_start_iterations=30,
                                   device="cpu", omega=20.0), preset="fast")
TINY = ["--preset", "fast", "--width", "64", "--depth", "3", "--points", "2000", "--iterations", "60",
        "--iterations-others", "30", "--device", "cpu", "--omega", "20"]


def phantom_request(phantom, **cycle) -> RunRequest:
    """The run request of a loaded phantom with the tiny settings (``cycle``: mode, reference_frame ...)."""
    return phantom.run_request(TINY_SETTINGS.with_changes(**cycle))


def register_argv(phantom, out: Path, *extra: str) -> list[str]:
    """``register`` argv of the tiny phantom's request with the tiny settings, then ``extra``."""
    return ["register", *phantom_request(phantom).to_argv(), "--out", str(out), *extra]


def oblique_direction() -> tuple[float, ...]:
    """A 3x3 direction matrix (row-major), oblique and with a flipped axis: a grid test's worst case."""
    angle = np.deg2rad(25)
    rz = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(0.4), -np.sin(0.4)], [0, np.sin(0.4), np.cos(0.4)]])
    return tuple((rz @ rx @ np.diag([1, -1, -1])).ravel())


def run_sampling_mask_and_region(run: RunFolder):
    """The sampling mask (reference grid) and the field region of a finished run, rebuilt from its request as the
    driver builds them: ``(mask, FieldRegion)``."""
    from INRCardiacRegistrationLib.cycle.driver import cycle_field_region, cycle_sampling_mask
    from INRCardiacRegistrationLib.cycle.inputs import read_cycle_inputs

    request = run.read_request()
    inputs, _ = read_cycle_inputs(request.inputs, request.settings.reference_frame)
    mask = cycle_sampling_mask(inputs, request.settings)
    return mask, cycle_field_region(inputs, mask, request.settings)
