"""The time left in a run, from what this session has measured (no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class EtaClock:
    """Training speed and per-frame overhead measured in this session.

    ``iterations_done``/``training_seconds``: optimiser iterations and the seconds they took, over this session's
    frames so far (the current one included); ``overhead_seconds``: per finished frame, the seconds spent outside
    training (writing the outputs, the metrics).
    """

    iterations_done: int = 0
    training_seconds: float = 0.0
    overhead_seconds: list[float] = field(default_factory=list)
    warm_planned: int = 0  # iteration budgets of the finished warm-started pairs
    warm_used: int = 0     # iterations they used (fewer where a pair stopped at its loss plateau)

    def warm_share(self) -> float:
        """The share of their budget that warm-started pairs used so far (1 before the first one finished)."""
        return self.warm_used / self.warm_planned if self.warm_planned else 1.0

    def seconds_left(self, iterations_left: int, frames_left: int) -> float:
        """Seconds until the end: ``iterations_left`` at this session's speed plus the mean overhead for each of the
        ``frames_left`` unfinished frames (the current one included); NaN before the first measured iteration."""
        if self.iterations_done == 0:
            return math.nan
        per_iteration = self.training_seconds / self.iterations_done
        overhead = float(np.mean(self.overhead_seconds)) if self.overhead_seconds else 0.0
        return per_iteration * iterations_left + overhead * frames_left
