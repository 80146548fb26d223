"""The run folder: the one contract between the worker, the command line, Slicer and the tests.

Everything a whole-cycle registration produces lives in one folder (``design.md``). Every file is written
atomically (temporary file + rename); a frame counts as finished only once its record
``frames/frame_NNN.json`` exists, and that record is written last, after the frame's other files. A cancelled
or crashed run therefore keeps every finished frame and resumes from there.

Layout (``NNN`` = the 0-based frame index, zero-padded to at least three digits)::

    run.json                       format, status (running|finished|cancelled|failed), frames, reference_frame,
                                   mode, preset, order (frames in processing order), config (the pairwise
                                   RegistrationConfig), cycle (the CycleConfig's own fields), inputs (paths,
                                   label values), geometry, field_geometry, device, versions, warnings,
                                   started/ended/seconds (this session), first_started and resumed (count)
                                   after a resume, error (when failed)
    progress.jsonl                 one JSON event per line (see :meth:`RunFolder.append_event`)
    cancel                         created by anyone who wants the worker to stop (then removed on resume)
    lock                           held (``flock``) by the one worker writing the folder; names its pid and host
    worker.log                     the worker's terminal output, when a runner started it in the background
    inputs/                        the inputs a runner exported for the worker (Slicer: frames, labels, landmarks)
    transforms/frame_NNN.h5        reference -> frame t (ITK displacement field, resampling convention,
                                   LPS mm): TransformPoint(p) = where reference point p is in frame t
    labels/frame_NNN.nii.gz        the reference myocardium propagated into frame t (uint8 0/1, frame t grid)
    checkpoints/frame_NNN.pt       the pair's network (reference -> t, or t-1 -> t in sequential mode)
    checkpoints/frame_NNN.partial.pt  the pair in training (network, optimiser, iteration, generator, losses), saved
                                   every 30 s of its training and on cancel, removed once the frame is finished;
                                   a resumed run goes on from it (:mod:`..engine.training_state`)
    landmarks/frame_NNN.mrk.json   landmark positions in frame t (Slicer markups, LPS)
    frames/frame_NNN.json          the frame's record: metrics and files; marks the frame finished
    landmark_trajectories.csv      frame,landmark,x,y,z (LPS mm), finished frames only
    metrics.csv, metrics.json      one row per finished frame (:data:`..core.vocabulary.METRICS`)
    report.png, summary.txt        written at the end
    function.json, function.csv    the cardiac function (LV volumes, EF, global strain, twist), written at the end when
                                   the LV blood pool label is known (:mod:`..function.cardiac_function`)
    strain_segments.csv            radial, circumferential, longitudinal strain per AHA segment and frame
    segments/frame_NNN.nii.gz      the reference myocardium's AHA segments (1-17) carried into frame t (uint8)
    function_report.png            volume curve, strain curves, bull's-eyes of the peak strain per segment
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..core.atomic_file import write_text_atomic
from ..core.file_lock import exclusive_lock, is_locked
from ..core.vocabulary import METRIC_COLUMNS, InputError, RunState
from .request import RunRequest

RUN_FORMAT = "inr-cardiac-run/1"


def frame_stem(frame: int) -> str:
    """``frame_007``: the name stem of every per-frame file."""
    if frame < 0:
        raise InputError(f"frame index must be >= 0, got {frame}")
    return f"frame_{frame:03d}"


CARRIED_LABELS = ("cavity", "segments")
"""Reference labels a run may carry into every frame through the myocardium's inverse map, for the cardiac function:
the LV cavity and the AHA segments of the myocardium (each in a folder of its name)."""


@dataclass
class FrameRecord:
    """What a finished frame produced: its metrics (NaN where not applicable) and its files (relative)."""

    frame: int
    dice: float = math.nan
    hd95_mm: float = math.nan
    hd95_subvoxel_mm: float = math.nan
    mean_surface_mm: float = math.nan
    tre_mm: float = math.nan
    negative_jacobian_pct: float = math.nan
    final_loss: float = math.nan
    seconds: float = math.nan
    iterations: int = 0
    alpha_used: float = math.nan
    pair: str = ""
    margin_folds: int = 0  # nodes of the field's margin where the tapered field folds (cycle/field_region.py)
    files: dict[str, str] = field(default_factory=dict)
    landmark_errors_mm: list[float] = field(default_factory=list)
    carried: dict[str, str] = field(default_factory=dict)     # carried label name -> digest of the reference label
    unresolved: dict[str, str] = field(default_factory=dict)  # label -> where phi^-1 did not converge for it

    def metrics_row(self) -> dict:
        """The ``metrics.csv`` row: every column of :data:`METRIC_COLUMNS`, NaN as ``None``."""
        data = asdict(self)
        return {name: finite_or_none(data[name]) for name in METRIC_COLUMNS}

    def to_dict(self) -> dict:
        data = asdict(self)
        return {key: finite_or_none(value) for key, value in data.items()}

    @classmethod
    def from_dict(cls, data: dict) -> FrameRecord:
        known = {name for name in cls.__dataclass_fields__}
        containers = ("files", "landmark_errors_mm", "carried", "unresolved")
        values = {key: (math.nan if value is None and key not in containers else value)
                  for key, value in data.items() if key in known}
        return cls(**values)


def csv_cell(value) -> str:
    """A number or text as a metrics CSV cell: 6 significant digits, empty for None/NaN/inf, booleans as 1/0."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def csv_text(columns: Iterable[str], rows: Iterable[dict]) -> str:
    """A CSV table (header + one line per row, cells by :func:`csv_cell`; missing keys empty) as text."""
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: csv_cell(row.get(key)) for key in writer.fieldnames})
    return stream.getvalue()


