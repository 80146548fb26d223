"""Progress in the terminal: one tqdm bar on stderr per command (nothing with ``--quiet``)."""

from __future__ import annotations

import sys

from ..core.vocabulary import FINAL_EVENTS, TRACKING_METRICS, metric


class TerminalBar:
    """A progress callback that draws one tqdm bar on stderr (nothing when ``quiet``); subclasses handle events."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None

    def __call__(self, event: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def frame_line(event: dict) -> str:
    """``frame 3 done (4/20), Dice 0.951, HD95 1.80 mm, Time 9.1 s``: a ``frame_finished`` event in one line."""
    parts = [f"frame {event['frame']} done ({event['done']}/{event['frames']})"]
    for column in (*TRACKING_METRICS, "seconds"):
        if event.get(column) is not None:
            entry = metric(column)
            parts.append(f"{entry.title} {entry.text(event[column])}")
    return ", ".join(parts)


class TerminalProgress(TerminalBar):
    """A tqdm bar over all iterations of a run, with the frame, loss and ETA; finished frames are printed."""

    def __init__(self, quiet: bool) -> None:
        super().__init__(quiet)
        self.offset = 0  # the budgets of the frames finished in this session
        self.budget = 0  # the current frame's budget

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "warning":  # shown even when quiet
            (self.bar.write if self.bar is not None else print)(f"warning: {event['text']}", file=sys.stderr)
            return
        if self.quiet:
            return
        from tqdm import tqdm

        if kind == "started":
            self.bar = tqdm(total=event["iterations_total"], unit="it", dynamic_ncols=True, file=sys.stderr,
                            desc=f"{len(event['todo'])} frames")
        elif kind == "iteration" and self.bar is not None:
            # a pair stopped at its loss plateau reports the iteration it stopped at as its count: the bar still
            # moves on by the frame's whole budget, so it ends full
            self.budget = max(self.budget, event["iterations"])
            self.bar.set_description(f"frame {event['frame']}")
            self.bar.update(self.offset + event["iteration"] - self.bar.n)
            self.bar.set_postfix(loss=f"{event['loss']:.4f}")
            if event["iteration"] == event["iterations"]:
                self.offset += self.budget
                self.budget = 0
        elif kind == "frame_finished" and self.bar is not None:
            self.bar.update(self.offset - self.bar.n)
            self.bar.write(frame_line(event), file=sys.stderr)
        elif kind in FINAL_EVENTS:
            self.close()
