"""One execution of a whole-cycle run (fresh or resumed) as its run folder records it: whether the folder may be
started or resumed with a request, ``run.json`` at the start and the end, and the progress events (no torch)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from ..core.geometry import Geometry
from ..core.vocabulary import CancelSignal, InputError, RunState, is_cancelled
from .request import RunRequest
from .run_folder import RunFolder

TRANSFORM_CONVENTION = ("ITK displacement field (LPS mm, resampling convention) on field_geometry: "
                        "TransformPoint(p) = where reference point p is in frame t")


def now_text() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunSession:
    """The bookkeeping of one run folder while a worker writes it.

    ``progress`` is called with every event written to ``progress.jsonl``; ``cancel`` (a ``threading.Event`` or a
    callable) and the folder's ``cancel`` file ask the run to stop.
    """

    def __init__(self, run: RunFolder, request: RunRequest, frames: int,
                 progress: Callable[[dict], None] | None = None, cancel: CancelSignal = None) -> None:
        self.run = run
        self.request = request
        self.frames = frames
        self.progress = progress
        self.cancel = cancel
        self.started = time.perf_counter()
        self.emitting = threading.Lock()

    def emit(self, event: str, **fields) -> dict:
        """Append an event to ``progress.jsonl`` and pass it to ``progress``; any thread (chains, frame writer) may
        call it, one event at a time."""
        with self.emitting:
            record = self.run.append_event(event, **fields)
            if self.progress is not None:
                self.progress(record)
        return record

    def cancel_requested(self) -> bool:
        return is_cancelled(self.cancel) or self.run.cancel_requested()

    def check(self, resume: bool, grids: dict[str, Geometry]) -> dict | None:
        """Raise InputError unless the folder may be started (new or empty) or resumed with this request; reads
        only. ``grids``: ``{"geometry": reference grid, "field_geometry": field grid}`` as they must be stored.
        Returns the previous ``run.json`` (None for a new run)."""
        run = self.run
        if run.root.exists() and not run.root.is_dir():
            raise InputError(f"output folder {run.root} exists and is not a folder")
        previous = run.read_run_info() if run.exists() else None
        if previous is None:
            if run.root.exists() and any(p not in (run.log_path, run.inputs_dir, run.lock_path)
                                         for p in run.root.iterdir()):
                raise InputError(f"output folder {run.root} is not empty and holds no run: choose a new folder")
            return None
        if not resume:
            raise InputError(f"{run.root} already holds a run (run.json): resume it, or choose another output folder")
        differences = RunRequest.from_dict(previous).differences(self.request)
        if differences:
            raise InputError(f"cannot resume {run.root}: it was started with other settings ("
                             + "; ".join(differences[:3]) + (" ..." if len(differences) > 3 else "") + ")")
        if previous.get("frames") != self.frames:
            raise InputError(f"cannot resume {run.root}: it has {previous.get('frames')} frames, the input "
                             f"{self.frames}")
        for key, grid in grids.items():
            stored = previous.get(key)
            if stored is None or not Geometry.from_dict(stored).matches(grid):
                raise InputError(f"cannot resume {run.root}: its {key} differs from the inputs' ({grid.describe()}); "
                                 "were the input files changed?")
        return previous

    def start(self, previous: dict | None, details: dict) -> None:
        """Write ``run.json`` for this session (status running): the request, ``details`` (order, grids, device,
        versions, warnings) and, after a resume, when the run first started and how often it was resumed."""
        settings = self.request.settings
        info = {"status": RunState.RUNNING.value, "frames": self.frames, "reference_frame": settings.reference_frame,
                "mode": settings.mode, "preset": settings.preset, **details, **self.request.to_dict(),
                "transform_convention": TRANSFORM_CONVENTION, "coordinate_system": "LPS", "started": now_text()}
        if previous is not None:
            info["first_started"] = previous.get("first_started", previous.get("started"))
            info["resumed"] = int(previous.get("resumed", 0)) + 1
        self.run.clear_cancel()
        self.run.write_run_info(info)

    def finish(self, state: RunState, **extra) -> None:
        """Record how this session ended in ``run.json`` (status, end time, seconds, and e.g. the error); a
        ``cancel`` file, whose request this ending answered, is removed."""
        self.run.clear_cancel()
        self.run.update_run_info(status=state.value, ended=now_text(),
                                 seconds=round(time.perf_counter() - self.started, 2), **extra)
