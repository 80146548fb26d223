"""The cohort summary: every patient's per-frame metrics in one table, per-patient means, and a Fig. 4-style plot.

Files written into the cohort folder (atomically):

``cohort_metrics.csv``
    one row per patient and finished frame: ``patient, status, frames, reference_frame, is_reference,
    phase_pct`` and the run's :data:`..core.vocabulary.METRIC_COLUMNS` (unfinished patients' frames too: filter on
    ``status``). ``phase_pct`` = 100 * frame / frames, the frame's position in
    the cycle (the paper's "scan percentage" when the frames are evenly spaced over the R-R interval).
``cohort_summary.csv``
    one row per manifest patient: ``status`` (finished, failed, cancelled, not run), frames finished, the means
    over its non-reference frames of Dice, HD95 (mm), TRE (mm), the largest folding %, the summed training
    seconds, the cardiac function where the run measured it (``ef_pct``, ``peak_gls_pct`` from its
    ``function.json``), and ``reason`` for a failure. The cohort means printed, and the plot, use finished
    patients only.
``cohort_report.png``
    Dice (and HD95, and TRE where annotated) against ``phase_pct`` of the frame registered to (the reference
    frame itself left out): mean over patients with one standard deviation shaded and each patient as a thin
    line, like Fig. 4 of Lowes et al.

Metric titles, units and formats are those of :data:`..core.vocabulary.METRICS`.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.atomic_file import atomic_path, write_text_atomic
from ..core.vocabulary import METRIC_COLUMNS, TRACKING_METRICS, InputError, RunState, metric, phase_pct
from ..cycle.run_folder import RunFolder, csv_text

METRICS_FILE = "cohort_metrics.csv"
SUMMARY_FILE = "cohort_summary.csv"
REPORT_FILE = "cohort_report.png"
METRIC_ROW_COLUMNS = ("patient", "status", "frames", "reference_frame", "is_reference", "phase_pct", *METRIC_COLUMNS)
_MEANS = tuple((f"{column}_mean", column) for column in TRACKING_METRICS)  # (summary column, metrics column)
FUNCTION_COLUMNS = ("ef_pct", "peak_gls_pct")  # from the run's function.json
SUMMARY_COLUMNS = ("patient", "status", "frames", "frames_finished", *(name for name, _ in _MEANS),
                   "negative_jacobian_pct_max", "seconds_total", *FUNCTION_COLUMNS, "reason")


@dataclass
class PatientMetrics:
    """One patient's run as the summary sees it."""

    patient: str
    status: str
    frames: int = 0
    reference_frame: int = 0
    rows: list[dict] = field(default_factory=list)
    reason: str = ""
    function: dict = field(default_factory=dict)  # the run's function.json, where it has one

    def non_reference(self, column: str) -> np.ndarray:
        values = [row[column] for row in self.rows if row["frame"] != self.reference_frame]
        return np.asarray([v for v in values if isinstance(v, int | float) and math.isfinite(v)], dtype=float)

    def summary_row(self) -> dict:
        row = {"patient": self.patient, "status": self.status, "frames": self.frames or None,
               "frames_finished": len(self.rows), "reason": self.reason}
        for name, column in _MEANS:
            values = self.non_reference(column)
            row[name] = float(values.mean()) if values.size else None
        folding = self.non_reference("negative_jacobian_pct")
        row["negative_jacobian_pct_max"] = float(folding.max()) if folding.size else None
        seconds = self.non_reference("seconds")
        row["seconds_total"] = float(seconds.sum()) if seconds.size else None
        for name in FUNCTION_COLUMNS:
            row[name] = self.function.get(name)
        return row


