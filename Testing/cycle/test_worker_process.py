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


def worker_argv(phantom, out, launcher: bool = False) -> list[str]:
    argv = worker_command(sys.executable, out, phantom_request(phantom))
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
def test_cancel_ends_the_whole_tree_within_5_s_and_keeps_finished_frames(tiny_phantom, tmp_path):
    out = tmp_path / "run"
    worker = WorkerProcess(worker_argv(tiny_phantom, out, launcher=True), out).start()
    deadline = time.monotonic() + 120
    while not any(e["event"] == "frame_finished" for e in worker.events):
        assert worker.running and time.monotonic() < deadline, worker.log_tail()
        worker.poll()
        time.sleep(0.05)
    started = time.monotonic()
    code = worker.cancel()
    elapsed = time.monotonic() - started
    print(f"cancel took {elapsed:.2f} s, exit code {code}")
    assert elapsed < 5.0
    with pytest.raises(ProcessLookupError):
        os.killpg(worker.pid, 0)  # no process of the tree is left
    assert code == 130 and worker.outcome() == "cancelled"
    run = RunFolder(out)
    assert worker.events[-1]["event"] == "cancelled"
    finished = sorted(run.finished_records(4))
    assert finished[:2] == [0, 1] and finished != [0, 1, 2, 3]
    assert sorted(p.name for p in (out / "transforms").iterdir()) == [f"frame_{t:03d}.h5" for t in finished]
    assert not list(out.rglob(".tmp-*"))


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
