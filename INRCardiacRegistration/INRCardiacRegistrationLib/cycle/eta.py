"""The time left in a run, from what this session has measured (no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class EtaClock:
    """Training speed and per-frame overhead measured in this session.

    ``iterations_done``/``training_seconds``: optimiser iterations and the seconds they took in the pairs finished
    so far; ``running``: per pair still training, its iterations and seconds so far; ``overhead_seconds``: per frame
    handed over, the seconds its chain spent outside training (writing its outputs inline, or waiting for room at
    the frame writer). Seconds per iteration are a chain's own.
    """

    iterations_done: int = 0
    training_seconds: float = 0.0
    running: dict[int, tuple[int, float]] = field(default_factory=dict)
    overhead_seconds: list[float] = field(default_factory=list)
    warm_planned: int = 0  # iteration budgets of the finished warm-started pairs
    warm_used: int = 0     # iterations they used (fewer where a pair stopped at its loss plateau)

    def warm_share(self) -> float:
        """The share of their budget that warm-started pairs used so far (1 before the first one finished)."""
        return self.warm_used / self.warm_planned if self.warm_planned else 1.0

    def seconds_left(self, iterations_left: float, frames_left: int) -> float:
        """Seconds until the end of a chain: ``iterations_left`` at this session's speed plus the mean overhead for
        each of its ``frames_left`` unfinished frames; NaN before the first measured iteration."""
        iterations = self.iterations_done + sum(done for done, _ in self.running.values())
        if iterations == 0:
            return math.nan
        seconds = self.training_seconds + sum(elapsed for _, elapsed in self.running.values())
        overhead = float(np.mean(self.overhead_seconds)) if self.overhead_seconds else 0.0
        return seconds / iterations * iterations_left + overhead * frames_left
