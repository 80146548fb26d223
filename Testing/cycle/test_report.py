"""The run report: the PNG (full and partial runs), the text summary's numbers, the overlay orientation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.cycle.report import _overlay_choice, _views, run_summary, write_report, write_summary
from INRCardiacRegistrationLib.cycle.run_folder import FrameRecord, RunFolder
from INRCardiacRegistrationLib.fileio.landmarks import Trajectories, write_trajectories_csv

FRAMES = 6
REFERENCE = 1  # not frame 0, so that "excluding the reference" is tested for what it says
GEOMETRY = Geometry(size=(24, 24, 16), spacing=(2.0, 2.0, 2.5), origin=(-23.0, -23.0, -18.75))
DICE = {0: 0.91, 1: 1.0, 2: 0.84, 3: 0.78, 4: 0.88, 5: 0.95}
HD95 = {0: 1.5, 1: 0.0, 2: 2.25, 3: 3.5, 4: 2.0, 5: 1.25}
TRE = {0: 1.1, 1: 0.0, 2: 1.6, 3: 2.4, 4: 1.8, 5: 1.2}
JACOBIAN = {0: 0.01, 1: 0.0, 2: 0.05, 3: 0.2, 4: 0.0, 5: 0.02}
SECONDS = {0: 20.0, 1: 0.0, 2: 90.0, 3: 25.0, 4: 22.0, 5: 21.0}


def _centre(t: int) -> np.ndarray:
    """The moving shell's centre in frame t (LPS mm): a small loop over the cycle."""
    angle = 2 * np.pi * t / FRAMES
    return np.array([3.0 * np.sin(angle), 2.0 * (1 - np.cos(angle)), 0.0])


def _shell(centre: np.ndarray) -> np.ndarray:
    distance = np.linalg.norm(GEOMETRY.voxel_centres_physical() - centre, axis=-1)
    return ((distance > 7.0) & (distance < 12.0)).astype(np.uint8)


def _image(t: int) -> Volume:
    distance = np.linalg.norm(GEOMETRY.voxel_centres_physical() - _centre(t), axis=-1)
    array = np.where(distance < 7.0, 300.0, np.where(distance < 12.0, 100.0, -50.0))
    return Volume(array + np.random.default_rng(t).normal(0, 5, array.shape), GEOMETRY, f"frame {t}")


def _trajectories(frames: list[int], offset: float = 0.0) -> Trajectories:
    base = np.array([[9.0, 0.0, 0.0], [-9.0, 0.0, 2.0], [0.0, 9.0, -2.0]])
    points = np.stack([base + _centre(t) + offset for t in frames])
    return Trajectories(tuple(frames), ("LAD", "CX", "apex"), points)


def _make_run(root, finished: list[int], trajectories: bool = True, status: str = "finished") -> RunFolder:
    run = RunFolder(root)
    run.write_run_info({"frames": FRAMES, "reference_frame": REFERENCE, "mode": "non-sequential",
                        "preset": "fast", "device": "cpu", "status": status,
                        "config": {"alpha": 0.8, "iterations": 300, "warm_start_iterations": 100, "width": 64,
                                   "depth": 2, "points": 1000}})
    run.append_event("started", frames=FRAMES, order=[2, 3, 4, 5, 0])
    records = []
    for t in finished:
        # the "propagated" shell lags 1 mm behind the true one
        Volume(_shell(_centre(t) - np.array([1.0, 0.0, 0.0]) * (t != REFERENCE)), GEOMETRY).write(run.label_path(t))
        reference = t == REFERENCE
        record = FrameRecord(frame=t, dice=DICE[t], hd95_mm=HD95[t], tre_mm=TRE[t],
                             negative_jacobian_pct=JACOBIAN[t], final_loss=math.nan if reference else 0.1,
                             seconds=SECONDS[t], iterations=0 if reference else (300 if t == 2 else 100),
                             alpha_used=0.8, pair=f"{REFERENCE}->{t}",
                             files={"label": run.label_path(t).relative_to(run.root).as_posix()})
        run.write_frame_record(record)
        records.append(record)
    run.write_metrics(records)
    if trajectories:
        write_trajectories_csv(run.trajectories_csv, _trajectories(sorted(finished), offset=0.5))
    return run


@pytest.fixture(scope="module")
def frames() -> list[Volume]:
    return [_image(t) for t in range(FRAMES)]


@pytest.fixture(scope="module")
def own_labels() -> dict[int, Volume]:
    return {t: Volume(_shell(_centre(t)), GEOMETRY) for t in range(FRAMES)}


