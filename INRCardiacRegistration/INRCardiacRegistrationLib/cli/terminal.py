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
    """``frame 3 done (4/20), Dice 0.951, HD95 sub-voxel 0.62 mm, TRE 0.41 mm, Time 9.1 s``: a ``frame_finished``
    event in one line (the voxel HD95, in steps of the spacing, only where the sub-voxel one is missing)."""
    parts = [f"frame {event['frame']} done ({event['done']}/{event['frames']})"]
    columns = [c for c in TRACKING_METRICS if c != "hd95_mm" or event.get("hd95_subvoxel_mm") is None]
    columns.insert(1, "hd95_subvoxel_mm")
    for column in (*columns, "seconds"):
        if event.get(column) is not None:
            entry = metric(column)
            parts.append(f"{entry.title} {entry.text(event[column])}")
    return ", ".join(parts)


class TerminalProgress(TerminalBar):
    """A tqdm bar over all iterations of a run, with the frame, loss and ETA; finished frames are printed."""

    def __init__(self, quiet: bool) -> None:
        super().__init__(quiet)
        self.done: dict[int, int] = {}    # per frame of this session: iterations done (its budget once it ended)
        self.budget: dict[int, int] = {}  # per frame: its iteration budget

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
            # frames of two chains report in turn; a pair stopped at its loss plateau reports the iteration it stopped
            # at as its count: the bar still counts the frame's whole budget, so it ends full
            frame = event["frame"]
            self.budget[frame] = max(self.budget.get(frame, 0), event["iterations"])
            ended = event["iteration"] == event["iterations"]
            self.done[frame] = self.budget[frame] if ended else event["iteration"]
            self.bar.set_description(f"frame {frame}")
            self.bar.update(sum(self.done.values()) - self.bar.n)
            self.bar.set_postfix(loss=f"{event['loss']:.4f}")
        elif kind == "frame_resumed" and self.bar is not None:
            self.bar.write(f"frame {event['frame']}: going on from iteration {event['iteration']} of "
                           f"{event['iterations']} (saved when the run stopped)", file=sys.stderr)
        elif kind == "frame_finished" and self.bar is not None:
            frame = event["frame"]
            self.done[frame] = self.budget.get(frame, self.done.get(frame, 0))
            self.bar.update(sum(self.done.values()) - self.bar.n)
            self.bar.write(frame_line(event), file=sys.stderr)
        elif kind in FINAL_EVENTS:
            self.close()
