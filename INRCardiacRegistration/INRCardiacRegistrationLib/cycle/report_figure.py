"""A run's ``report.png``: metric curves, landmark paths and overlay slices, like Figs. 3-5 of the paper.

Everything is read from the run folder (:mod:`report_data`) and ``labels/frame_NNN.nii.gz``; the caller may add
what the folder does not hold: the frame images, the frames' own myocardium masks and annotated landmark
trajectories. A partial run (still going, cancelled or failed) gives a report too: missing data leave a panel
empty, and its title says why. Metric titles and units are those of :data:`..core.vocabulary.METRICS`.

Conventions: phases in % of the cycle; points LPS mm; distances mm. Slices are shown the radiological way: axial
seen from the feet (patient left on the image right, anterior up), coronal seen from the front (patient left on the
image right, superior up), sagittal seen from the patient's left (anterior on the image left, superior up).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.atomic_file import atomic_path
from ..core.vocabulary import TRACKING_METRICS, InputError, Metric, metric
from ..core.volume import Volume
from ..fileio.landmarks import Trajectories
from .report_data import RunData, frame_list, mean_displacement, read_run_data, trajectory_error
from .run_folder import RunFolder

# on the slices: the frame's own myocardium as a translucent cyan area, the propagated one as a yellow contour on
# top, so that agreement reads as a yellow line on the edge of the cyan area (no two lines blending into a third
# colour)
PROPAGATED_COLOUR = "#ffd400"  # the reference myocardium carried into frame t (yellow contour)
OWN_COLOUR = "#00e5ff"         # frame t's own myocardium (cyan area)
OWN_ALPHA = 0.35
OVERLAY_FRAMES = 4             # columns of overlay slices: reference, worst, and others spread over the cycle
CROP_MARGIN_MM = 20.0          # overlay slices show the reference myocardium's box plus this margin
# display convention per plane: (LPS component increasing to the right, its sign,
#                                LPS component increasing downwards, its sign)
_PLANE_DISPLAY = {"axial": (0, 1, 1, 1), "coronal": (0, 1, 2, -1), "sagittal": (1, 1, 2, -1)}
_PLANE_ORDER = ("axial", "coronal", "sagittal")
# the metric panels, one per tracking metric: what the title says after the metric's title, and the curve's colour
_PANELS = {"dice": ("of the propagated myocardium", "#1f77b4"),
           "hd95_mm": ("and mean surface distance of the propagated myocardium to the frame's own", "#d62728"),
           "tre_mm": ("of the tracked landmarks", "#2ca02c")}
MEAN_SURFACE_COLOUR = "#ff7f0e"


# --- the figure: metric curves ------------------------------------------------------------------------
def _plot_metrics(figure, grid, data: RunData, annotated: Trajectories | None) -> None:
    """One panel per :data:`TRACKING_METRICS` column against the phase, stacked in ``grid``'s first column; the
    TRE panel adds the annotated landmarks' motion (the error without registration)."""
    first = None
    for row, column in enumerate(TRACKING_METRICS):
        ax = figure.add_subplot(grid[row, 0], sharex=first)
        if first is None:
            first = ax
        entry = metric(column)
        what, colour = _PANELS[column]
        title = f"{entry.title} {what}"
        if row == 0:
            title += f" ({len(data.rows)} of {data.frames} frames finished)"
        values, comparison, extra, label = data.series(column), None, [], "this run"
        if column == "tre_mm":
            values, title = _tre_values(data, annotated, values, title)
            comparison = mean_displacement(annotated, data.reference, data.predicted)
        if column == "hd95_mm":
            values, extra, label, title = _surface_values(data, values, title)
        _plot_metric(ax, data, values, entry, title, colour, comparison, "without registration (annotated motion)",
                     extra, label)
        if extra:
            ax.set_ylabel("surface distance (mm)", fontsize=9)
        if row == len(TRACKING_METRICS) - 1:
            ax.set_xlabel("phase (% of the cardiac cycle)", fontsize=9)


