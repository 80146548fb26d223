"""A run's ``summary.txt``: status, progress, settings, metric statistics and timings in a few lines.

Titles, units and formats of the metrics are those of :data:`..core.vocabulary.METRICS`. A partial run (still
going, cancelled or failed) gets a summary too: it lists the missing frames and says which values are absent.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..core.atomic_file import write_text_atomic
from ..core.vocabulary import TRACKING_METRICS, metric
from ..fileio.landmarks import Trajectories
from .report_data import RunData, float_or_nan, frame_list, int_or_none, mean_displacement, read_run_data
from .run_folder import RunFolder

SUMMARY_METRICS = ("dice", "hd95_mm", "hd95_subvoxel_mm", "mean_surface_mm", "tre_mm", "negative_jacobian_pct")
"""The metrics.csv columns summarised by their mean and worst value."""
_TITLE_DETAILS = {"negative_jacobian_pct": ", det J <= 0 in % of the mask voxels"}  # after the title, with values


def run_summary(run: RunFolder, annotated: Trajectories | None = None) -> str:
    """A short multi-line summary of a run: status, progress, settings, metrics, timings, missing frames.

    Dice, HD95, TRE and folding statistics leave out the reference frame (trivially perfect). ``annotated``
    (LPS mm) adds the no-registration landmark error.
    """
    data = read_run_data(run)
    lines = [f"Run {data.root}: status {data.info.get('status', 'unknown')}",
             f"Frames finished: {len(data.rows)} / {data.frames} (reference frame {data.reference})"
             + (f"; missing frames: {frame_list(data.missing)}" if data.missing else "; none missing"),
             f"Settings: {data.settings}"]
    for column in SUMMARY_METRICS:
        line = _statistics(data, column)
        if column == "tre_mm":
            line = _with_unregistered_error(line, data, annotated)
        elif line is None and column in TRACKING_METRICS:  # the sub-voxel surface lines only when measured
            line = f"{metric(column).title} ({_excluded(data)}): no values"
        if line:
            lines.append(line)
    lines.append(_timing_line(run, data))
    folded = {t: record.margin_folds for t, record in run.finished_records(data.frames).items() if record.margin_folds}
    if folded:
        lines.append(f"Field margin: the written field folds at margin nodes in {len(folded)} frame(s) (at most "
                     f"{max(folded.values())} nodes, frame {max(folded, key=folded.get)}), where more displacement "
                     "than the margin is wide falls to zero; inside the heart region the field is unchanged")
    lines.extend(f"Note: {note}" for note in data.notes)
    return "\n".join(lines) + "\n"


def write_summary(run: RunFolder, text: str) -> Path:
    """Write ``text`` to the run's ``summary.txt`` atomically; return its path."""
    return write_text_atomic(run.summary_txt, text if text.endswith("\n") else text + "\n")


def _excluded(data: RunData) -> str:
    return f"excluding the reference frame {data.reference}"


def _values(data: RunData, column: str) -> tuple[list[int], np.ndarray]:
    """The finished non-reference frames with a value in ``column``, and their values."""
    frames = [t for t in sorted(data.rows)
              if t != data.reference and math.isfinite(float_or_nan(data.rows[t].get(column)))]
    return frames, np.array([float_or_nan(data.rows[t][column]) for t in frames])


def _statistics(data: RunData, column: str) -> str | None:
    """``Dice (excluding ...; 5 frames): mean 0.872, min 0.780 (frame 3)``: the mean and the worst value (the
    lowest where higher is better) over the non-reference frames, or None without values."""
    entry = metric(column)
    frames, values = _values(data, column)
    if not frames:
        return None
    worst = int(np.argmin(values) if entry.higher_is_better else np.argmax(values))
    return (f"{entry.title}{_TITLE_DETAILS.get(column, '')} ({_excluded(data)}; {len(frames)} frames): "
            f"mean {entry.text(float(values.mean()))}, {'min' if entry.higher_is_better else 'max'} "
            f"{entry.text(float(values[worst]))} (frame {frames[worst]})")


def _with_unregistered_error(line: str | None, data: RunData, annotated: Trajectories | None) -> str | None:
    """The TRE line plus the annotated landmarks' mean motion over the same frames; without TRE values a line only
    when landmarks were annotated."""
    tre = metric("tre_mm")
    if line is None:
        return f"{tre.title}: no values in metrics.csv" if annotated is not None else None
    frames, _ = _values(data, "tre_mm")
    displacement = mean_displacement(annotated, data.reference, data.predicted)
    unregistered = [displacement[t] for t in frames if t in displacement]
    if unregistered:
        line += f"; without registration {tre.text(float(np.mean(unregistered)))}"
    return line


def _training_order(run: RunFolder, data: RunData) -> list[int]:
    """The order the pairs were trained in: ``order`` of run.json or of the last ``started`` event, else the
    cycle from the frame after the reference."""
    order = data.info.get("order")
    if isinstance(order, list) and order and all(int_or_none(t) is not None for t in order):
        return [int(t) for t in order]
    for event in reversed(run.read_events()):
        if event.get("event") == "started":
            order = event.get("order")
            if isinstance(order, list) and all(int_or_none(t) is not None for t in order):
                return [int(t) for t in order]
            break
    return [(data.reference + step) % data.frames for step in range(1, data.frames)]


def _timing_line(run: RunFolder, data: RunData) -> str:
    """The first pair's time (it trains longest), the later pairs' mean, the sum and the run's wall time."""
    time = metric("seconds")
    timed = {t: float_or_nan(row.get(time.column)) for t, row in data.rows.items() if t != data.reference}
    timed = {t: s for t, s in timed.items() if math.isfinite(s)}
    if not timed:
        return f"{time.title}: no finished pair"
    order = [t for t in _training_order(run, data) if t in timed]
    first = order[0] if order else min(timed)
    iterations = int_or_none(data.rows[first].get("iterations"))
    text = f"{time.title}: first pair (frame {first}" + (f", {iterations} iterations" if iterations else "")
    text += f") {time.text(timed[first])}"
    later = [s for t, s in timed.items() if t != first]
    if later:
        text += f"; later pairs mean {time.text(float(np.mean(later)))} ({len(later)} pairs)"
    total = sum(s for s in (float_or_nan(row.get(time.column)) for row in data.rows.values()) if math.isfinite(s))
    text += f"; total {time.text(total)} (sum over finished frames)"
    wall = float_or_nan(data.info.get("seconds"))
    if math.isfinite(wall):
        text += f"; run wall time {time.text(wall)}" + (" (last session)" if data.info.get("resumed") else "")
    return text
