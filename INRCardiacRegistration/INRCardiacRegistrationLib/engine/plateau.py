"""When a pair's optimisation has stopped paying: the loss-plateau rule (``plateau_window`` > 0).

Every ``window`` iterations the mean loss of the last window is compared with the window before: that is the last
window's gain. The pair stops when that gain is at most ``gain`` times the largest gain of any window so far (where
no window has gained at all, when the last gain is not positive). So at least two windows always run; a loss that
falls steadily (equal gains) runs to the pair's iteration count, the ceiling; a loss that levels off like
``exp(-k / T)`` stops once its window gains have shrunk to ``gain`` of its best, when what is left to gain is at
most ``gain * r / (1 - r)`` of the best window's gain (r = exp(-window / T)). The rule does not depend on the
loss's scale (image NCC, SDF NCC and the penalty differ by data set). Mini-batch noise is averaged over a window;
the rule is checked once per window (one device synchronisation per window). :func:`.pair_registration.register_pair`
applies it to warm-started pairs only: from scratch the loss levels off after its first fast fall long before the
map is done.
"""

from __future__ import annotations

from itertools import pairwise

import torch


class PlateauRule:
    """The rule for one pair: feed it the loss history at every multiple of ``window`` iterations."""

    def __init__(self, window: int, gain: float) -> None:
        if window < 1 or not 0.0 < gain <= 1.0:
            raise ValueError(f"plateau window {window} must be >= 1 and gain {gain} in (0, 1]")
        self.window = window
        self.gain = gain
        self.means: list[float] = []  # mean loss of each finished window

    def converged(self, losses: list[torch.Tensor] | list[float]) -> bool:
        """Whether to stop after ``len(losses)`` iterations (a multiple of the window; other lengths: False)."""
        if not losses or len(losses) % self.window:
            return False
        last = losses[-self.window:]
        mean = float(torch.stack(last).mean()) if isinstance(last[0], torch.Tensor) else sum(last) / len(last)
        self.means.append(mean)
        if len(self.means) < 2:
            return False
        gains = [before - after for before, after in pairwise(self.means)]
        return gains[-1] <= self.gain * max(max(gains), 0.0)