def _tre_values(data: RunData, annotated: Trajectories | None, values: np.ndarray,
                title: str) -> tuple[np.ndarray, str]:
    """TRE per frame: metrics.csv's, else from the trajectory files; the title says which, or why none."""
    if not np.isfinite(values).any():
        computed = trajectory_error(data.predicted, annotated)
        if computed:
            values = np.array([computed.get(t, np.nan) for t in range(data.frames)])
            title += " (from the trajectory files)"
    if not np.isfinite(values).any() and annotated is None:
        title += " (no annotated landmarks)"
    return values, title


def _surface_values(data: RunData, voxel: np.ndarray, title: str) -> tuple[np.ndarray, list, str, str]:
    """The HD95 panel: the sub-voxel HD95 (:mod:`..core.surface_distance`), with the mean surface distance and the
    voxel HD95 (in steps of the spacing) as further curves; a run from before the sub-voxel distances shows the
    voxel HD95 only, and says so."""
    subvoxel = data.series("hd95_subvoxel_mm")
    if not np.isfinite(subvoxel).any():
        title = title.replace(" and mean surface distance", "")  # a run from before the sub-voxel distances
        return voxel, [], "this run (voxel contours)", title + "\n(voxel contours only: steps of the spacing)"
    extra = [(data.series("mean_surface_mm"), f"{metric('mean_surface_mm').title}",
              {"color": MEAN_SURFACE_COLOUR, "marker": "s", "markersize": 3, "linewidth": 1.2})]
    others = voxel[[t for t in range(data.frames) if t != data.reference]]
    others = others[np.isfinite(others)]
    if others.size:
        spread = (f"{others.min():.2f} mm in every frame" if others.min() == others.max() else
                  f"{others.min():.2f}-{others.max():.2f} mm")
        title += f"\non sub-voxel surfaces (on voxel contours, hd95_mm: {spread})"
    return subvoxel, extra, "HD95", title


