"""One writer per run folder: the lock between processes, and register refusing a folder another worker holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import register_argv
from INRCardiacRegistrationLib.cli.main import main
from INRCardiacRegistrationLib.core.file_lock import LockBusy, exclusive_lock, is_locked, lock_holder
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder

HOLDER = """
import sys
from INRCardiacRegistrationLib.core.file_lock import exclusive_lock
with exclusive_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""

PROBE = """
import sys
from INRCardiacRegistrationLib.core.file_lock import is_locked
print("locked" if is_locked(sys.argv[1]) else "free")
"""


def hold(path) -> subprocess.Popen:
    """Another process holding the lock on ``path`` until a line is written to its stdin (or it is killed)."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def release_later(process: subprocess.Popen, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, lambda: (process.stdin.write("\n"), process.stdin.flush()))
    timer.start()
    return timer


def test_a_held_lock_is_busy_then_free_when_released(tmp_path):
    path = tmp_path / "run" / "lock"
    assert not is_locked(path) and not path.parent.exists()  # probing writes nothing
    holder = hold(path)
    try:
        assert is_locked(path)
        with pytest.raises(LockBusy, match=f"pid {holder.pid}"), exclusive_lock(path):
            pass
        with pytest.raises(LockBusy), exclusive_lock(path, wait_s=60, give_up=lambda: True):
            pass  # a cancel ends the wait at once
        told = []
        start = time.monotonic()
        release_later(holder, 0.6)
        with exclusive_lock(path, wait_s=30, poll_s=0.1, on_wait=told.append):
            waited = time.monotonic() - start
            assert lock_holder(path).startswith(f"pid {os.getpid()} ")
            assert subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True,
                                  timeout=60).stdout.strip() == "locked"  # a third process sees it held
        assert 0.5 < waited < 30 and len(told) == 1 and f"pid {holder.pid}" in told[0]
        assert not is_locked(path) and lock_holder(path) == "unknown"  # released: the file names no holder
    finally:
        holder.wait(timeout=30)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    path = tmp_path / "lock"
    holder = hold(path)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    with exclusive_lock(path):  # no wait: the operating system dropped the lock with the process
        pass


def test_register_refuses_a_folder_another_worker_writes(tiny_phantom, tmp_path, capsys):
    """Exit code 1 with the holder named, and nothing written (the folder holds only its lock file)."""
    out = tmp_path / "run"
    holder = hold(RunFolder(out).lock_path)
    try:
        assert main(register_argv(tiny_phantom, out, "--quiet")) == 1
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert f"pid {holder.pid}" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["lock"]