def _check_png(path, minimum=(400, 600)):
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert pixels.shape[0] >= minimum[0] and pixels.shape[1] >= minimum[1]
    assert pixels.shape[0] <= 4000 and pixels.shape[1] <= 4000
    assert pixels[..., :3].std() > 0.05  # not a blank page


def test_report_of_a_finished_run(tmp_path, frames, own_labels):
    run = _make_run(tmp_path / "run", list(range(FRAMES)))
    path = write_report(run, frames=frames, frame_labels=own_labels, annotated=_trajectories(list(range(FRAMES))))
    assert path == run.report_png
    _check_png(path, minimum=(1200, 1200))
    assert not list(run.root.glob(".tmp-*")), "the temporary file was left behind"


def test_report_of_a_partial_run(tmp_path, frames):
    run = _make_run(tmp_path / "run", [1, 3], trajectories=False, status="running")
    _check_png(write_report(run))  # no frames, no trajectories, no annotation
    # frame images only for the first frames, own labels for one frame, annotation given: still a report
    path = write_report(run, frames=frames[:4], frame_labels={3: Volume(_shell(_centre(3)), GEOMETRY)},
                        annotated=_trajectories([1, 2, 3]), path=tmp_path / "elsewhere" / "partial.png")
    _check_png(path)
    # nothing finished yet (no metrics.csv, no labels) and only the first frame's image
    empty = RunFolder(tmp_path / "empty")
    empty.write_run_info({"frames": FRAMES, "reference_frame": 0, "status": "running"})
    _check_png(write_report(empty, frames=frames[:1]))


def test_summary_numbers_exclude_the_reference_frame(tmp_path):
    run = _make_run(tmp_path / "run", list(range(FRAMES)))
    text = run_summary(run, annotated=_trajectories(list(range(FRAMES))))
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
    moved = [np.linalg.norm(_centre(t) - _centre(REFERENCE)) for t in others]  # every landmark moves alike
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
    run = _make_run(tmp_path / "run", list(range(FRAMES)))
    others = [t for t in range(FRAMES) if t != REFERENCE]
    text = run_summary(run, annotated=_trajectories(others))
    start = _centre(REFERENCE) + 0.5  # the predicted trajectories are offset by 0.5 mm per axis
    moved = [np.linalg.norm(_centre(t) - start) for t in others]
    assert f"without registration {np.mean(moved):.2f} mm" in text


def test_summary_of_a_partial_run_lists_the_missing_frames(tmp_path):
    run = _make_run(tmp_path / "run", [1, 3], trajectories=False, status="cancelled")
    text = run_summary(run)
    assert "cancelled" in text and f"2 / {FRAMES}" in text
    assert "missing frames: 0, 2, 4-5" in text
    assert f"mean {DICE[3]:.3f}, min {DICE[3]:.3f} (frame 3)" in text  # the only non-reference frame
    assert "first pair (frame 3" in text
    path = write_summary(run, text)
    assert path == run.summary_txt and path.read_text() == text


def test_overlay_frames_are_the_reference_the_worst_and_spread(tmp_path, frames):
    from INRCardiacRegistrationLib.cycle.report import _load

    data = _load(_make_run(tmp_path / "run", list(range(FRAMES)), trajectories=False))
    choice = dict((t, role) for t, role in _overlay_choice(data, frames, None))
    assert choice[REFERENCE] == "reference" and choice[3] == "lowest Dice"
    assert len(choice) == 4


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1)])
def test_slices_are_shown_the_radiological_way(direction):
    """A voxel at the patient's left, anterior and superior corner: axial right/top, coronal right/top,
    sagittal left/top, whatever the grid's direction."""
    geometry = Geometry(size=(5, 6, 7), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=direction)
    corner = np.array([10.0, -10.0, 10.0]) * 100  # far left, anterior, superior: nearest voxel is a grid corner
    i, j, k = np.clip(np.rint(geometry.physical_to_index(corner)), 0, np.array(geometry.size) - 1).astype(int)
    array = np.zeros(geometry.array_shape)
    array[k, j, i] = 1.0
    views = {view.name: view for view in _views(Volume(array, geometry))}
    assert list(views) == ["axial", "coronal", "sagittal"]
    index = {"axial": k, "coronal": j, "sagittal": i}
    where = {name: np.argwhere(view.cut(array, index[name]) == 1.0)[0] for name, view in views.items()}
    shapes = {name: view.cut(array, index[name]).shape for name, view in views.items()}
    assert tuple(where["axial"]) == (0, shapes["axial"][1] - 1)
    assert tuple(where["coronal"]) == (0, shapes["coronal"][1] - 1)
    assert tuple(where["sagittal"]) == (0, 0)