def _plot_metric(ax, data: RunData, values: np.ndarray, entry: Metric, title: str, colour: str,
                 comparison: dict[int, float] | None = None, comparison_label: str = "",
                 extra: list | None = None, label: str = "this run") -> None:
    phases = data.phase(np.arange(data.frames))
    ax.axvline(float(data.phase(data.reference)), color="0.45", linestyle=":", linewidth=1.2,
               label=f"reference (frame {data.reference})")
    if comparison:
        frames = sorted(t for t in comparison if 0 <= t < data.frames)
        ax.plot(data.phase(np.array(frames)), [comparison[t] for t in frames], color="0.35", linestyle="--",
                linewidth=1.2, label=comparison_label)
    for more, more_label, style in extra or []:
        if np.isfinite(more).any():
            ax.plot(phases, more, label=more_label, **style)
    finite = np.isfinite(values)
    if finite.any():
        ax.plot(phases, values, color=colour, marker="o", markersize=4, linewidth=1.5, label=label, zorder=3)
    else:
        title += ": no values yet"
    missing = data.missing
    if missing:
        ax.scatter(data.phase(np.array(missing)), np.full(len(missing), 0.04), marker="x", s=18, color="0.55",
                   transform=ax.get_xaxis_transform(), label="frame not finished", zorder=3)
    ax.set_xlim(-2.0, 100.0)
    ax.set_xticks(np.arange(0, 101, 10))
    ax.set_ylabel(entry.label, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", framealpha=0.85)


# --- the figure: landmark paths -----------------------------------------------------------------------
# The paths are drawn in the three anatomical views, oriented as the overlay slices (_PLANE_DISPLAY; a plot's
# vertical axis points up where an image's rows point down). Positions relative to the mean of all.
_LPS_ENDS = (("right", "left"), ("anterior", "posterior"), ("inferior", "superior"))  # each LPS axis: - and + end
_VIEW_TITLES = {"axial": "axial, from the feet", "coronal": "coronal, from the front",
                "sagittal": "sagittal, from the left"}


def _axis_text(component: int, sign: int) -> str:
    """``right  <- mm ->  left``: the LPS ``component`` along a plot axis that increases with ``sign`` times it."""
    low, high = _LPS_ENDS[component] if sign > 0 else _LPS_ENDS[component][::-1]
    return f"{low}  <- mm ->  {high}"


def _path_view(plane: str) -> tuple[str, int, int, str, int, int, str]:
    """(title, horizontal LPS component, its sign, its axis text, vertical component, its sign, its axis text)."""
    h, h_sign, v, v_down = _PLANE_DISPLAY[plane]
    return _VIEW_TITLES[plane], h, h_sign, _axis_text(h, h_sign), v, -v_down, _axis_text(v, -v_down)


_PATH_VIEWS = tuple(_path_view(plane) for plane in _PLANE_ORDER)
MAX_COLOURED_LANDMARKS = 10  # the landmarks that move most get a colour and a legend entry; the others are grey


def _plot_paths(figure, grid, data: RunData, annotated: Trajectories | None) -> None:
    """Landmark paths over the cycle in the axial, coronal and sagittal views (``grid``: a subgridspec, views in
    its first row, the legend in its second). Names are in the legend (colour = landmark), never on the plot."""
    sets = [(name, t) for name, t in (("predicted", data.predicted), ("annotated", annotated)) if t is not None]
    axes = [figure.add_subplot(grid[0, column]) for column in range(len(_PATH_VIEWS))]
    legend_axis = figure.add_subplot(grid[1, :])
    legend_axis.axis("off")
    if not sets:
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[1].set_title("Landmark paths: none (no landmark_trajectories.csv, no annotation)", fontsize=10)
        return
    from matplotlib.lines import Line2D

    centre = np.concatenate([t.points_lps.reshape(-1, 3) for _, t in sets]).mean(axis=0)
    labels: list[str] = []
    for _, trajectories in sets:
        labels.extend(label for label in trajectories.labels if label not in labels)
    excursion = dict.fromkeys(labels, 0.0)
    paths: list[tuple[str, str, np.ndarray, int]] = []  # (set, label, (F, 3) LPS relative to the centre, start)
    for name, trajectories in sets:
        order = np.argsort(trajectories.frames)
        frames = [trajectories.frames[i] for i in order]
        points = trajectories.points_lps[order] - centre  # (F, N, 3), frames in cycle order
        start = frames.index(data.reference) if data.reference in frames else 0
        for n, label in enumerate(trajectories.labels):
            paths.append((name, label, points[:, n], start))
            excursion[label] = max(excursion[label], float(np.linalg.norm(points[:, n] - points[start, n],
                                                                          axis=1).max()))
    coloured = sorted(labels, key=lambda label: -excursion[label])[:MAX_COLOURED_LANDMARKS]
    cmap = _colormap("tab10")
    colours = {label: cmap(n % cmap.N) for n, label in enumerate(coloured)}
    for ax, (view, h, h_sign, h_text, v, v_sign, v_text) in zip(axes, _PATH_VIEWS, strict=True):
        for name, label, path, start in paths:
            x, y = h_sign * path[:, h], v_sign * path[:, v]
            if name == "predicted":
                ax.plot(x, y, color=colours.get(label, "0.7"), linewidth=1.4, marker=".", markersize=3, zorder=3)
            else:
                ax.plot(x, y, color="black", linewidth=0.8, linestyle="--", zorder=2)
            ax.plot(x[start], y[start], "o", color="black", markersize=3, zorder=4)
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.set_title(view, fontsize=9)
        ax.set_xlabel(h_text, fontsize=8)
        ax.set_ylabel(v_text, fontsize=8)
    handles = [Line2D([], [], color=colours[label], linewidth=2, label=label) for label in coloured]
    if len(labels) > len(coloured):
        handles.append(Line2D([], [], color="0.7", linewidth=2,
                              label=f"{len(labels) - len(coloured)} others (moving least)"))
    if data.predicted is not None:
        handles.append(Line2D([], [], color="0.3", marker=".", linewidth=1.4, label="tracked (this run)"))
    if annotated is not None:
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=0.8, label="annotated"))
    handles.append(Line2D([], [], color="black", marker="o", linestyle="", markersize=4,
                          label=f"in the reference frame {data.reference}"))
    legend_axis.legend(handles=handles, loc="upper center", ncol=4, fontsize=8, frameon=False)
    shown = " and ".join(name for name, _ in sets)
    axes[1].set_title(f"Landmark paths over the cycle ({len(labels)} landmarks, {shown})\n{_PATH_VIEWS[1][0]}",
                      fontsize=10)


def _colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


