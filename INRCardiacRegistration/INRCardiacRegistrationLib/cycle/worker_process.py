"""The registration worker as a background process, without Qt: what the Slicer module's runner needs.

The worker is ``inr-cardiac register`` run by a Python interpreter (``PythonSlicer`` inside Slicer, which is a
launcher: the real Python is its child). :class:`WorkerProcess` starts it in its own process group (POSIX) or
process group with a new console group (Windows), sends its output to ``RUN_DIR/worker.log``, reads
``progress.jsonl`` incrementally (:class:`ProgressReader`), and cancels it cleanly: first the run folder's
``cancel`` file (the worker stops after the frames already saved and writes its summary), then, if it is
still alive after a grace period, the whole process tree is terminated and finally killed.

The worker's exit code says how it ended (:class:`~..core.vocabulary.ExitCode`, :meth:`RunState.from_exit_code`);
its command line comes from the run request (:func:`~.request.worker_command`).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.file_lock import LockBusy
from ..core.vocabulary import FINAL_EVENTS, RunState
from .run_folder import RunFolder
from .run_session import now_text


def worker_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: ``base`` (default ``os.environ``) with the folder holding
    ``INRCardiacRegistrationLib`` first on ``PYTHONPATH`` (inside Slicer the module folder is on the application's
    ``sys.path`` only, not on a ``PythonSlicer`` child's) and unbuffered output (the log is live)."""
    env = dict(os.environ if base is None else base)
    lib_parent = str(Path(__file__).resolve().parents[2])  # the folder holding INRCardiacRegistrationLib/
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != lib_parent]
    env["PYTHONPATH"] = os.pathsep.join([lib_parent, *rest])
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ProgressReader:
    """Reads the events appended to a ``progress.jsonl`` since the last call (a partial last line is kept for
    the next call)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self.pending = b""

    def read_new(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with open(self.path, "rb") as stream:
            stream.seek(self.offset)
            data = stream.read()
        self.offset += len(data)
        lines = (self.pending + data).split(b"\n")
        self.pending = lines.pop()
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
        return events


def format_duration(seconds: float | None) -> str:
    """``"1 h 05 min"``, ``"3 min 20 s"``, ``"45 s"``; ``"?"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


