"""A run folder as its report reads it: settings, metrics rows and predicted landmark paths, tolerant of a partial run.

Read from the run folder (:mod:`run_folder`): ``run.json``, ``metrics.csv`` and ``landmark_trajectories.csv``;
what cannot be read becomes a note, not an error, so that a run still going, cancelled or failed gets a report
(:mod:`report_figure`) and a summary (:mod:`report_summary`) too. Also here: the landmark distances both derive
from the trajectories.

Conventions: frame ``t`` of a cycle of ``T`` equally spaced frames is at phase ``100 t / T`` % of the cycle;
points are LPS mm; distances mm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.vocabulary import phase_pct
from ..fileio.landmarks import Trajectories, read_trajectories_csv
from .run_folder import RunFolder


def int_or_none(value: object) -> int | None:
    """``value`` as an int, None when it is not one (a bool is not)."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def float_or_nan(value: object) -> float:
    """``value`` as a float, NaN when it is not a number (an empty cell, a bool)."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@dataclass
class RunData:
    """What the report needs from a run folder; ``notes`` collects what could not be read."""

    root: Path
    info: dict
    frames: int                     # T
    reference: int                  # K
    rows: dict[int, dict]           # frame -> metrics.csv row
    predicted: Trajectories | None  # landmark_trajectories.csv
    notes: list[str]

    @property
    def config(self) -> dict:
        config = self.info.get("config")
        return config if isinstance(config, dict) else {}

    @property
    def missing(self) -> list[int]:
        """The frames without a metrics row (not finished)."""
        return [t for t in range(self.frames) if t not in self.rows]

    @property
    def settings(self) -> str:
        """``non-sequential, alpha 0.8, preset fast, device cpu`` ("?" for what run.json lacks)."""
        alpha = float_or_nan(self.config.get("alpha", self.info.get("alpha")))
        alpha_text = f"{alpha:g}" if math.isfinite(alpha) else "?"
        return (f"{self.info.get('mode', '?')}, alpha {alpha_text}, preset {self.info.get('preset', '?')}, "
                f"device {self.info.get('device', '?')}")

    def phase(self, frame: int | np.ndarray) -> float | np.ndarray:
        """Phase in % of the cycle of a frame index."""
        return phase_pct(frame, self.frames)

    def series(self, column: str) -> np.ndarray:
        """(T,) values of one metrics column, NaN where the frame is not finished or the cell is empty."""
        values = np.full(self.frames, np.nan)
        for t, row in self.rows.items():
            if 0 <= t < self.frames:
                values[t] = float_or_nan(row.get(column))
        return values


def read_run_data(run: RunFolder, frames_hint: int | None = None) -> RunData:
    """The run's data; ``frames_hint`` (the caller's frame count) serves when run.json does not say."""
    info = run.read_run_info()
    notes: list[str] = []
    try:
        rows = {int(row["frame"]): row for row in run.read_metrics()}
    except (ValueError, OSError, KeyError) as error:
        rows = {}
        notes.append(f"metrics.csv unreadable ({error})")
    frames = int_or_none(info.get("frames"))
    if frames is None or frames < 1:
        frames = frames_hint or (max(rows) + 1 if rows else 1)
    reference = int_or_none(info.get("reference_frame"))
    reference = reference if reference is not None and 0 <= reference < frames else 0
    predicted = None
    if run.trajectories_csv.is_file():
        try:
            predicted = read_trajectories_csv(run.trajectories_csv)
        except (ValueError, OSError) as error:
            notes.append(f"landmark trajectories unreadable ({error})")
    return RunData(run.root, info, frames, reference, rows, predicted, notes)


def frame_list(frames: list[int]) -> str:
    """``0, 3-5, 9``: frame indices with runs collapsed."""
    parts: list[str] = []
    start = previous = None
    for t in sorted(frames):
        if previous is not None and t == previous + 1:
            previous = t
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = t
    if start is not None:
        parts.append(str(start) if start == previous else f"{start}-{previous}")
    return ", ".join(parts)


def mean_displacement(trajectories: Trajectories | None, reference: int,
                      fallback: Trajectories | None = None) -> dict[int, float]:
    """frame -> mean distance (mm) of the landmarks of ``trajectories`` from their positions in the
    reference frame, taken from ``trajectories`` or, when it lacks that frame, from ``fallback`` (e.g. the
    predicted trajectories, which start at the reference landmarks)."""
    if trajectories is None:
        return {}
    start: dict[str, np.ndarray] = {}
    for source in (trajectories, fallback):
        if source is not None and reference in source.frames:
            start = dict(zip(source.labels, source.points_lps[source.frames.index(reference)], strict=True))
            break
    columns = [n for n, label in enumerate(trajectories.labels) if label in start]
    if not columns:
        return {}
    origin = np.stack([start[trajectories.labels[n]] for n in columns])
    distances = np.linalg.norm(trajectories.points_lps[:, columns] - origin[None], axis=-1).mean(axis=1)
    return {frame: float(d) for frame, d in zip(trajectories.frames, distances, strict=True)}


def trajectory_error(predicted: Trajectories | None, annotated: Trajectories | None) -> dict[int, float]:
    """frame -> mean distance (mm) between predicted and annotated positions of the landmarks both have."""
    if predicted is None or annotated is None:
        return {}
    labels = [label for label in predicted.labels if label in annotated.labels]
    if not labels:
        return {}
    p = [predicted.labels.index(label) for label in labels]
    a = [annotated.labels.index(label) for label in labels]
    errors = {}
    for frame in predicted.frames:
        if frame in annotated.frames:
            difference = (predicted.points_lps[predicted.frames.index(frame)][p]
                          - annotated.points_lps[annotated.frames.index(frame)][a])
            errors[frame] = float(np.linalg.norm(difference, axis=-1).mean())
    return errors