# --- the figure: overlay slices -----------------------------------------------------------------------
def _overlay_choice(data: RunData, frames: list[Volume | None], annotated: Trajectories | None,
                    count: int = OVERLAY_FRAMES) -> list[tuple[int, str]]:
    """Up to ``count`` frames with their role: the reference, the worst (lowest Dice, else largest mean
    landmark displacement), then frames spread over the cycle (finished frames with an image first)."""
    k, size = data.reference, data.frames
    has_image = [t for t in range(size) if t < len(frames) and frames[t] is not None]
    chosen: list[tuple[int, str]] = [(k, "reference")]
    dice = data.series("dice")
    scored = [t for t in range(size) if t != k and np.isfinite(dice[t])]
    if scored:
        chosen.append((min(scored, key=lambda t: (dice[t], t)), f"lowest {metric('dice').title}"))
    else:
        displacement = mean_displacement(data.predicted, k) or mean_displacement(annotated, k)
        moved = [t for t in displacement if t != k and 0 <= t < size]
        if moved:
            chosen.append((max(moved, key=lambda t: (displacement[t], -t)), "largest landmark motion"))
    finished_with_image = [t for t in has_image if t in data.rows]
    for pool in (finished_with_image, has_image, list(range(size))):
        while len(chosen) < min(count, size):
            taken = {t for t, _ in chosen}
            candidates = [t for t in pool if t not in taken]
            if not candidates:
                break

            def spread(t: int, taken: set[int] = taken) -> tuple[int, int]:
                gap = min(min(abs(t - u), size - abs(t - u)) for u in taken)
                return gap, -t

            chosen.append((max(candidates, key=spread), ""))
    return sorted(chosen)


@dataclass
class _View:
    """How one index plane of a grid is cut and shown: the plane's name, normal index axis (0 = i, 1 = j,
    2 = k) and the 2-D reorientation."""

    name: str
    axis: int
    transpose: bool
    flip_rows: bool
    flip_cols: bool
    aspect: float  # pixel height / width

    def cut(self, array: np.ndarray, index: int) -> np.ndarray:
        """The slice at ``index`` along ``axis`` of a [k, j, i] array, oriented for display."""
        plane = np.take(array, index, axis=2 - self.axis)
        if self.transpose:
            plane = plane.T
        if self.flip_rows:
            plane = plane[::-1]
        if self.flip_cols:
            plane = plane[:, ::-1]
        return plane


def _views(volume: Volume) -> list[_View]:
    """The three index planes of a grid, named and oriented by their dominant LPS directions."""
    direction = volume.geometry.direction_matrix
    spacing = volume.geometry.spacing
    views = []
    for axis in (2, 1, 0):
        name = ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(direction[:, axis])))]
        h_component, h_sign, v_component, v_sign = _PLANE_DISPLAY[name]
        row_axis, col_axis = sorted((a for a in (0, 1, 2) if a != axis), reverse=True)
        transpose = abs(direction[h_component, row_axis]) > abs(direction[h_component, col_axis])
        if transpose:
            row_axis, col_axis = col_axis, row_axis
        views.append(_View(name, axis, transpose,
                           flip_rows=direction[v_component, row_axis] * v_sign < 0,
                           flip_cols=direction[h_component, col_axis] * h_sign < 0,
                           aspect=spacing[row_axis] / spacing[col_axis]))
    return sorted(views, key=lambda view: _PLANE_ORDER.index(view.name))


def _on_grid(label: Volume, image: Volume) -> np.ndarray:
    """A label's array on the image's grid (nearest neighbour when the grids differ)."""
    if label.geometry.matches(image.geometry):
        return np.asarray(label.array)
    mask = label.with_array((np.asarray(label.array) != 0).astype(np.uint8))
    return mask.resampled(image.geometry, sitk.sitkNearestNeighbor)


