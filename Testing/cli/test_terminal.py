"""The terminal progress bar of ``inr-cardiac register``."""

from __future__ import annotations

from INRCardiacRegistrationLib.cli.terminal import TerminalProgress


def test_a_pair_stopped_at_its_plateau_still_fills_its_share_of_the_bar():
    """The second pair stops at iteration 125 of its 150 (it then reports 125 as its count): from then on the bar
    counts the frame's whole budget, so it stands at its total when the last frame is done."""
    bar = TerminalProgress(quiet=False)
    events = [{"event": "started", "iterations_total": 210, "todo": [1, 2]},
              {"event": "iteration", "frame": 1, "iteration": 60, "iterations": 60, "loss": 0.1},
              {"event": "frame_finished", "frame": 1, "done": 2, "frames": 3},
              {"event": "iteration", "frame": 2, "iteration": 100, "iterations": 150, "loss": 0.1}]
    for event in events:
        bar(event)
    assert bar.bar.n == 160
    bar({"event": "iteration", "frame": 2, "iteration": 125, "iterations": 125, "loss": 0.1})
    assert bar.bar.n == 210
    bar({"event": "frame_finished", "frame": 2, "done": 3, "frames": 3})
    assert bar.bar.n == bar.bar.total == 210
    bar({"event": "finished"})
    assert bar.bar is None


def test_two_chains_reporting_in_turn_move_the_bar_forward_only():
    """Frames 2 and 9 train at once (two chains): their iterations add up and the bar never goes back."""
    bar = TerminalProgress(quiet=False)
    bar({"event": "started", "iterations_total": 300, "todo": [2, 9]})
    seen = []
    for iteration in range(10, 160, 10):
        for frame in (2, 9):
            bar({"event": "iteration", "frame": frame, "iteration": iteration, "iterations": 150, "loss": 0.1})
            seen.append(bar.bar.n)
    assert seen == sorted(seen) and seen[-1] == 300
    bar({"event": "frame_finished", "frame": 9, "done": 2, "frames": 3})
    assert bar.bar.n == 300


def test_finished_frames_and_resumed_pairs_are_printed(capsys):
    """A finished frame's line shows the sub-voxel HD95 (the voxel one only when that is missing); a pair that goes
    on from its saved state says from which iteration."""
    from INRCardiacRegistrationLib.cli.terminal import frame_line

    event = {"frame": 3, "done": 4, "frames": 20, "dice": 0.951, "hd95_mm": 1.75, "hd95_subvoxel_mm": 0.62,
             "tre_mm": 0.41, "seconds": 9.1}
    assert frame_line(event) == "frame 3 done (4/20), Dice 0.951, HD95 sub-voxel 0.62 mm, TRE 0.41 mm, Time 9.1 s"
    old = {**event, "hd95_subvoxel_mm": None}
    assert frame_line(old) == "frame 3 done (4/20), Dice 0.951, HD95 1.75 mm, TRE 0.41 mm, Time 9.1 s"
    bar = TerminalProgress(quiet=False)
    bar({"event": "started", "iterations_total": 300, "todo": [1]})
    bar({"event": "frame_resumed", "frame": 1, "iteration": 182, "iterations": 300})
    assert "frame 1: going on from iteration 182 of 300" in capsys.readouterr().err
