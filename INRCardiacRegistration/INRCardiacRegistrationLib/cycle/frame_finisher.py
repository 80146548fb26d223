"""A frame's outputs written while the next frames train (no torch).

After a pair is trained, its frame still needs its map on the field grid, the propagated label, the landmarks and
its files: about as long again as a warm-started pair's training on a CPU. In the non-sequential mode the next pair
needs only the trained network (it warm-starts from a copy of its weights), so that work can run on a writer thread
while training goes on; torch, numpy and SimpleITK's heavy calls release the GIL.

:class:`FrameFinisher` takes finishing jobs from any thread (one per training chain) and runs them one at a time in
the order they came: on its writer thread (``overlap``) or at once in the submitting thread. Each job's result is
passed to ``on_written`` right after it, on the same thread, so the frames of one chain are recorded in their
order (a run folder's finished frames stay a prefix of each chain). When the run stops (cancel or error), every
frame already handed over is still written, so that no trained frame is lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

Record = TypeVar("Record")


class FrameFinisher(Generic[Record]):
    """Runs finishing jobs one at a time, in submission order, on a writer thread (``overlap``; ``thread_setup``
    runs first on it) or inline; each result goes to ``on_written`` on the thread that ran the job."""

    def __init__(self, overlap: bool, on_written: Callable[[Record], None],
                 thread_setup: Callable[[], None] | None = None) -> None:
        self.on_written = on_written
        self.pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-files", initializer=thread_setup)
                     if overlap else None)
        self.lock = threading.Lock()
        self.pending: list[Future] = []

    def _run(self, job: Callable[[], Record]) -> None:
        self.on_written(job())

    def submit(self, job: Callable[[], Record]) -> None:
        """Hand over a frame's finishing ``job``. The first failure of an earlier job is raised here (the run must
        stop), and inline the job's own."""
        self.raise_failure()
        if self.pool is None:
            with self.lock:  # one job at a time, whichever chain submits it
                self._run(job)
            return
        with self.lock:
            self.pending.append(self.pool.submit(self._run, job))

    def raise_failure(self) -> None:
        """Raise the error of the first job that failed so far, if any."""
        with self.lock:
            done = [future for future in self.pending if future.done()]
            self.pending = [future for future in self.pending if not future.done()]
        for future in done:
            future.result()

    def drain(self) -> None:
        """Wait until every job handed over is done; raise the first failure."""
        with self.lock:
            pending, self.pending = self.pending, []
        failure = None
        for future in pending:
            error = future.exception()
            failure = failure or error
        if failure is not None:
            raise failure

    def __enter__(self) -> FrameFinisher[Record]:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        try:
            if error is None:
                self.drain()
            else:  # stopping (cancel or error): the frames handed over are still written; their failures give way
                try:
                    self.drain()
                except Exception:  # noqa: BLE001 - the run's own error is the one to report
                    pass
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
