"""torch's CPU thread count is per Python thread (OpenMP): what the cycle's frame writer and two chains rely on to
share the cores without changing the training thread's count."""

from __future__ import annotations

import threading

import torch
from INRCardiacRegistrationLib.engine.threads import set_torch_threads, torch_threads


def test_a_threads_count_leaves_the_others_unchanged():
    before = torch.get_num_threads()
    seen = {}

    def other() -> None:
        torch.set_num_threads(1)
        seen["other"] = torch.get_num_threads()

    with torch_threads(3):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        seen["inside"] = torch.get_num_threads()
    assert seen == {"other": 1, "inside": 3}
    assert torch.get_num_threads() == before


def test_a_new_threads_count_survives_other_threads_setting_theirs():
    """torch sets a thread's count up lazily from the count set last by any thread: set_torch_threads sets the thread
    up first, so a count set in a new thread stays even when another thread sets another count before its first
    parallel operation (with a bare torch.set_num_threads it would not)."""
    import threading

    ready, go = threading.Event(), threading.Event()
    seen = {}

    def worker() -> None:
        set_torch_threads(1)
        ready.set()
        assert go.wait(10)
        x = torch.randn(600, 600)
        _ = (x @ x).sum()
        seen["count"] = torch.get_num_threads()

    with torch_threads(2):
        thread = threading.Thread(target=worker)
        thread.start()
        assert ready.wait(10)
        torch.set_num_threads(2)
        go.set()
        thread.join()
    assert seen["count"] == 1
