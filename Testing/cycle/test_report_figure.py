"""The run's report.png: full and partial runs, the overlay frames chosen, the overlay orientation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.cycle.report_data import read_run_data
from INRCardiacRegistrationLib.cycle.report_figure import _overlay_choice, _surface_values, _views, write_report
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder
from synthetic_run import FRAMES, GEOMETRY, HD95, REFERENCE, centre, image, make_run, shell, trajectories


@pytest.fixture(scope="module")
def frames() -> list[Volume]:
    return [image(t) for t in range(FRAMES)]


@pytest.fixture(scope="module")
def own_labels() -> dict[int, Volume]:
    return {t: Volume(shell(centre(t)), GEOMETRY) for t in range(FRAMES)}


def _check_png(path, minimum=(400, 600)):
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert pixels.shape[0] >= minimum[0] and pixels.shape[1] >= minimum[1]
    assert pixels.shape[0] <= 4000 and pixels.shape[1] <= 4000
    assert pixels[..., :3].std() > 0.05  # not a blank page


def test_report_of_a_finished_run(tmp_path, frames, own_labels):
    run = make_run(tmp_path / "run", list(range(FRAMES)), subvoxel=True)
    path = write_report(run, frames=frames, frame_labels=own_labels, annotated=trajectories(list(range(FRAMES))))
    assert path == run.report_png
    _check_png(path, minimum=(1200, 1200))
    assert not list(run.root.glob(".tmp-*")), "the temporary file was left behind"


@pytest.mark.slow
def test_report_of_a_partial_run(tmp_path, frames):
    run = make_run(tmp_path / "run", [1, 3], with_trajectories=False, status="running")
    _check_png(write_report(run))  # no frames, no trajectories, no annotation
    # frame images only for the first frames, own labels for one frame, annotation given: still a report
    path = write_report(run, frames=frames[:4], frame_labels={3: Volume(shell(centre(3)), GEOMETRY)},
                        annotated=trajectories([1, 2, 3]), path=tmp_path / "elsewhere" / "partial.png")
    _check_png(path)
    # nothing finished yet (no metrics.csv, no labels) and only the first frame's image
    empty = RunFolder(tmp_path / "empty")
    empty.write_run_info({"frames": FRAMES, "reference_frame": 0, "status": "running"})
    _check_png(write_report(empty, frames=frames[:1]))


def test_overlay_frames_are_the_reference_the_worst_and_spread(tmp_path, frames):
    data = read_run_data(make_run(tmp_path / "run", list(range(FRAMES)), with_trajectories=False))
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


def test_the_surface_panel_shows_sub_voxel_distances_and_the_voxel_range(tmp_path):
    """The HD95 panel plots the sub-voxel HD95 with the mean surface distance, and gives the voxel HD95's range
    (steps of the spacing) in its title; a run from before the sub-voxel distances shows the voxel HD95 and says so."""
    data = read_run_data(make_run(tmp_path / "new", list(range(FRAMES)), subvoxel=True))
    values, extra, label, title = _surface_values(data, data.series("hd95_mm"), "HD95")
    assert values.tolist() == pytest.approx([0.4 * HD95[t] for t in range(FRAMES)])
    assert [more.tolist() for more, _, _ in extra] == [pytest.approx([0.15 * HD95[t] for t in range(FRAMES)])]
    others = [HD95[t] for t in range(FRAMES) if t != REFERENCE]
    assert label == "HD95" and f"{min(others):.2f}-{max(others):.2f} mm" in title
    old = read_run_data(make_run(tmp_path / "old", list(range(FRAMES))))
    values, extra, label, title = _surface_values(old, old.series("hd95_mm"), "HD95 and mean surface distance")
    assert values.tolist() == [HD95[t] for t in range(FRAMES)] and not extra and "voxel contours only" in title
    assert "mean surface" not in title


def test_landmark_paths_are_drawn_in_the_anatomical_views():
    """One landmark moving 10 mm to the patient's left, then 10 mm anterior, then 10 mm superior: in the axial view
    (from the feet) left is to the right and anterior up; coronal (from the front) left right and superior up;
    sagittal (from the patient's left) anterior to the left and superior up (the slices' conventions)."""
    import matplotlib

    matplotlib.use("Agg")
    from INRCardiacRegistrationLib.cycle.report_data import RunData
    from INRCardiacRegistrationLib.cycle.report_figure import _PATH_VIEWS, _plot_paths
    from INRCardiacRegistrationLib.fileio.landmarks import Trajectories
    from matplotlib.figure import Figure

    steps = np.array([[0, 0, 0], [10, 0, 0], [10, -10, 0], [10, -10, 10]], dtype=float)  # LPS: +x L, -y A, +z S
    moving = Trajectories((0, 1, 2, 3), ("tip", "still"), np.stack([steps, np.zeros((4, 3))], axis=1))
    data = RunData(Path("run"), {}, 4, 0, {}, moving, [])
    figure = Figure()
    _plot_paths(figure, figure.add_gridspec(2, len(_PATH_VIEWS)), data, None)
    views = {ax.get_title().splitlines()[-1]: ax for ax in figure.axes[:3]}
    path = {name: np.column_stack(ax.lines[0].get_data()) for name, ax in views.items()}
    moves = {name: np.diff(points, axis=0) for name, points in path.items()}  # screen (right, up) per step
    assert moves["axial, from the feet"].tolist() == [[10, 0], [0, 10], [0, 0]]
    assert moves["coronal, from the front"].tolist() == [[10, 0], [0, 0], [0, 10]]
    assert moves["sagittal, from the left"].tolist() == [[0, 0], [-10, 0], [0, 10]]
