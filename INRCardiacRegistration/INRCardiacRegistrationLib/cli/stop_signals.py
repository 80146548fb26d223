"""How a command-line run is asked to stop: SIGINT/SIGTERM, the end of the process that started it, or a file."""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path


def watch_for_stop(event: threading.Event, parent: int | None = None, files: list[Path] | None = None,
                   poll_s: float = 0.5, who: str = "inr-cardiac register") -> threading.Thread:
    """Set ``event`` once process ``parent`` has ended (0: this process's parent now; POSIX: a process whose
    parent ends is re-parented, so its parent pid changes) or one of ``files`` exists; a daemon thread that polls
    every ``poll_s`` seconds (and once before it returns)."""
    watched = os.getppid() if parent == 0 else parent
    files = [Path(path) for path in files or []]

    def reason() -> str | None:
        if watched is not None and os.getppid() != watched:
            return f"the parent process {watched} ended"
        found = next((path for path in files if path.exists()), None)
        return None if found is None else f"{found} exists"

    def check() -> bool:
        why = reason()
        if why is not None:
            print(f"{who}: {why}; stopping after the saved frames", file=sys.stderr)
            event.set()
        return event.is_set()

    def watch() -> None:
        while not event.wait(poll_s) and not check():
            pass

    check()  # the first time before returning, so that a stop already due is seen by the caller
    thread = threading.Thread(target=watch, name="watch-for-stop", daemon=True)
    thread.start()
    return thread


@contextmanager
def cancel_on_signals(event: threading.Event):
    """While inside, SIGINT and SIGTERM set ``event`` (the run stops cleanly) instead of killing the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):  # noqa: ARG001
        event.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
