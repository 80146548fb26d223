"""The words every layer shares: the user's bad input, how a run ends (exit codes, states) and the per-frame metrics.

- :class:`InputError`: the user's input is wrong (a missing file, an empty label, an alpha outside [0, 1]). The
  command line prints its one line and exits with :attr:`ExitCode.BAD_INPUT`; a cohort never retries it. Any other
  exception, a plain ``ValueError`` from numpy included, is a defect: exit :attr:`ExitCode.FAILED` with a traceback.
- :class:`ExitCode`: what ``inr-cardiac`` (and so the background worker) returns.
- :class:`RunState`: ``run.json``'s ``status``, the last ``progress.jsonl`` event, and what a runner reports.
- :data:`CancelSignal`: how a caller asks long work to stop (:func:`is_cancelled`).
- :data:`METRICS`: the columns of ``metrics.csv`` with their titles, units and formats, for the CSV, the report,
  the cohort summary, the terminal and Slicer's table and charts.
"""

from __future__ import annotations

import enum
import math
import numbers
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class InputError(ValueError):
    """The user's input is wrong; the message names the file, option or value and says what would be right.

    ``option``: the run-request field the error is about (``"myocardium_label"``), when there is one; a front end
    may add how to set it (the command line names its option).
    """

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class ExitCode(enum.IntEnum):
    """Exit codes of ``inr-cardiac`` commands and of the registration worker."""

    FINISHED = 0
    FAILED = 1       # an error once the run had started (finished frames are kept), or a defect
    BAD_INPUT = 2    # the input or the options were rejected; nothing was written
    CANCELLED = 130  # stopped on request after the saved frames (128 + SIGINT, as shells report Ctrl-C)


class RunState(str, enum.Enum):
    """Where a run stands. The values are the strings stored in ``run.json`` and ``progress.jsonl``."""

    STARTING = "starting"    # the worker is loading its inputs; no event yet
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"
    BAD_INPUT = "bad input"  # the worker rejected its inputs (exit code 2); known from the exit code only

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        return self not in (RunState.STARTING, RunState.RUNNING)

    @classmethod
    def from_exit_code(cls, code: int) -> RunState:
        """The state a worker that exited with ``code`` ended in (any unknown code, a signal's included: failed)."""
        return {ExitCode.FINISHED: cls.FINISHED, ExitCode.BAD_INPUT: cls.BAD_INPUT,
                ExitCode.CANCELLED: cls.CANCELLED}.get(code, cls.FAILED)


CancelSignal = Callable[[], bool] | threading.Event | None
"""A stop asked for: a ``threading.Event``, a callable returning True once the work should stop, or None."""


def is_cancelled(cancel: CancelSignal) -> bool:
    """Whether ``cancel`` asks to stop now."""
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


FINAL_EVENTS = (RunState.FINISHED.value, RunState.CANCELLED.value, RunState.FAILED.value)
"""The ``progress.jsonl`` events that end a worker session."""


@dataclass(frozen=True)
class Metric:
    """One per-frame metric: its ``metrics.csv`` column, a short title, its unit ("" for none), the format of one
    value for people (``format(value, form)``), and what it measures."""

    column: str
    title: str
    unit: str
    form: str
    meaning: str
    higher_is_better: bool = False

    @property
    def label(self) -> str:
        """``"HD95 (mm)"``: title and unit, for axes and table headers."""
        return f"{self.title} ({self.unit})" if self.unit else self.title

    def text(self, value) -> str:
        """``"1.23 mm"``; ``"-"`` for a missing value (None, NaN, inf; numpy scalars included)."""
        if value is None or (isinstance(value, numbers.Real) and not math.isfinite(float(value))):
            return "-"
        if self.form.endswith("d"):
            value = int(value)
        elif not self.form.endswith("s"):
            value = float(value)
        unit = {"": "", "%": " %"}.get(self.unit, f" {self.unit}")
        return f"{value:{self.form}}{unit}"


METRICS: tuple[Metric, ...] = (
    Metric("dice", "Dice", "", ".3f", "Dice of the reference myocardium propagated to frame t against frame t's own "
           "label", higher_is_better=True),
    Metric("hd95_mm", "HD95", "mm", ".2f", "95th percentile of the symmetric surface distance between the "
           "propagated and the own myocardium of frame t (voxel contours: in steps of the spacing)"),
    Metric("hd95_subvoxel_mm", "HD95 sub-voxel", "mm", ".2f", "the same on smooth sub-voxel surfaces "
           "(core/surface_distance.py: not quantised to the spacing)"),
    Metric("mean_surface_mm", "Mean surface distance", "mm", ".2f", "area-weighted mean distance between the "
           "sub-voxel surfaces of the propagated and the own myocardium of frame t"),
    Metric("tre_mm", "TRE", "mm", ".2f", "mean distance of the tracked landmarks to their annotated positions in "
           "frame t"),
    Metric("negative_jacobian_pct", "Folding", "%", ".4f", "share of the reference sampling-mask voxels where "
           "det(grad phi) <= 0 (phi: reference -> frame t as written, grad phi by central differences one grid "
           "spacing wide)"),
    Metric("final_loss", "Final loss", "", ".4f", "loss of the pair trained for frame t at its last iteration"),
    Metric("seconds", "Time", "s", ".1f", "seconds spent on frame t (training and outputs)"),
    Metric("iterations", "Iterations", "", "d", "optimiser iterations of the pair trained for frame t"),
    Metric("alpha_used", "Alpha", "", ".2f", "SDF weight the pair used (0 when a frame has no label)"),
    Metric("pair", "Pair", "", "s", "'fixed->moving' frame indices of the pair trained for frame t"),
)
"""Every per-frame metric, in the order of the ``metrics.csv`` columns after ``frame``."""

METRIC_COLUMNS: tuple[str, ...] = ("frame", *(metric.column for metric in METRICS))
"""The columns of ``metrics.csv``: empty where a value does not apply (no label, no landmarks, the reference
frame, whose row has 0 iterations)."""

TRACKING_METRICS: tuple[str, ...] = ("dice", "hd95_mm", "tre_mm")
"""The accuracy metrics shown against the phase (report panels, cohort figure, Slicer charts, terminal lines)."""


def metric(column: str) -> Metric:
    """The catalogue entry of a ``metrics.csv`` column."""
    for entry in METRICS:
        if entry.column == column:
            return entry
    raise KeyError(f"no metric column {column!r}; columns: {', '.join(METRIC_COLUMNS)}")


def phase_pct(frame, frames: int):
    """The phase of a frame (index, or an array of them) in % of a cycle of ``frames`` frames: ``100 t / T``, the
    phase axis of every table and chart (run metrics in Slicer, cardiac function, cohort summary, report)."""
    return 100.0 * np.asarray(frame, dtype=np.float64) / max(int(frames), 1)
