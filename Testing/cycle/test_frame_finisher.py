"""FrameFinisher: finishing jobs from any thread run one at a time in the order they came (on a writer thread or
inline), each result is recorded right after its job, and a stop (cancel or error) still writes every frame handed
over."""

from __future__ import annotations

import threading
import time

import pytest
from INRCardiacRegistrationLib.cycle.frame_finisher import FrameFinisher


@pytest.mark.parametrize("overlap", [False, True])
def test_jobs_run_one_at_a_time_in_order_and_are_recorded_after_them(overlap):
    log, busy, overlaps = [], [], []

    def job(frame: int, delay: float):
        def run() -> int:
            busy.append(frame)
            overlaps.append(len(busy) > 1)
            time.sleep(delay)
            log.append(("written", frame))
            busy.remove(frame)
            return frame
        return run

    with FrameFinisher(overlap, lambda frame: log.append(("recorded", frame))) as finisher:
        for frame in range(1, 5):
            finisher.submit(job(frame, 0.02 * (5 - frame)))  # earlier frames take longer
    assert log == [entry for frame in range(1, 5) for entry in (("written", frame), ("recorded", frame))]
    assert not any(overlaps)


def test_two_submitting_threads_share_one_writer():
    """Two chains hand frames over at once: each chain's frames are written in its order, never two at a time."""
    order, busy, overlaps = [], [], []

    def job(frame: int):
        def run() -> int:
            busy.append(frame)
            overlaps.append(len(busy) > 1)
            time.sleep(0.005)
            busy.remove(frame)
            return frame
        return run

    for overlap in (False, True):
        order.clear()
        with FrameFinisher(overlap, order.append) as finisher:
            chains = [threading.Thread(target=lambda frames=frames: [finisher.submit(job(f)) for f in frames])
                      for frames in ([1, 2, 3, 4, 5], [10, 9, 8, 7, 6])]
            for chain in chains:
                chain.start()
            for chain in chains:
                chain.join()
        assert sorted(order) == list(range(1, 11))
        assert [f for f in order if f <= 5] == [1, 2, 3, 4, 5] and [f for f in order if f > 5] == [10, 9, 8, 7, 6]
    assert not any(overlaps)


def test_overlap_writes_on_a_writer_thread_while_the_caller_goes_on():
    started, release = threading.Event(), threading.Event()
    names, recorded = [], []

    def slow() -> int:
        names.append(threading.current_thread().name)
        started.set()
        assert release.wait(10)
        return 1

    with FrameFinisher(True, lambda r: recorded.append((r, threading.current_thread().name)),
                       thread_setup=lambda: names.append("setup")) as finisher:
        finisher.submit(slow)
        assert started.wait(10)
        assert recorded == []  # the caller is free while frame 1 is written
        release.set()
    assert recorded == [(1, names[1])]
    assert names[0] == "setup" and names[1].startswith("frame-files")


def test_a_stop_still_writes_every_frame_handed_over():
    """A cancel (any exception) in the caller while frames are being written: they are waited for and recorded,
    then the exception goes on."""
    recorded = []
    with pytest.raises(KeyboardInterrupt):
        with FrameFinisher(True, recorded.append) as finisher:
            finisher.submit(lambda: (time.sleep(0.1), 7)[1])
            finisher.submit(lambda: 8)
            raise KeyboardInterrupt
    assert recorded == [7, 8]


def test_a_failed_job_is_raised_to_a_later_submit_or_at_the_end():
    recorded = []

    def broken() -> int:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with FrameFinisher(True, recorded.append) as finisher:
            finisher.submit(broken)
            time.sleep(0.1)
            finisher.submit(lambda: 2)  # raises: the run must stop
    assert recorded == []
    with pytest.raises(OSError, match="disk full"):
        with FrameFinisher(True, recorded.append) as finisher:
            finisher.submit(broken)
    with pytest.raises(OSError, match="disk full"):
        with FrameFinisher(False, recorded.append) as finisher:
            finisher.submit(broken)


def test_a_failed_job_during_a_stop_lets_the_stop_go_on():
    recorded = []

    def broken() -> int:
        time.sleep(0.05)
        raise OSError("disk full")

    with pytest.raises(KeyboardInterrupt):
        with FrameFinisher(True, recorded.append) as finisher:
            finisher.submit(broken)
            raise KeyboardInterrupt
    assert recorded == []