def _window(array: np.ndarray) -> tuple[float, float]:
    """Grey window: the 1st and 99th percentiles of the image (of at most ~1M voxels, strided)."""
    stride = max(1, int(round((array.size / 1e6) ** (1 / 3))))
    sample = np.asarray(array[::stride, ::stride, ::stride], dtype=np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(sample, [1.0, 99.0])
    return float(low), float(high if high > low else low + 1.0)


def _reference_mask(run: RunFolder, data: RunData, frame_labels: dict[int, Volume]) -> Volume | None:
    """The reference myocardium: the run's label of the reference frame, else the caller's."""
    path = run.label_path(data.reference)
    if path.is_file():
        try:
            return Volume.read(path)
        except InputError as error:
            data.notes.append(str(error))
    return frame_labels.get(data.reference)


def _box(mask: Volume | None, image: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, lower, upper) voxel indices (i, j, k) on the image grid: the reference myocardium's centroid
    and its bounding box plus :data:`CROP_MARGIN_MM` (the whole grid without a mask)."""
    size = np.asarray(image.geometry.size)
    whole = (np.zeros(3, dtype=int), size - 1)
    if mask is None or not np.any(mask.array):
        return (size - 1) // 2, *whole
    kji = np.argwhere(np.asarray(mask.array) != 0)
    ijk = kji[:, ::-1].astype(np.float64)
    centroid = image.geometry.physical_to_index(mask.geometry.index_to_physical(ijk.mean(axis=0)))
    low, high = ijk.min(axis=0), ijk.max(axis=0)
    corners = np.array([[(low, high)[b][a] for a, b in enumerate(bits)]
                        for bits in np.ndindex(2, 2, 2)])
    corners = image.geometry.physical_to_index(mask.geometry.index_to_physical(corners))
    margin = CROP_MARGIN_MM / np.asarray(image.geometry.spacing)
    lower = np.clip(np.floor(corners.min(axis=0) - margin), 0, size - 1).astype(int)
    upper = np.clip(np.ceil(corners.max(axis=0) + margin), 0, size - 1).astype(int)
    centre = np.clip(np.rint(centroid), 0, size - 1).astype(int)
    return centre, lower, upper


def _contour(ax, mask: np.ndarray, colour: str, width: float) -> bool:
    mask = np.asarray(mask) != 0
    if not mask.any() or mask.all():
        return False
    ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=width)
    return True


def _area(ax, mask: np.ndarray, colour: str, alpha: float) -> None:
    """``mask`` as a translucent area of ``colour`` (voxel for voxel, as the image is shown)."""
    from matplotlib.colors import to_rgba

    rgba = np.zeros((*np.shape(mask), 4), dtype=np.float32)
    rgba[np.asarray(mask) != 0] = to_rgba(colour, alpha)
    ax.imshow(rgba, aspect=ax.get_aspect(), interpolation="nearest")


def _plot_overlays(figure, grid, run: RunFolder, data: RunData, frames: list[Volume | None],
                   frame_labels: dict[int, Volume], annotated: Trajectories | None) -> None:
    choice = _overlay_choice(data, frames, annotated)
    reference_mask = _reference_mask(run, data, frame_labels)
    dice = metric("dice")
    scores = data.series(dice.column)
    for column, (t, role) in enumerate(choice):
        image = frames[t] if t < len(frames) else None
        heading = f"frame {t} ({float(data.phase(t)):.0f} %)" + (f", {role}" if role else "")
        if np.isfinite(scores[t]) and t != data.reference:
            heading += f"\n{dice.title} {dice.text(float(scores[t]))}"
        if image is None:
            ax = figure.add_subplot(grid[:, column])
            ax.text(0.5, 0.5, "no image", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"{heading}: image missing", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        propagated = None
        if run.label_path(t).is_file():
            try:
                propagated = _on_grid(Volume.read(run.label_path(t)), image)
            except (ValueError, RuntimeError) as error:
                data.notes.append(f"label of frame {t} unreadable ({error})")
        own = _on_grid(frame_labels[t], image) if t in frame_labels else None
        centre, lower, upper = _box(reference_mask, image)
        crop = tuple(slice(lower[a], upper[a] + 1) for a in (2, 1, 0))
        arrays = [None if a is None else np.asarray(a)[crop] for a in (image.array, propagated, own)]
        low, high = _window(image.array)
        missing = [name for name, a in (("propagated", propagated), ("own", own)) if a is None]
        for row, view in enumerate(_views(image)):
            ax = figure.add_subplot(grid[row, column])
            index = int(centre[view.axis] - lower[view.axis])
            ax.imshow(view.cut(arrays[0], index), cmap="gray", vmin=low, vmax=high, aspect=view.aspect,
                      interpolation="nearest")
            # the frame's own myocardium as an area under the propagated contour
            if arrays[2] is not None:
                _area(ax, view.cut(arrays[2], index), OWN_COLOUR, OWN_ALPHA)
            if arrays[1] is not None:
                _contour(ax, view.cut(arrays[1], index), PROPAGATED_COLOUR, 1.2)
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel(view.name, fontsize=10)
            if row == 0:
                note = ""
                if "propagated" in missing and t in data.rows:
                    note = "\n(no propagated label file)"
                elif "propagated" in missing:
                    note = "\n(not registered yet)"
                if "own" in missing and frame_labels:
                    note += "\n(no own label)"
                ax.set_title(heading + note, fontsize=9)


# --- the figure ---------------------------------------------------------------------------------------
def write_report(run: RunFolder, frames: list[Volume] | None = None, frame_labels: dict[int, Volume] | None = None,
                 annotated: Trajectories | None = None, path: Path | None = None) -> Path:
    """Write the run's report PNG (default ``run.report_png``, atomically) and return its path.

    Panels: Dice, surface distance (mm: HD95 and mean on sub-voxel surfaces) and TRE (mm) per phase (% of the
    cycle; the reference frame marked; TRE against the no-registration landmark displacement when ``annotated`` is
    given); the landmark paths over the cycle in the axial, coronal and sagittal views (predicted solid, annotated
    dashed; mm from the mean position; names in the legend); and, when ``frames`` (the T frame images, index =
    frame) are given, slices through the reference myocardium's centroid in the three image planes for a few frames
    with the propagated reference myocardium (yellow contour) and the frame's own myocardium from ``frame_labels``
    (cyan area; non-zero = myocardium), with a legend. Works on a partial run: missing data leave a panel empty
    and its title says so.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    data = read_run_data(run, len(frames) if frames else None)
    frame_labels = frame_labels or {}
    path = Path(path) if path is not None else run.report_png
    overlays = frames is not None and len(frames) > 0
    columns = min(OVERLAY_FRAMES, data.frames)
    top_height, bottom_height = 8.0, 3.9 * 3 + 0.8
    figure = Figure(figsize=(16.0, top_height + (bottom_height if overlays else 0.0)), dpi=100,
                    layout="constrained")
    outer = figure.add_gridspec(2 if overlays else 1, 1,
                                height_ratios=[top_height, bottom_height] if overlays else [1.0])
    top = outer[0].subgridspec(1, 2, width_ratios=[1.0, 1.25])
    _plot_metrics(figure, top[0].subgridspec(len(TRACKING_METRICS), 1), data, annotated)
    _plot_paths(figure, top[1].subgridspec(2, len(_PATH_VIEWS), height_ratios=[1.0, 0.28]), data, annotated)
    if overlays:
        _plot_overlays(figure, outer[1].subgridspec(3, columns), run, data, list(frames), frame_labels,
                       annotated)
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        figure.legend(handles=[Patch(color=OWN_COLOUR, alpha=OWN_ALPHA, label="the frame's own myocardium"),
                               Line2D([], [], color=PROPAGATED_COLOUR, linewidth=1.2,
                                      label="the reference myocardium propagated by this run")],
                      loc="outside lower center", ncol=2, fontsize=9, frameon=True, facecolor="0.25",
                      labelcolor="white")
    done = len(data.rows)
    status = data.info.get("status", "?")
    title = (f"INR registration, run folder '{data.root.parent.name}/{data.root.name}': {data.settings} - {done} / "
             f"{data.frames} frames "
             f"done, status {status}")
    subtitle = f"reference frame {data.reference}"
    if data.missing:
        subtitle += f"; frames not finished: {frame_list(data.missing)}"
    if overlays:
        subtitle += "; slices: propagated reference myocardium yellow, frame's own myocardium cyan area"
    else:
        subtitle += "; no overlay slices (frame images not given)"
    if data.notes:
        subtitle += "\n" + "; ".join(data.notes)
    figure.suptitle(f"{title}\n{subtitle}", fontsize=11)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    return path