@dataclass
class RunProgress:
    """Where a run stands, from its ``progress.jsonl`` events (:meth:`update` with each event in order).

    ``fraction``: share of this session's optimiser iterations done (0..1); ``eta_s``: the worker's estimate of
    the seconds left; ``frames_done`` of ``frames`` finished (earlier sessions included); ``state``: ``starting``,
    ``running``, ``finished``, ``cancelled``, ``failed`` (or, from the exit code, ``bad input``): a
    :class:`RunState`.
    """

    state: RunState = RunState.STARTING
    fraction: float = 0.0
    eta_s: float | None = None
    frames_done: int = 0
    frames: int = 0
    frame: int | None = None
    error: str = ""
    iterations_total: int = 0
    iterations_done: dict[int, int] = field(default_factory=dict)
    iterations_of: dict[int, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # the worker's warnings, in order

    def update(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "started":
            self.state = RunState.RUNNING
            self.frames = int(event.get("frames") or 0)
            self.frames_done = len(event.get("finished") or [])
            self.iterations_total = int(event.get("iterations_total") or 0)
            self.iterations_done.clear()
        elif kind == "iteration":
            self.frame = event.get("frame")
            self.iterations_done[self.frame] = int(event.get("iteration") or 0)
            # the budget: a pair stopped at its plateau reports its last iteration as its count; the frame's
            # share of the bar stays its budget, so the bar ends full
            self.iterations_of[self.frame] = max(self.iterations_of.get(self.frame, 0),
                                                 int(event.get("iterations") or 0))
            self.eta_s = event.get("eta_s")
        elif kind == "frame_finished":
            frame = event.get("frame")
            self.iterations_done[frame] = self.iterations_of.get(frame, self.iterations_done.get(frame, 0))
            self.frames_done = int(event.get("done") or self.frames_done + 1)
            self.eta_s = event.get("eta_s")
        elif kind == "warning":
            self.warnings.append(str(event.get("text") or ""))
        elif kind in FINAL_EVENTS:
            self.state = RunState(kind)
            self.error = event.get("error") or ""
            self.eta_s = 0.0 if self.state == RunState.FINISHED else None
        if self.state == RunState.FINISHED:
            self.fraction = 1.0
        elif self.iterations_total:
            self.fraction = min(1.0, sum(self.iterations_done.values()) / self.iterations_total)

    def text(self) -> str:
        """One line for a status label or progress bar."""
        if self.state == RunState.STARTING:
            return "Starting the worker (loading the frames)..."
        done = f"{self.frames_done}/{self.frames} frames"
        if self.state == RunState.RUNNING:
            current = f"registering frame {self.frame}, " if self.frame is not None else ""
            return f"{current}{done} done, about {format_duration(self.eta_s)} left"
        return f"{self.state}: {done}" + (f" ({self.error})" if self.error else "")


# Windows process-creation flags (winbase.h), spelled out so that the POSIX code paths can be tested too
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000


def process_group_options(platform: str = sys.platform) -> dict:
    """``subprocess.Popen`` options that put the worker in a process tree of its own, which :meth:`WorkerProcess.cancel`
    stops as a whole: a new session (POSIX), or a new process group with no console window (Windows: started from
    the Slicer GUI, a console window would pop up and closing it would kill the run)."""
    if platform == "win32":
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    return {"start_new_session": True}


def stop_windows_tree(process: subprocess.Popen, force: bool) -> None:
    """Windows: ask the worker's process group to stop (CTRL_BREAK, which Python turns into KeyboardInterrupt), or
    end its whole tree with ``taskkill /T /F``: when ``force``, and when no console control event can be sent
    (a GUI process such as Slicer has no console, and a worker started with CREATE_NO_WINDOW has none either).
    PythonSlicer is a launcher that waits for the real interpreter, so the tree is whole while it runs."""
    if not force:
        try:
            process.send_signal(signal.CTRL_BREAK_EVENT)
            return
        except (OSError, ValueError, AttributeError):  # no console to send to, or not on Windows
            pass
    subprocess.run(["taskkill", "/PID", str(process.pid), "/T", "/F"], capture_output=True, check=False)


class WorkerProcess:
    """One worker process writing into ``run_dir`` (start, poll events, cancel, outcome, log tail)."""

    def __init__(self, argv: list[str], run_dir: str | Path, env: dict | None = None) -> None:
        self.argv = list(argv)
        self.run = RunFolder(run_dir)
        self.env = env
        self.process: subprocess.Popen | None = None
        self.reader = ProgressReader(self.run.progress_path)
        self.events: list[dict] = []
        self.forced_stop = False  # cancel() had to signal the tree
        self.log_path = self.run.log_path

    def start(self) -> WorkerProcess:
        if self.process is not None:
            raise RuntimeError("the worker was already started")
        self.run.root.mkdir(parents=True, exist_ok=True)
        self.reader.offset = self.run.progress_path.stat().st_size if self.run.progress_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env, **process_group_options())
        return self

    # --- state -----------------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the worker has not been started")
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def poll(self) -> list[dict]:
        """The progress events written since the last call (also appended to ``events``)."""
        new = self.reader.read_new()
        self.events.extend(new)
        return new

    def outcome(self) -> RunState:
        """How the worker stands: running (or starting, before :meth:`start`), else its exit code's state. A worker
        that :meth:`cancel` had to stop by signal (a loaded machine, or a stop while it starts or writes its
        report) ended as its run folder says: finished or failed if its run had recorded so, else cancelled."""
        code = self.returncode
        if code is None:
            return RunState.RUNNING if self.process is not None else RunState.STARTING
        if self.forced_stop:
            status = self.run.read_run_info().get("status") if self.run.exists() else None
            if status in (RunState.FINISHED.value, RunState.FAILED.value):
                return RunState(status)
            return RunState.CANCELLED
        return RunState.from_exit_code(code)

    def wait(self, timeout: float | None = None) -> int:
        code = self.process.wait(timeout)
        self.poll()
        return code

    def log_tail(self, lines: int = 20) -> list[str]:
        """The last lines the worker printed (stdout and stderr), for error messages."""
        if not self.log_path.is_file():
            return []
        text = self.log_path.read_bytes()[-64_000:].decode("utf-8", errors="replace").replace("\r", "\n")
        return [line for line in text.splitlines() if line.strip()][-lines:]

    # --- stopping --------------------------------------------------------------------------------------
    def cancel(self, grace_s: float = 3.0, terminate_s: float = 1.5) -> int | None:
        """Stop the worker, keeping its finished frames: the ``cancel`` file, then after ``grace_s`` seconds
        SIGTERM to the whole process tree, then after ``terminate_s`` more SIGKILL. Returns the exit code.

        A worker that had to be stopped by signal could not record its end: its run folder is then marked
        cancelled here (``run.json`` and a ``cancelled`` event, unless its run had finished), so that the stop is
        never taken for a failure and a resumed run continues after its finished frames."""
        if self.process is None:
            return None
        if self.running:
            self.run.request_cancel()
        for sig, delay in ((None, grace_s), (signal.SIGTERM, terminate_s), ("kill", 5.0)):
            if sig is not None:
                self.forced_stop = True
                self.signal_tree(sig)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and self.tree_alive():
                time.sleep(0.05)
            if not self.tree_alive():
                break
        self.process.wait(timeout=5.0)
        self.poll()
        if self.forced_stop:
            self._record_forced_stop()
        return self.process.returncode

    def _record_forced_stop(self) -> None:
        """The run folder of a worker stopped by signal: cancelled (unless it recorded its end), no ``cancel`` file
        left. Only while holding the folder's lock (free once the killed worker is gone): a worker killed while it
        waited for the folder must not mark the run of the worker that holds it."""
        run = self.run
        try:
            with run.lock(wait_s=0.0):
                info = run.read_run_info() if run.exists() else None
                if info is not None and info.get("status") == RunState.RUNNING.value:
                    finished = len(run.finished_records(int(info.get("frames") or 0)))
                    reason = "stopped by signal after the cancel request (the worker did not end by itself in time)"
                    self.events.append(run.append_event(RunState.CANCELLED.value, reason=reason, done=finished,
                                                        frames=info.get("frames")))
                    self.reader.offset = run.progress_path.stat().st_size  # the event is in self.events already
                    run.update_run_info(status=RunState.CANCELLED.value, ended=now_text(), stopped_by_signal=True)
                run.clear_cancel()
        except LockBusy:
            pass

    def tree_alive(self) -> bool:
        """Whether any process of the worker's tree still runs (POSIX: its process group)."""
        if self.process is None:
            return False
        if sys.platform == "win32":
            return self.process.poll() is None
        self.process.poll()  # reap the launcher if it has ended
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def signal_tree(self, sig) -> None:
        """Send ``sig`` (a signal, or ``"kill"``) to every process of the worker's tree."""
        if self.process is None:
            return
        if sys.platform == "win32":
            stop_windows_tree(self.process, force=sig == "kill")
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL if sig == "kill" else sig)
        except ProcessLookupError:
            pass