def patient_metrics(patient: str, run_dir: str | Path, status: str | None = None, reason: str = "") -> PatientMetrics:
    """The metrics of the run in ``run_dir`` (``status``: the batch's verdict; default: the run's own)."""
    run = RunFolder(run_dir)
    if not run.exists():
        return PatientMetrics(patient, status or "not run", reason=reason)
    try:
        info = run.read_run_info()
    except InputError as error:  # a damaged run.json: listed, not fatal for the cohort's summary
        return PatientMetrics(patient, status or "unreadable", reason=reason or str(error))
    function = {}
    if run.function_json.is_file():
        try:
            function = json.loads(run.function_json.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # a damaged function.json: the patient is listed without it
            function = {}
    return PatientMetrics(patient, status or str(info.get("status", "unknown")), int(info.get("frames") or 0),
                          int(info.get("reference_frame") or 0), run.read_metrics(), reason or info.get("error", ""),
                          function)


def metric_rows(patients: list[PatientMetrics]) -> list[dict]:
    """The rows of ``cohort_metrics.csv``."""
    rows = []
    for patient in patients:
        for row in sorted(patient.rows, key=lambda r: r["frame"]):
            rows.append({"patient": patient.patient, "status": patient.status, "frames": patient.frames,
                         "reference_frame": patient.reference_frame,
                         "is_reference": row["frame"] == patient.reference_frame,
                         "phase_pct": phase_pct(row["frame"], patient.frames) if patient.frames else None, **row})
    return rows


def write_cohort_summary(cohort_dir: str | Path, patients: list[PatientMetrics], report: bool = True) -> dict:
    """Write ``cohort_metrics.csv``, ``cohort_summary.csv`` and (unless ``report`` is False) ``cohort_report.png``
    into ``cohort_dir``; returns the cohort means as a dict. The means and the plot take the finished patients
    only (a failed or cancelled run's frames are a biased part of its cycle); the CSVs list everyone."""
    cohort_dir = Path(cohort_dir)
    write_text_atomic(cohort_dir / METRICS_FILE, csv_text(METRIC_ROW_COLUMNS, metric_rows(patients)))
    summary = [patient.summary_row() for patient in patients]
    write_text_atomic(cohort_dir / SUMMARY_FILE, csv_text(SUMMARY_COLUMNS, summary))
    finished = [patient for patient in patients if patient.status == RunState.FINISHED]
    if report and write_cohort_report(cohort_dir / REPORT_FILE, finished) is None:
        (cohort_dir / REPORT_FILE).unlink(missing_ok=True)  # no finished patient: no plot, and no stale one
    means = {}
    for name in (*(name for name, _ in _MEANS), *FUNCTION_COLUMNS):
        values = np.asarray([row[name] for row in summary
                             if row[name] is not None and row["status"] == RunState.FINISHED], dtype=float)
        means[name] = (float(values.mean()), float(values.std()), int(values.size)) if values.size else None
    return means


def summary_text(patients: list[PatientMetrics], means: dict) -> str:
    """A few lines for the terminal: patients by status and the cohort means (mean +- SD over patients)."""
    counts: dict[str, int] = {}
    for patient in patients:
        counts[patient.status] = counts.get(patient.status, 0) + 1
    lines = ["Patients: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))]
    for name, column in _MEANS:
        if means.get(name):
            mean, sd, n = means[name]
            entry = metric(column)
            lines.append(f"{entry.title} (mean over frames, then over {n} patients): {mean:{entry.form}} +- "
                         f"{entry.text(sd)}")
    for name, title in (("ef_pct", "Ejection fraction (%)"), ("peak_gls_pct", "Peak GLS (%)")):
        if means.get(name):
            mean, sd, n = means[name]
            lines.append(f"{title} (over {n} patients): {mean:.1f} +- {sd:.1f}")
    for patient in patients:
        if patient.status != RunState.FINISHED:
            lines.append(f"  {patient.patient}: {patient.status}" + (f": {patient.reason}" if patient.reason else ""))
    return "\n".join(lines) + "\n"


def _phase_curves(patients: list[PatientMetrics], column: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Common phase axis (%) and each patient's values on it (NaN where a frame is missing, and at the reference
    frame, which is not a registration). Patients with the
    same frame count share their frames exactly; otherwise curves are interpolated linearly in phase."""
    frame_counts = sorted({p.frames for p in patients if p.frames})
    if not frame_counts:
        return np.zeros(0), []
    axis = 100.0 * np.arange(max(frame_counts)) / max(frame_counts)
    curves = []
    for patient in patients:
        if not patient.rows or not patient.frames:
            continue
        rows = [r for r in patient.rows if r["frame"] != patient.reference_frame]
        phase = phase_pct([r["frame"] for r in rows], patient.frames)
        values = np.array([r[column] for r in rows], dtype=float)
        keep = np.isfinite(values)
        if not keep.any():
            continue
        if len(frame_counts) == 1:
            curve = np.full(axis.shape, np.nan)
            curve[[r["frame"] for r, k in zip(rows, keep, strict=True) if k]] = values[keep]
        else:
            order = np.argsort(phase[keep])
            curve = np.interp(axis, phase[keep][order], values[keep][order], left=np.nan, right=np.nan)
        curves.append(curve)
    return axis, curves


def write_cohort_report(path: str | Path, patients: list[PatientMetrics]) -> Path | None:
    """Dice/HD95/TRE against the phase of the cycle: mean over patients +- 1 SD, patients as thin lines."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    panels = []
    for column in TRACKING_METRICS:
        axis, curves = _phase_curves(patients, column)
        if curves:
            panels.append((metric(column).label, axis, np.vstack(curves)))
    if not panels:
        return None
    figure = Figure(figsize=(5.0 * len(panels), 4.0), layout="constrained")
    figure.suptitle(f"Cohort: {len(patients)} finished patients; reference frame -> each frame, mean over patients, "
                    "shaded 1 SD")
    for index, (label, axis, curves) in enumerate(panels):
        ax = figure.add_subplot(1, len(panels), index + 1)
        for curve in curves:
            ax.plot(axis, curve, color="0.7", linewidth=0.8)
        with warnings.catch_warnings():  # a phase where no patient has a value is NaN, on purpose
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(curves, axis=0)
            sd = np.nanstd(curves, axis=0)
        ax.fill_between(axis, mean - sd, mean + sd, color="tab:blue", alpha=0.25, linewidth=0)
        ax.plot(axis, mean, color="tab:blue", linewidth=2, marker="o", markersize=3, label=f"mean (n={len(curves)})")
        ax.set_xlabel("phase of the cycle (% = 100 * frame / frames)")
        ax.set_ylabel(label)
        ax.set_xlim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    return path

