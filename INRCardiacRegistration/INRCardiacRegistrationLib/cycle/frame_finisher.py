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
    runs first on it) or inline; each result goes to ``on_written`` on the thread that ran the job.

    At most ``in_flight`` jobs wait or run at once: a submitter blocks until there is room (a writer slower than
    training holds training back instead of piling frames up). Once a job has failed, the jobs after it are skipped
    (a chain's later frame must not be recorded while an earlier one is missing) and the failure is raised to the
    next submitter and at the end."""

    def __init__(self, overlap: bool, on_written: Callable[[Record], None],
                 thread_setup: Callable[[], None] | None = None, in_flight: int = 1,
                 stops: tuple[type[BaseException], ...] = ()) -> None:
        self.on_written = on_written
        self.stops = stops  # errors that are a requested stop (a cancel), not a failure
        self.inline = threading.Lock()
        self.pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-files", initializer=thread_setup)
                     if overlap else None)
        self.lock = threading.Lock()
        self.room = threading.Semaphore(max(1, in_flight))
        self.pending: list[Future] = []
        self.failure: BaseException | None = None

    def _run(self, job: Callable[[], Record]) -> None:
        try:
            if self.failure is None:
                self.on_written(job())
        except BaseException as error:
            with self.lock:
                self.failure = self.failure or error
            raise
        finally:
            self.room.release()

    def submit(self, job: Callable[[], Record]) -> None:
        """Hand over a frame's finishing ``job`` (waiting for room). The first failure of an earlier job is raised
        here (the run must stop), and inline the job's own."""
        self.raise_failure()
        self.room.acquire()
        if self.pool is None:
            with self.inline:  # one job at a time, whichever chain submits it
                self._run(job)
            return
        with self.lock:
            self.pending.append(self.pool.submit(self._run, job))

    def raise_failure(self) -> None:
        """Raise the error of the first job that failed so far, if any."""
        if self.failure is not None:
            raise self.failure

    def drain(self) -> None:
        """Wait until every job handed over is done; raise the first failure."""
        with self.lock:
            pending, self.pending = self.pending, []
        for future in pending:
            future.exception()
        self.raise_failure()

    def __enter__(self) -> FrameFinisher[Record]:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        try:
            if error is None:
                self.drain()
                return
            try:  # stopping: the frames handed over are still written
                self.drain()
            except BaseException as failure:
                if isinstance(error, self.stops):  # a cancel: the failed write is what went wrong
                    raise failure from error
                # the run failed by itself: its own error is the one raised
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
