"""The run's summary.txt: its numbers leave out the reference frame; a partial run lists its missing frames."""

from __future__ import annotations

import numpy as np
from INRCardiacRegistrationLib.cycle.report_summary import run_summary, write_summary
from synthetic_run import DICE, FRAMES, HD95, JACOBIAN, REFERENCE, SECONDS, TRE, centre, make_run, trajectories


def test_summary_numbers_exclude_the_reference_frame(tmp_path):
    run = make_run(tmp_path / "run", list(range(FRAMES)))
    text = run_summary(run, annotated=trajectories(list(range(FRAMES))))
    others = [t for t in range(FRAMES) if t != REFERENCE]
    dice = [DICE[t] for t in others]
    hd95 = [HD95[t] for t in others]
    tre = [TRE[t] for t in others]
    assert "finished" in text and f"{FRAMES} / {FRAMES}" in text and "none missing" in text
    assert "non-sequential" in text and "alpha 0.8" in text and "preset fast" in text and "device cpu" in text
    assert f"excluding the reference frame {REFERENCE}" in text
    assert f"mean {sum(dice) / len(dice):.3f}, min {min(dice):.3f} (frame 3)" in text
    assert f"mean {sum(hd95) / len(hd95):.2f} mm, max {max(hd95):.2f} mm (frame 3)" in text
    assert f"mean {sum(tre) / len(tre):.2f} mm" in text
    moved = [np.linalg.norm(centre(t) - centre(REFERENCE)) for t in others]  # every landmark moves alike
    assert f"without registration {np.mean(moved):.2f} mm" in text
    jacobian = [JACOBIAN[t] for t in others]
    assert f"mean {np.mean(jacobian):.4f} %, max 0.2000 % (frame 3)" in text
    later = [SECONDS[t] for t in others if t != 2]  # frame 2 is the first pair of the started event's order
    assert "first pair (frame 2, 300 iterations) 90.0 s" in text
    assert f"later pairs mean {sum(later) / len(later):.1f} s ({len(later)} pairs)" in text
    assert f"total {sum(SECONDS.values()):.1f} s" in text
    with_reference = sum(DICE.values()) / FRAMES
    assert f"mean {with_reference:.3f}" not in text


def test_no_registration_error_without_an_annotated_reference_frame(tmp_path):
    """Annotations that skip the reference frame are compared with the predicted reference positions."""
    run = make_run(tmp_path / "run", list(range(FRAMES)))
    others = [t for t in range(FRAMES) if t != REFERENCE]
    text = run_summary(run, annotated=trajectories(others))
    start = centre(REFERENCE) + 0.5  # the predicted trajectories are offset by 0.5 mm per axis
    moved = [np.linalg.norm(centre(t) - start) for t in others]
    assert f"without registration {np.mean(moved):.2f} mm" in text


def test_summary_of_a_partial_run_lists_the_missing_frames(tmp_path):
    run = make_run(tmp_path / "run", [1, 3], with_trajectories=False, status="cancelled")
    text = run_summary(run)
    assert "cancelled" in text and f"2 / {FRAMES}" in text
    assert "missing frames: 0, 2, 4-5" in text
    assert f"mean {DICE[3]:.3f}, min {DICE[3]:.3f} (frame 3)" in text  # the only non-reference frame
    assert "first pair (frame 3" in text
    path = write_summary(run, text)
    assert path == run.summary_txt and path.read_text() == text


def test_frames_whose_field_folds_in_its_margin_are_summarised(tmp_path):
    run = make_run(tmp_path / "run", list(range(FRAMES)))
    assert "Field margin" not in run_summary(run)
    for frame, folds in ((1, 4), (3, 17)):
        record = run.read_frame_record(frame)
        record.margin_folds = folds
        run.write_frame_record(record)
    assert "folds at margin nodes in 2 frame(s) (at most 17 nodes, frame 3)" in run_summary(run)
