"""The background worker runner (the part of the Slicer module that needs no Qt), with the real worker in real
processes: progress events, cancel of the whole process tree, the log tail of a failed worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from helpers import phantom_request
from INRCardiacRegistrationLib.cycle.request import worker_command
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder
from INRCardiacRegistrationLib.cycle.worker_process import (
    ProgressReader,
    WorkerProcess,
    process_group_options,
    stop_windows_tree,
)

# A launcher like PythonSlicer: the real Python runs as its child, so killing only the launcher is not enough.
LAUNCHER = [sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"]


def worker_argv(phantom, out, launcher: bool = False, **changes) -> list[str]:
    argv = worker_command(sys.executable, out, phantom_request(phantom, **changes))
    return LAUNCHER + argv if launcher else argv


def test_progress_reader_returns_each_event_once(tmp_path):
    path = tmp_path / "progress.jsonl"
    reader = ProgressReader(path)
    assert reader.read_new() == []
    path.write_text('{"event": "started"}\n{"event": "iter')
    assert [e["event"] for e in reader.read_new()] == ["started"]
    with open(path, "a") as stream:
        stream.write('ation", "frame": 1}\n')
    assert reader.read_new() == [{"event": "iteration", "frame": 1}]
    assert reader.read_new() == []


@pytest.mark.slow
def test_worker_reports_progress_and_finishes(tiny_phantom, tmp_path):
    worker = WorkerProcess(worker_argv(tiny_phantom, tmp_path / "run"), tmp_path / "run").start()
    seen = []
    while worker.running:
        seen += worker.poll()
        time.sleep(0.1)
    worker.wait()
    seen += worker.poll()
    kinds = [e["event"] for e in seen]
    assert worker.outcome() == "finished", worker.log_tail()
    assert kinds[0] == "started" and kinds[-1] == "finished" and kinds.count("frame_finished") == 3
    iterations = [e for e in seen if e["event"] == "iteration"]
    assert iterations and all({"frame", "iteration", "iterations", "loss", "eta_s"} <= set(e) for e in iterations)
    assert worker.events == seen


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")
def test_cancel_ends_the_whole_tree_and_keeps_finished_frames(tiny_phantom, tmp_path):
    """Cancel after the first finished frame: the worker ends by itself (exit 130, no signal needed) with a
    'cancelled' event and run.json, no process of the tree is left, and the run folder holds complete frames only.
    No tight deadline (the machine may be loaded): the worker is given 60 s before cancel() would signal it, which
    would fail the test; the times under load are measured by benchmarks/cancel_under_load.py."""
    out = tmp_path / "run"
    # later frames long enough (300 iterations, no plateau) that the cancel lands before the run could end
    argv = worker_argv(tiny_phantom, out, launcher=True, warm_start_iterations=300, plateau_window=0)
    worker = WorkerProcess(argv, out).start()
    deadline = time.monotonic() + 300
    while not any(e["event"] == "frame_finished" for e in worker.events):
        assert worker.running and time.monotonic() < deadline, worker.log_tail()
        worker.poll()
        time.sleep(0.05)
    started = time.monotonic()
    code = worker.cancel(grace_s=60.0)
    print(f"cancel took {time.monotonic() - started:.2f} s, exit code {code}")
    assert code == 130 and not worker.forced_stop, worker.log_tail()
    with pytest.raises(ProcessLookupError):
        os.killpg(worker.pid, 0)  # no process of the tree is left
    assert worker.outcome() == "cancelled"
    run = RunFolder(out)
    assert worker.events[-1]["event"] == "cancelled" and run.read_run_info()["status"] == "cancelled"
    assert not run.cancel_path.exists() and not (out / "report.png").exists()  # a cancelled run: summary only
    finished = sorted(run.finished_records(4))
    assert finished[:2] == [0, 1] and finished != [0, 1, 2, 3]
    assert sorted(p.name for p in (out / "transforms").iterdir()) == [f"frame_{t:03d}.h5" for t in finished]
    assert not list(out.rglob(".tmp-*"))


@pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")
@pytest.mark.parametrize("status", ["running", "finished", "failed"])
def test_a_worker_stopped_by_signal_is_cancelled_unless_it_had_ended(tmp_path, status):
    """A worker that does not end by itself after the cancel request (it ignores the cancel file and SIGTERM, as a
    worker still starting or busy on a loaded machine may) is killed; its outcome is what its run folder says:
    cancelled (the folder is marked so, with a 'cancelled' event) unless its run had recorded its end. Stand-in
    worker: a Python process that ignores SIGTERM, over a run folder whose run.json says ``status``."""
    out = tmp_path / "run"
    run = RunFolder(out)
    run.write_run_info({"status": status, "frames": 4, "reference_frame": 0})
    stubborn = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(120)"]
    worker = WorkerProcess(stubborn, out).start()
    deadline = time.monotonic() + 60
    while "ready" not in "".join(worker.log_tail()):
        assert time.monotonic() < deadline and worker.running
        time.sleep(0.05)
    code = worker.cancel(grace_s=0.2, terminate_s=0.2)
    assert code == -9 and worker.forced_stop
    assert worker.outcome() == ("cancelled" if status == "running" else status)
    info = run.read_run_info()
    assert info["status"] == ("cancelled" if status == "running" else status)
    assert not run.cancel_path.exists()
    if status == "running":
        assert info["stopped_by_signal"] is True and worker.events[-1]["event"] == "cancelled"
        assert run.read_events()[-1]["event"] == "cancelled"


@pytest.mark.slow
def test_a_failing_worker_surfaces_its_last_log_lines(tiny_phantom, tmp_path):
    out = tmp_path / "run"
    argv = worker_argv(tiny_phantom, out, launcher=True) + ["--device", "cuda:7"]
    worker = WorkerProcess(argv, out).start()
    worker.wait(timeout=120)
    assert worker.outcome() == "bad input"
    tail = worker.log_tail()
    assert tail[-1].startswith("inr-cardiac register: error: device 'cuda:7' was requested"), tail


def test_windows_worker_has_no_console_window_and_a_group_of_its_own():
    """Windows cannot run here: the flags are checked against their winbase.h values (CREATE_NEW_PROCESS_GROUP
    0x200, CREATE_NO_WINDOW 0x08000000), and equal subprocess's own constants where Python defines them."""
    options = process_group_options("win32")
    assert options == {"creationflags": 0x200 | 0x08000000}
    for name, value in (("CREATE_NEW_PROCESS_GROUP", 0x200), ("CREATE_NO_WINDOW", 0x08000000)):
        assert getattr(subprocess, name, value) == value
    assert process_group_options("linux") == {"start_new_session": True}


class _ConsolelessProcess:
    """A stand-in for a Windows Popen whose console control event fails, as from the Slicer GUI (no console)."""

    pid = 4321

    def send_signal(self, sig):
        raise OSError("[WinError 6] The handle is invalid")


def test_windows_cancel_ends_the_tree_when_no_console_event_can_be_sent(monkeypatch):
    """Mocks Windows (``taskkill`` and a console-less process): a failed CTRL_BREAK falls back to ``taskkill /T /F``
    on the whole tree, and a forced stop goes there at once."""
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda argv, **kwargs: calls.append(argv))
    stop_windows_tree(_ConsolelessProcess(), force=False)
    stop_windows_tree(_ConsolelessProcess(), force=True)
    assert calls == [["taskkill", "/PID", "4321", "/T", "/F"]] * 2
