"""torch's CPU threads when work is shared between Python threads.

With OpenMP (torch's CPU backend) the thread count is per calling thread: ``torch.set_num_threads`` in one Python
thread leaves the others' unchanged. A small SIREN trains about as fast on one thread as on two, while evaluating a
network on a whole grid or inverting a field scales well, so splitting the cores between concurrent Python threads
(each with its share) uses a CPU better than one thread using them all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def set_torch_threads(count: int) -> None:
    """torch's CPU threads for the calling thread's work from now on (at least 1).

    torch sets up a thread's OpenMP count lazily, at its first parallel operation, from the count that any thread set
    last; a count set before that is lost. So the thread's state is set up first (``get_num_threads`` does it), and
    the count then stays this thread's, whatever other threads set: results depend on it in the last bits."""
    torch.get_num_threads()
    torch.set_num_threads(max(1, int(count)))


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's CPU threads for the calling thread's work while in the block (at least 1); restored after."""
    before = torch.get_num_threads()
    set_torch_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