def finite_or_none(value):
    """``value``, or None where it is a non-finite float (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunFolder:
    """Paths and atomic readers/writers of one run folder (see the module docstring for the layout)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # --- paths -----------------------------------------------------------------------------------------
    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def progress_path(self) -> Path:
        return self.root / "progress.jsonl"

    @property
    def cancel_path(self) -> Path:
        return self.root / "cancel"

    @property
    def lock_path(self) -> Path:
        return self.root / "lock"

    @property
    def log_path(self) -> Path:
        return self.root / "worker.log"

    @property
    def inputs_dir(self) -> Path:
        return self.root / "inputs"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def metrics_json(self) -> Path:
        return self.root / "metrics.json"

    @property
    def trajectories_csv(self) -> Path:
        return self.root / "landmark_trajectories.csv"

    @property
    def report_png(self) -> Path:
        return self.root / "report.png"

    @property
    def function_json(self) -> Path:
        return self.root / "function.json"

    @property
    def function_csv(self) -> Path:
        return self.root / "function.csv"

    @property
    def function_report_png(self) -> Path:
        return self.root / "function_report.png"

    @property
    def strain_segments_csv(self) -> Path:
        return self.root / "strain_segments.csv"

    @property
    def summary_txt(self) -> Path:
        return self.root / "summary.txt"

    def transform_path(self, frame: int) -> Path:
        return self.root / "transforms" / f"{frame_stem(frame)}.h5"

    def label_path(self, frame: int) -> Path:
        return self.root / "labels" / f"{frame_stem(frame)}.nii.gz"

    def checkpoint_path(self, frame: int) -> Path:
        return self.root / "checkpoints" / f"{frame_stem(frame)}.pt"

    def training_state_path(self, frame: int) -> Path:
        """The training state of ``frame``'s pair while it is unfinished (:class:`PairTrainingState`)."""
        return self.root / "checkpoints" / f"{frame_stem(frame)}.partial.pt"

    def segments_path(self, frame: int) -> Path:
        return self.carried_path("segments", frame)

    def carried_path(self, name: str, frame: int) -> Path:
        """A reference label carried into ``frame`` with the myocardium (``name``: one of :data:`CARRIED_LABELS`)."""
        if name not in CARRIED_LABELS:
            raise ValueError(f"unknown carried label {name!r}; one of {CARRIED_LABELS}")
        return self.root / name / f"{frame_stem(frame)}.nii.gz"

    def landmarks_path(self, frame: int) -> Path:
        return self.root / "landmarks" / f"{frame_stem(frame)}.mrk.json"

    def record_path(self, frame: int) -> Path:
        return self.root / "frames" / f"{frame_stem(frame)}.json"

    # --- run.json --------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.run_json.is_file()

    def write_run_info(self, info: dict) -> None:
        write_text_atomic(self.run_json, json.dumps({"format": RUN_FORMAT, **info}, indent=2) + "\n")

    def read_run_info(self) -> dict:
        if not self.run_json.is_file():
            raise InputError(f"{self.root} is not a run folder (no run.json)")
        try:
            info = json.loads(self.run_json.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise InputError(f"{self.run_json} is not valid JSON: {error}") from error
        if info.get("format") != RUN_FORMAT:
            raise InputError(f"{self.run_json} has format {info.get('format')!r}, expected {RUN_FORMAT!r}")
        return info

    def read_request(self) -> RunRequest:
        """The request this run was started with (``run.json``; folders of earlier versions included)."""
        return RunRequest.from_dict(self.read_run_info())

    def update_run_info(self, **changes) -> dict:
        info = self.read_run_info()
        info.update(changes)
        info.pop("format", None)
        self.write_run_info(info)
        return info

    # --- progress events -------------------------------------------------------------------------------
    def append_event(self, event: str, **fields) -> dict:
        """Append one event line ``{"event": ..., "time": unix seconds, **fields}`` to ``progress.jsonl``.

        Events: ``started`` (frames, order), ``iteration`` (frame, iteration, iterations, loss, eta_s),
        ``state_saved`` (frame, iteration: the pair in training saved its state), ``frame_resumed`` (frame,
        iteration: a pair goes on from its saved state; a ``warning`` follows when the state turns out to belong to
        another pair, which then starts over), ``frame_finished`` (frame, the metrics row, eta_s),
        ``warning`` (text), ``finished``, ``cancelled``, ``failed`` (error). Each line is written with one
        ``write`` (the file is closed after each event, so other processes see it at once); readers skip a partial
        last line.
        """
        record = {"event": event, "time": round(time.time(), 3),
                  **{key: finite_or_none(value) for key, value in fields.items()}}
        line = json.dumps(record) + "\n"
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.progress_path, "a", encoding="utf-8") as stream:
            stream.write(line)
        return record

    def read_events(self) -> list[dict]:
        """Every complete event line of ``progress.jsonl`` (a partial last line is ignored)."""
        if not self.progress_path.is_file():
            return []
        events = []
        for line in self.progress_path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events

    # --- one writer at a time --------------------------------------------------------------------------
    def lock(self, wait_s: float = 0.0, on_wait=None, give_up=None):
        """Context manager: hold the folder's lock while writing it. Another worker (a second ``register`` on
        the same folder, an orphan of a killed batch still stopping) makes it wait up to ``wait_s`` seconds and
        then raise :class:`file_lock.LockBusy`; the lock dies with its process, so a crash never leaves it."""
        return exclusive_lock(self.lock_path, wait_s=wait_s, on_wait=on_wait, give_up=give_up)

    def is_locked(self) -> bool:
        """Whether a worker is writing the folder now (holds its lock)."""
        return is_locked(self.lock_path)

    # --- cancel ----------------------------------------------------------------------------------------
    def cancel_requested(self) -> bool:
        return self.cancel_path.exists()

    def request_cancel(self) -> None:
        """Ask a running worker to stop after saving (it polls for this file every iteration)."""
        write_text_atomic(self.cancel_path, "cancel\n")

    def clear_cancel(self) -> None:
        self.cancel_path.unlink(missing_ok=True)

    # --- frames ----------------------------------------------------------------------------------------
    def write_frame_record(self, record: FrameRecord) -> None:
        """Mark ``record.frame`` finished (call after all of its files are in place)."""
        write_text_atomic(self.record_path(record.frame), json.dumps(record.to_dict(), indent=2) + "\n")

    def read_frame_record(self, frame: int) -> FrameRecord | None:
        """The record of a finished frame whose files all exist, else None."""
        path = self.record_path(frame)
        if not path.is_file():
            return None
        try:
            record = FrameRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError):
            return None
        if record.frame != frame or not all((self.root / name).is_file() for name in record.files.values()):
            return None
        return record

    def finished_records(self, frames: int) -> dict[int, FrameRecord]:
        """Records of the finished frames among ``range(frames)``."""
        records = {t: self.read_frame_record(t) for t in range(frames)}
        return {t: record for t, record in records.items() if record is not None}

    def is_finished(self) -> bool:
        """Whether the folder holds a finished run with every frame's record (and files)."""
        if not self.exists():
            return False
        try:
            info = self.read_run_info()
        except InputError:
            return False
        frames = int(info.get("frames") or 0)
        return info.get("status") == RunState.FINISHED and frames > 0 and len(self.finished_records(frames)) == frames

    def write_metrics(self, records: list[FrameRecord]) -> None:
        """``metrics.csv`` and ``metrics.json`` from the given records (ordered by frame)."""
        rows = [record.metrics_row() for record in sorted(records, key=lambda r: r.frame)]
        write_text_atomic(self.metrics_csv, csv_text(METRIC_COLUMNS, rows))
        write_text_atomic(self.metrics_json, json.dumps({"columns": list(METRIC_COLUMNS), "frames": rows},
                                                        indent=2) + "\n")

    def read_metrics(self) -> list[dict]:
        """The rows of ``metrics.csv`` as dicts: numbers as float/int, empty cells as NaN."""
        if not self.metrics_csv.is_file():
            return []
        rows = []
        with open(self.metrics_csv, encoding="utf-8", newline="") as stream:
            for row in csv.DictReader(stream):
                parsed: dict = {}
                for key, value in row.items():
                    if key in ("frame", "iterations"):
                        parsed[key] = int(value) if value else 0
                    elif key == "pair":
                        parsed[key] = value
                    else:
                        parsed[key] = float(value) if value else math.nan
                rows.append(parsed)
        return rows
