"""The MRML bridge: the inputs of a run exported from Slicer nodes, and a run folder imported as Slicer nodes.

The only Lib file that imports ``slicer`` (MRML classes only, no Qt, no ``slicer.app``), so it runs inside
Slicer and on the PyPI ``slicer-core`` wheel alike.

:func:`import_run` creates, for the finished frames of a run folder (:mod:`..cycle.run_folder`):

- the transform sequence that **moves reference-frame content to each frame**: per frame a grid transform whose
  *ToParent* is phi (reference -> frame t), read from ``transforms/frame_NNN.h5`` by Slicer's own transform
  storage node and inverted (the storage node stores an ITK displacement field as *FromParent*). A segmentation,
  markups or model of the reference frame placed under its proxy node (:func:`move_with_motion`) moves with the
  heart as the browser plays; hardened under frame t's node it lands where the worker's outputs say;
- optionally (``stabilising=True``) the sequence that **stabilises each frame onto the reference**: the same
  grids as read (*FromParent* = phi), so frame t placed under it is resampled into the reference frame exactly as
  ``sitk.Resample(frame_t, reference, transform)`` does;
- a segmentation sequence: the reference myocardium propagated to each frame (``labels/frame_NNN.nii.gz``);
- a markups sequence (``landmarks/frame_NNN.mrk.json``) and one curve per landmark along its trajectory;
- a table of ``metrics.csv`` (plus the phase in % of the cycle) and plot charts of Dice, HD95 and TRE per phase;
- when the run measured the cardiac function: tables of ``function.csv`` and ``strain_segments.csv``, charts of
  the LV and myocardial volume and of the global strain (GLS, GCS, GRS) and twist per phase, a scalar-volume
  sequence of the circumferential strain per AHA segment painted on the moving myocardium (each voxel of
  ``segments/frame_NNN.nii.gz`` takes its segment's strain in that frame; NaN, shown transparent, outside the
  myocardium), and the bull's-eye of the peak strain per segment: a table and a model (:func:`bullseye_polydata`)
  whose cells carry the peak radial, circumferential and longitudinal strain, placed beyond the apex facing along
  the long axis, so seen from the apex it is the usual polar map. Strain is coloured blue (shortening) - white -
  red (lengthening) on a range symmetric about 0 (:func:`strain_colour_table`);
- all sequences synchronised in one sequence browser: the CT's own browser when given, else a new one.

:func:`load_run_folder` opens any run folder (from the command line, a cohort or a GPU server) with the CT it was made
from. :func:`export_inputs` writes what the worker reads: the frames of a CT volume sequence, label maps made from
segmentations (LV myocardium = 1, other heart segments = 2) and the reference landmarks, each with Slicer's own
storage nodes (files in LPS, as ITK expects), and returns them as a run request's input files.

Both transform sequences interpolate their grids linearly, as ITK does (Slicer reads grids as cubic, and a saved
scene does not keep the mode: :func:`restore_linear_interpolation` sets it again after a scene is loaded).
Sequence index values are the CT sequence's index values of the frames when a CT browser is given, else the
frame numbers. Called again with the returned :class:`RunNodes`, :func:`import_run` adds the frames finished
since (a run still in progress) and refreshes the table, charts and curves.
Points in MRML are RAS; the run folder is LPS.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import slicer

from ..core.aha_segments import EXTENTS, SEGMENT_NAMES, SEGMENTS
from ..core.vocabulary import METRIC_COLUMNS, TRACKING_METRICS, InputError, metric, phase_pct
from ..core.volume import Volume
from ..cycle.request import InputFiles
from ..cycle.run_folder import RunFolder
from ..fileio.frame_sequence import read_frame_labels, read_frame_sequence
from ..fileio.landmarks import RAS_TO_LPS, Trajectories, read_trajectories_csv, write_trajectories_csv


@dataclass
class RunNodes:
    """The nodes :func:`import_run` made for one run folder."""

    run_dir: Path
    browser: object
    moving_transforms: object  # ToParent = phi: moves reference-frame content to each frame
    segmentations: object
    landmarks: object | None
    table: object
    charts: dict = field(default_factory=dict)
    curves: list = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    index_values: list[str] = field(default_factory=list)  # sequence index value of each frame
    stabilising_transforms: object | None = None  # FromParent = phi: stabilises each frame onto the reference
    function: dict = field(default_factory=dict)  # "table", "segments" (table nodes) and the function's charts


def scene_or_default(scene):
    """``scene``, or Slicer's main scene when None."""
    return scene if scene is not None else slicer.mrmlScene


def sequences_logic():
    """The Sequences module's logic (proxy-node updates of a browser)."""
    return slicer.modules.sequences.logic()


def _storage_io(scene, node, storage_class, path: Path, write: bool = False) -> Path:
    """Read ``path`` into ``node`` (or write ``node`` to ``path``) with a temporary storage node of
    ``storage_class``: Slicer's own readers and writers (files in LPS)."""
    storage = storage_class()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    try:
        if not (storage.WriteData(node) if write else storage.ReadData(node)):
            raise InputError(f"Slicer could not {'write' if write else 'read'} {path}")
    finally:
        scene.RemoveNode(storage)
    return Path(path)


def new_sequence(scene, name: str, index_name: str, index_unit: str, numeric: bool):
    """An empty sequence node in ``scene`` with the given index name, unit and type (numeric or text)."""
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName(index_name)
    sequence.SetIndexUnit(index_unit)
    sequence.SetIndexType(sequence.NumericIndex if numeric else sequence.TextIndex)
    return sequence


def _index_values(browser, frames: int) -> tuple[list[str], str, str, bool]:
    """Index value per frame and the index name/unit: the CT browser's master sequence's, else frame numbers."""
    if browser is None:
        return [str(t) for t in range(frames)], "frame", "", True
    master = browser.GetMasterSequenceNode()
    if master is None or master.GetNumberOfDataNodes() != frames:
        count = 0 if master is None else master.GetNumberOfDataNodes()
        raise InputError(f"the sequence browser's master sequence has {count} items, the run {frames} frames")
    values = [master.GetNthIndexValue(t) for t in range(frames)]
    return values, master.GetIndexName(), master.GetIndexUnit(), master.GetIndexType() == master.NumericIndex


def import_segment(segmentation, labelmap, segment_name: str, source: str) -> None:
    """Add the non-zero voxels of ``labelmap`` (a label map volume node) to ``segmentation`` as one segment named
    ``segment_name``; ValueError naming ``source`` when Slicer cannot import it or it holds no voxel."""
    before = segmentation.GetSegmentation().GetNumberOfSegments()
    if not slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, segmentation):
        raise InputError(f"Slicer could not import {source} as a segmentation")
    if segmentation.GetSegmentation().GetNumberOfSegments() == before:
        raise InputError(f"{source} holds no voxel of {segment_name}")
    segmentation.GetSegmentation().GetNthSegment(before).SetName(segment_name)


# --- grid transforms ---------------------------------------------------------------------------------------
MOVING_NAME = "moves reference to frame"
STABILISING_NAME = "stabilises frame onto reference"
LINEAR_GRIDS_ATTRIBUTE = "INRCardiacRegistration.GridInterpolation"  # on result sequences: "linear"


def _set_linear(transform_node) -> bool:
    """Linear interpolation for the stored grid(s) of ``transform_node``; False when it holds no grid."""
    found = False
    for stored in (transform_node.GetTransformToParent(), transform_node.GetTransformFromParent()):
        if stored is not None and stored.IsA("vtkGridTransform") and not stored.GetInverseFlag():
            stored.SetInterpolationModeToLinear()
            found = True
    return found


def restore_linear_interpolation(scene=None) -> int:
    """Set linear grid interpolation again on the transforms of this Lib's result sequences (marked with
    :data:`LINEAR_GRIDS_ATTRIBUTE`) and on their browsers' proxy nodes. Slicer stores no interpolation mode in
    ``.h5`` files and reads every grid as cubic; the module calls this after each scene import. Returns the
    number of transform nodes set."""
    scene = scene_or_default(scene)
    marked = []
    for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode")):
        sequence = scene.GetNthNodeByClass(n, "vtkMRMLSequenceNode")
        if sequence.GetAttribute(LINEAR_GRIDS_ATTRIBUTE) == "linear":
            marked.append(sequence)
    count = 0
    for sequence in marked:
        for item in range(sequence.GetNumberOfDataNodes()):
            count += _set_linear(sequence.GetNthDataNode(item))
    for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        browser = scene.GetNthNodeByClass(n, "vtkMRMLSequenceBrowserNode")
        for sequence in marked:
            proxy = browser.GetProxyNode(sequence) if browser.IsSynchronizedSequenceNode(sequence.GetID(), True) \
                else None
            if proxy is not None and proxy.IsA("vtkMRMLTransformNode"):
                count += _set_linear(proxy)
    return count


def _add_transforms(scene, nodes: RunNodes, run: RunFolder, frame: int, value: str) -> None:
    transform = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", f"frame {frame}")
    _storage_io(scene, transform, slicer.vtkMRMLTransformStorageNode, run.transform_path(frame))
    # Slicer reads grids with cubic interpolation; the worker, ITK and SimpleITK interpolate the field linearly
    # (cubic moved the tiny phantom's landmarks up to 0.08 mm away from the worker's trajectories, linear 2e-5 mm)
    _set_linear(transform)
    if nodes.stabilising_transforms is not None:
        nodes.stabilising_transforms.SetDataNodeAtValue(transform, value)  # as read: FromParent = phi
    transform.Inverse()  # ToParent = phi, the same grid (exact, no numerical inversion)
    nodes.moving_transforms.SetDataNodeAtValue(transform, value)
    scene.RemoveNode(transform)


def move_with_motion(node, nodes: RunNodes) -> None:
    """Put ``node`` (a segmentation, markups, model or volume on the *reference* frame) under the moving
    transform's proxy node, so that it follows the heart as the result browser plays; harden the transform to
    keep one frame's shape. Replaces the node's parent transform."""
    if node is None or not node.IsA("vtkMRMLTransformableNode"):
        raise InputError("choose a segmentation, markups, model or volume to move with the motion")
    browser = nodes.browser
    proxy = browser.GetProxyNode(nodes.moving_transforms)
    if proxy is None:
        sequences_logic().UpdateProxyNodesFromSequences(browser)
        proxy = browser.GetProxyNode(nodes.moving_transforms)
    if proxy is None:
        raise InputError("the result browser has no moving transform yet: wait for the first finished frame")
    node.SetAndObserveTransformNodeID(proxy.GetID())


def _add_frame(scene, nodes: RunNodes, run: RunFolder, frame: int, value: str) -> None:
    _add_transforms(scene, nodes, run, frame, value)

    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"myocardium frame {frame}")
    _storage_io(scene, labelmap, slicer.vtkMRMLVolumeArchetypeStorageNode, run.label_path(frame))
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"myocardium frame {frame}")
    import_segment(segmentation, labelmap, "LV myocardium", str(run.label_path(frame)))
    nodes.segmentations.SetDataNodeAtValue(segmentation, value)
    scene.RemoveNode(segmentation)
    scene.RemoveNode(labelmap)

    if nodes.landmarks is not None and run.landmarks_path(frame).is_file():
        markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"landmarks frame {frame}")
        _storage_io(scene, markups, slicer.vtkMRMLMarkupsJsonStorageNode, run.landmarks_path(frame))
        nodes.landmarks.SetDataNodeAtValue(markups, value)
        scene.RemoveNode(markups)


def _fill_table(table_node, columns: list[str], kinds: dict[str, str], rows: list[dict]) -> None:
    """Give ``table_node`` a new vtkTable: one column per name, of kind ``kinds[name]`` ("d" integer, "s" text,
    else a double), one row per dict (a missing or empty value is NaN in a double column)."""
    import vtk

    table = vtk.vtkTable()
    for name in columns:
        kind = kinds.get(name, "f")
        array = {"d": vtk.vtkIntArray, "s": vtk.vtkStringArray}.get(kind, vtk.vtkDoubleArray)()
        array.SetName(name)
        for row in rows:
            value = row.get(name)
            if kind not in ("d", "s"):
                value = math.nan if value in (None, "") else float(value)
            array.InsertNextValue(int(value) if kind == "d" else value)
        table.AddColumn(array)
    table_node.SetAndObserveTable(table)


def _chart(scene, table_node, title: str, y_title: str, series: list[tuple[str, str]]):
    """A plot chart of ``series`` (column, name) of ``table_node`` against its ``phase_pct`` column."""
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", title)
    for column, name in series:
        plot = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", name)
        plot.SetAndObserveTableNodeID(table_node.GetID())
        plot.SetXColumnName("phase_pct")
        plot.SetYColumnName(column)
        plot.SetPlotType(plot.PlotTypeScatter)
        plot.SetMarkerStyle(plot.MarkerStyleCircle)
        chart.AddAndObservePlotSeriesNodeID(plot.GetID())
    chart.SetTitle(title)
    chart.SetXAxisTitle("phase (% of the cycle)")
    chart.SetYAxisTitle(y_title)
    return chart


def _update_table(scene, nodes: RunNodes, run: RunFolder, frames: int) -> None:
    """The metrics table (one row per finished frame, ``phase_pct`` first) and the Dice, surface distance (HD95 and
    mean on sub-voxel surfaces, voxel HD95) and TRE charts."""
    rows = [{**row, "phase_pct": phase_pct(row["frame"], frames)} for row in run.read_metrics()]
    columns = ["frame", "phase_pct", *METRIC_COLUMNS[1:]]
    kinds = {name: metric(name).form[-1] for name in METRIC_COLUMNS[1:]}
    _fill_table(nodes.table, columns, {**kinds, "frame": "d", "phase_pct": "f"}, rows)
    for name in TRACKING_METRICS:
        if not any(math.isfinite(row[name]) for row in rows) or name in nodes.charts:
            continue
        entry = metric(name)
        title, y_title, series = f"{entry.title} per phase", entry.label, [(name, f"{entry.title} per phase")]
        if name == "hd95_mm" and any(math.isfinite(row.get("hd95_subvoxel_mm", math.nan)) for row in rows):
            # the voxel HD95 moves in steps of the spacing: the sub-voxel distances first (core/surface_distance.py)
            title, y_title = "Surface distance per phase", "distance (mm)"
            series = [("hd95_subvoxel_mm", metric("hd95_subvoxel_mm").title),
                      ("mean_surface_mm", metric("mean_surface_mm").title), (name, f"{entry.title} (voxel contours)")]
        nodes.charts[name] = _chart(scene, nodes.table, title, y_title, series)


FUNCTION_CHARTS = {
    "volumes": ("LV volumes per phase", "volume (mL)", [("lv_volume_ml", "LV cavity volume"),
                                                        ("myocardium_volume_ml", "myocardial volume")]),
    "strain": ("Global strain per phase", "Green-Lagrange strain (%)", [("gls_pct", "GLS"), ("gcs_pct", "GCS"),
                                                                         ("grs_pct", "GRS")]),
    "twist": ("Twist per phase", "apical - basal rotation (degrees)", [("twist_deg", "twist")]),
}


def _csv_rows(path: Path) -> tuple[list[dict], list[str]]:
    """The rows (dicts of text) and the column names of a CSV file of the run folder."""
    with open(path, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        return list(reader), list(reader.fieldnames or [])


def _update_function(scene, nodes: RunNodes, run: RunFolder, prefix: str) -> None:
    """Tables of ``function.csv`` and ``strain_segments.csv`` and the volume, strain and twist charts, when the
    run folder has them (refreshed on every call)."""
    if not run.function_csv.is_file():
        return
    rows, columns = _csv_rows(run.function_csv)
    if "table" not in nodes.function:
        nodes.function["table"] = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{prefix} function")
    _fill_table(nodes.function["table"], columns, {"frame": "d"}, rows)
    segment_rows = []
    if run.strain_segments_csv.is_file():
        segment_rows, segment_columns = _csv_rows(run.strain_segments_csv)
        if "segments" not in nodes.function:
            nodes.function["segments"] = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{prefix} strain per segment")
        _fill_table(nodes.function["segments"], segment_columns, {"frame": "d", "segment": "d"}, segment_rows)
    for key, (title, y_title, series) in FUNCTION_CHARTS.items():
        present = [(column, name) for column, name in series if column in columns]
        if present and key not in nodes.function:
            nodes.function[key] = _chart(scene, nodes.function["table"], f"{prefix} {title}", y_title, present)
    if "strain_map" not in nodes.function and run.strain_segments_csv.is_file():
        _strain_map_sequence(scene, nodes, run, segment_rows, prefix)
    if run.function_json.is_file():
        _update_bullseye(scene, nodes, json.loads(run.function_json.read_text(encoding="utf-8")), prefix)


STRAIN_COLOURS_NAME = "INR strain (blue-white-red)"
PEAK_COLUMNS = {"radial": "peak_radial_pct", "circumferential": "peak_circumferential_pct",
                "longitudinal": "peak_longitudinal_pct"}
BULLSEYE_SHOWN = "circumferential"  # the model's active array at import (all three are on it)
BULLSEYE_RING_MM, BULLSEYE_GAP_MM = 10.0, 20.0  # ring width; distance of the bull's-eye beyond the apex


def strain_colour_table(scene):
    """The scene's diverging colour table for strain (256 colours, made once): blue at the low end, white in the
    middle, red at the high end. Used over a range symmetric about 0, white is no strain."""
    table = scene.GetFirstNodeByName(STRAIN_COLOURS_NAME)
    if table is not None:
        return table
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", STRAIN_COLOURS_NAME)
    table.SetTypeToUser()
    table.SetNumberOfColors(256)
    for entry in range(256):
        t = entry / 255.0
        table.SetColor(entry, min(1.0, 2.0 * t), 1.0 - abs(2.0 * t - 1.0), min(1.0, 2.0 * (1.0 - t)), 1.0)
    return table


def _strain_limit(values) -> float:
    """Half-width of a colour range symmetric about 0 that holds every finite value (1 when none is)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return max(finite, default=0.0) or 1.0


def bullseye_polydata(summary: dict):
    """The bull's-eye of ``function.json``'s peak strain per segment as vtkPolyData in RAS mm, or None when the
    run has no strain (or predates the LV frame in ``details``). Ring r of :mod:`..core.aha_segments` spans radii
    ``r * BULLSEYE_RING_MM`` to ``(r + 1) * BULLSEYE_RING_MM`` in the plane ``BULLSEYE_GAP_MM`` beyond the apex,
    normal to the long axis; a segment's cells lie towards its anatomical angle about the axis (so the tiles sit
    over their segments seen along the axis). Cell arrays: ``segment`` and :data:`PEAK_COLUMNS` (NaN: no value)."""
    import vtk

    details, peaks = summary.get("details") or {}, summary.get("peak_segment_strain_pct") or {}
    keys = ("apex_lps_mm", "long_axis_lps", "anterior_insertion_lps", "septal_sense")
    if not peaks or any(details.get(key) is None for key in keys):
        return None
    axis = np.asarray(details["long_axis_lps"], dtype=float)  # apex -> base; both written rounded: orthonormalise
    axis /= np.linalg.norm(axis)
    insertion = np.asarray(details["anterior_insertion_lps"], dtype=float)
    insertion -= (insertion @ axis) * axis
    insertion /= np.linalg.norm(insertion)
    side = float(details["septal_sense"]) * np.cross(axis, insertion)
    centre = np.asarray(details["apex_lps_mm"], dtype=float) - BULLSEYE_GAP_MM * axis

    def at(radius_mm: float, angle_deg: float) -> np.ndarray:
        angle = math.radians(angle_deg)
        return (centre + radius_mm * (math.cos(angle) * insertion + math.sin(angle) * side)) * RAS_TO_LPS

    points, cells = vtk.vtkPoints(), vtk.vtkCellArray()
    arrays = {name: vtk.vtkDoubleArray() for name in PEAK_COLUMNS.values()}
    segment_ids = vtk.vtkIntArray()
    segment_ids.SetName("segment")
    for name, array in arrays.items():
        array.SetName(name)
    for segment in SEGMENTS:
        extent, values = EXTENTS[segment], peaks.get(str(segment)) or {}
        steps = max(2, math.ceil(extent.width_deg / 5.0))
        inner, outer = extent.ring * BULLSEYE_RING_MM, (extent.ring + 1) * BULLSEYE_RING_MM
        for step in range(steps):
            angles = [extent.start_deg + extent.width_deg * (step + k) / steps for k in (0, 1)]
            corners = [at(outer, angles[0]), at(outer, angles[1])]
            corners += [at(inner, angles[1]), at(inner, angles[0])] if inner > 0.0 else [at(0.0, 0.0)]
            ids = [points.InsertNextPoint(*corner) for corner in corners]
            cells.InsertNextCell(len(ids), ids)
            segment_ids.InsertNextValue(segment)
            for kind, name in PEAK_COLUMNS.items():
                value = values.get(kind)
                arrays[name].InsertNextValue(math.nan if value is None else float(value))
    polydata = vtk.vtkPolyData()
    polydata.SetPoints(points)
    polydata.SetPolys(cells)
    for array in (segment_ids, *arrays.values()):
        polydata.GetCellData().AddArray(array)
    return polydata


def _update_bullseye(scene, nodes: RunNodes, summary: dict, prefix: str) -> None:
    """The peak-strain-per-segment table and the bull's-eye model (refreshed on every call)."""
    import vtk

    peaks = summary.get("peak_segment_strain_pct") or {}
    if not peaks:
        return
    rows = [{"segment": segment, "name": SEGMENT_NAMES[segment],
             **{name: (peaks.get(str(segment)) or {}).get(kind) for kind, name in PEAK_COLUMNS.items()}}
            for segment in SEGMENTS]
    if "peaks" not in nodes.function:
        nodes.function["peaks"] = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{prefix} peak strain per segment")
    _fill_table(nodes.function["peaks"], ["segment", "name", *PEAK_COLUMNS.values()], {"segment": "d", "name": "s"},
                rows)
    polydata = bullseye_polydata(summary)
    if polydata is None:
        return
    model = nodes.function.get("bullseye")
    if model is None:
        model = nodes.function["bullseye"] = scene.AddNewNodeByClass("vtkMRMLModelNode", f"{prefix} bull's-eye")
        model.CreateDefaultDisplayNodes()
    model.SetAndObservePolyData(polydata)
    display = model.GetDisplayNode()
    limit = _strain_limit(row[PEAK_COLUMNS[BULLSEYE_SHOWN]] for row in rows)
    display.SetActiveAttributeLocation(vtk.vtkAssignAttribute.CELL_DATA)
    display.SetActiveScalarName(PEAK_COLUMNS[BULLSEYE_SHOWN])
    display.SetAndObserveColorNodeID(strain_colour_table(scene).GetID())
    display.SetScalarRangeFlag(display.UseManualScalarRange)
    display.SetScalarRange(-limit, limit)
    display.SetScalarVisibility(True)
    display.SetBackfaceCulling(False)


STRAIN_MAP_COLUMN = "circumferential_pct"


def _strain_map_sequence(scene, nodes: RunNodes, run: RunFolder, segment_rows: list[dict], prefix: str) -> None:
    """The circumferential strain (%) of each voxel's AHA segment in each frame, on the frame's carried segments, as
    a scalar-volume sequence synchronised to the browser (made once, when the function is there)."""
    strain = {(int(r["frame"]), int(r["segment"])): float(r[STRAIN_MAP_COLUMN] or "nan") for r in segment_rows}
    frames = [t for t in nodes.frames if run.segments_path(t).is_file()]
    if not frames:
        return
    master = nodes.moving_transforms
    sequence = new_sequence(scene, f"{prefix} circumferential strain per segment (%)", master.GetIndexName(),
                            master.GetIndexUnit(), master.GetIndexType() == master.NumericIndex)
    for t in frames:
        volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"circumferential strain frame {t}")
        _storage_io(scene, volume, slicer.vtkMRMLVolumeArchetypeStorageNode, run.segments_path(t))
        segments = slicer.util.arrayFromVolume(volume).astype(np.int64)
        lookup = np.full(max(18, int(segments.max()) + 1), np.nan, dtype=np.float32)
        for segment in range(1, len(lookup)):
            lookup[segment] = strain.get((t, segment), math.nan)
        slicer.util.updateVolumeFromArray(volume, lookup[segments])
        sequence.SetDataNodeAtValue(volume, nodes.index_values[t])
        scene.RemoveNode(volume)
    nodes.function["strain_map"] = sequence
    sequence.SetAttribute(STRAIN_LIMIT_ATTRIBUTE, f"{_strain_limit(strain.values()):.6g}")
    if nodes.browser is not None:
        nodes.browser.AddSynchronizedSequenceNodeID(sequence.GetID())


STRAIN_LIMIT_ATTRIBUTE = "INRCardiacRegistration.StrainLimit"  # half-width of the strain map's colour range (%)


def _show_strain_map(scene, nodes: RunNodes) -> None:
    """Colour the strain map's proxy volume: blue-white-red over a range symmetric about 0, NaN (outside the
    myocardium, segments without strain) transparent."""
    sequence = nodes.function.get("strain_map")
    proxy = None if sequence is None or nodes.browser is None else nodes.browser.GetProxyNode(sequence)
    if proxy is None:
        return
    if proxy.GetDisplayNode() is None:
        proxy.CreateDefaultDisplayNodes()
    display = proxy.GetDisplayNode()
    limit = float(sequence.GetAttribute(STRAIN_LIMIT_ATTRIBUTE) or 1.0)
    display.SetAndObserveColorNodeID(strain_colour_table(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevel(2.0 * limit, 0.0)
    display.AutoThresholdOff()
    display.SetThreshold(-1e6, 1e6)  # every finite strain; NaN fails the test, so it is transparent
    display.ApplyThresholdOn()


def _update_curves(scene, nodes: RunNodes, run: RunFolder) -> None:
    """One open curve per landmark through its positions in the finished frames (frame order, RAS)."""
    if nodes.landmarks is None or not run.trajectories_csv.is_file():
        return
    trajectories = read_trajectories_csv(run.trajectories_csv)
    if not nodes.curves:
        for label in trajectories.labels:
            curve = scene.AddNewNodeByClass("vtkMRMLMarkupsCurveNode", f"{label} trajectory")
            curve.SetCurveTypeToLinear()
            nodes.curves.append(curve)
    for n, curve in enumerate(nodes.curves):
        curve.RemoveAllControlPoints()
        for t, frame in enumerate(trajectories.frames):
            ras = trajectories.points_lps[t, n] * RAS_TO_LPS
            curve.AddControlPoint(float(ras[0]), float(ras[1]), float(ras[2]), f"{frame}")


def import_run(run_dir: str | Path, scene=None, browser=None, nodes: RunNodes | None = None,
               name: str | None = None, stabilising: bool = False) -> RunNodes:
    """Import (or, with ``nodes``, update) the finished frames of the run folder ``run_dir`` as MRML nodes.

    ``browser``: the CT's sequence browser, to synchronise the results with (its master sequence must have one
    item per frame); without it a new browser is made. ``name`` prefixes the node names (default: the run
    folder's name). ``stabilising``: also make the sequence that stabilises each frame onto the reference (a
    second copy of every grid). Returns the nodes; :attr:`RunNodes.frames` lists the frames imported so far.
    """
    scene = scene_or_default(scene)
    run = RunFolder(run_dir)
    info = run.read_run_info()
    frames = int(info["frames"])
    prefix = name or run.root.name
    if nodes is None:
        values, index_name, index_unit, numeric = _index_values(browser, frames)
        has_landmarks = info.get("inputs", {}).get("landmarks") is not None
        def make(what: str):
            return new_sequence(scene, f"{prefix} {what}", index_name, index_unit, numeric)

        nodes = RunNodes(
            run_dir=run.root,
            browser=browser,
            moving_transforms=make(MOVING_NAME),
            segmentations=make("myocardium"),
            landmarks=make("landmarks") if has_landmarks else None,
            table=scene.AddNewNodeByClass("vtkMRMLTableNode", f"{prefix} metrics"),
            index_values=values,
            stabilising_transforms=make(STABILISING_NAME) if stabilising else None,
        )
        for grids in (nodes.moving_transforms, nodes.stabilising_transforms):
            if grids is not None:
                grids.SetAttribute(LINEAR_GRIDS_ATTRIBUTE, "linear")
        if nodes.browser is None:
            nodes.browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{prefix} browser")
            nodes.browser.SetAndObserveMasterSequenceNodeID(nodes.moving_transforms.GetID())
        for sequence in (nodes.moving_transforms, nodes.stabilising_transforms, nodes.segmentations,
                         nodes.landmarks):
            if sequence is not None and sequence is not nodes.browser.GetMasterSequenceNode():
                nodes.browser.AddSynchronizedSequenceNodeID(sequence.GetID())
    for frame in sorted(run.finished_records(frames)):
        if frame not in nodes.frames:
            _add_frame(scene, nodes, run, frame, nodes.index_values[frame])
            nodes.frames.append(frame)
    nodes.frames.sort()
    _update_table(scene, nodes, run, frames)
    _update_curves(scene, nodes, run)
    _update_function(scene, nodes, run, prefix)
    sequences_logic().UpdateProxyNodesFromSequences(nodes.browser)
    _show_strain_map(scene, nodes)
    return nodes


# --- export -----------------------------------------------------------------------------------------------
MYOCARDIUM_VALUE, HEART_VALUE, BLOOD_POOL_VALUE = 1, 2, 3


def _segment_id(segmentation, name: str, frame: int) -> str:
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(name)
    if not segment_id:
        present = [segmentation.GetSegmentation().GetNthSegment(n).GetName()
                   for n in range(segmentation.GetSegmentation().GetNumberOfSegments())]
        raise InputError(f"the segmentation of frame {frame} has no segment {name!r} (segments: {present})")
    return segment_id


def export_inputs(ct_sequence, out_dir: str | Path, *, segmentations=None, myocardium_segment: str = "",
                  heart_segments: list[str] | None = None, blood_pool_segment: str = "", landmarks=None,
                  annotated_landmarks=None, evaluation_segmentations=None, scene=None) -> InputFiles:
    """Write the inputs of a run from MRML nodes into ``out_dir`` and return them as a run request's input files.

    Args:
        ct_sequence: a ``vtkMRMLSequenceNode`` of scalar volumes, one per frame.
        segmentations: per-frame segmentations: a sequence node with one segmentation per frame, or a dict
            ``{frame: vtkMRMLSegmentationNode}`` for only some frames (at least the reference frame).
        myocardium_segment: name of the LV-myocardium segment (value 1 in the written label maps).
        heart_segments: names of further segments that make up the heart mask for sampling (value 2); the
            mask is then labels 1 and 2. Frames whose segmentation lacks them get only the myocardium (the worker
            takes the heart mask from the reference frame alone); each must occur in some frame.
        blood_pool_segment: name of the LV-cavity segment (value 3; part of the heart mask when heart segments are
            given): the run then measures the cardiac function and treats the cavity's Jacobian penalty as its
            own (``blood_pool_label``).
        landmarks: a ``vtkMRMLMarkupsFiducialNode`` placed on the reference frame.
        annotated_landmarks: expert positions of (some of) those landmarks in other frames, for the TRE: a
            markups sequence with one item per frame, or ``{frame: markups node}``; the landmarks present in every
            given frame are used (matched by label).
        evaluation_segmentations: expert segmentations of other frames (as ``segmentations``), used only to score
            the run (Dice, HD95 of their ``myocardium_segment``; never in the loss or the sampling mask).

    Returns the :class:`~..cycle.request.InputFiles` of the written files (frames, per-frame label maps with the
    myocardium = 1, heart = 2 and LV blood pool = 3, evaluation label maps with the myocardium = 1, landmarks),
    ready for a :class:`~..cycle.request.RunRequest`.
    """
    scene = scene_or_default(scene)
    out = Path(out_dir)
    frames = ct_sequence.GetNumberOfDataNodes()
    if frames < 2:
        raise InputError(f"the CT sequence has {frames} frame(s); a cycle needs at least 2")
    volumes = [ct_sequence.GetNthDataNode(t) for t in range(frames)]
    if any(v is None or not v.IsA("vtkMRMLScalarVolumeNode") for v in volumes):
        raise InputError("every item of the CT sequence must be a scalar volume")
    for t, volume in enumerate(volumes):
        _storage_io(scene, volume, slicer.vtkMRMLVolumeArchetypeStorageNode, out / "frames" / f"frame_{t:03d}.nii.gz",
                    write=True)
    by_frame = _nodes_by_frame(segmentations, frames, "segmentation")
    evaluation = _nodes_by_frame(evaluation_segmentations, frames, "evaluation segmentation")
    if (by_frame or evaluation) and not myocardium_segment:
        raise InputError("name the LV-myocardium segment (myocardium_segment)")
    label_specs = []
    heart_found: set[str] = set()
    pool_found = False
    for t, segmentation in sorted(by_frame.items()):
        reference = volumes[t]
        labels = None
        present = [n for n in heart_segments or [] if segmentation.GetSegmentation().GetSegmentIdBySegmentName(n)]
        heart_found.update(present)
        pool = [(blood_pool_segment, BLOOD_POOL_VALUE)] if blood_pool_segment and \
            segmentation.GetSegmentation().GetSegmentIdBySegmentName(blood_pool_segment) else []
        pool_found = pool_found or bool(pool)
        for name, value in [*((n, HEART_VALUE) for n in present if n != blood_pool_segment), *pool,
                            (myocardium_segment, MYOCARDIUM_VALUE)]:
            mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, _segment_id(segmentation, name, t),
                                                              reference) > 0
            labels = np.zeros(mask.shape, np.uint8) if labels is None else labels
            labels[mask] = value
        label_specs.append(f"{t}={_write_label_map(scene, labels, reference, out / 'labels', t)}")
    evaluation_specs = []
    for t, segmentation in sorted(evaluation.items()):
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(
            segmentation, _segment_id(segmentation, myocardium_segment, t), volumes[t]) > 0
        labels = np.where(mask, MYOCARDIUM_VALUE, 0).astype(np.uint8)
        evaluation_specs.append(f"{t}={_write_label_map(scene, labels, volumes[t], out / 'evaluation_labels', t)}")
    missing_heart = [n for n in heart_segments or [] if n not in heart_found]
    if missing_heart:
        raise InputError(f"no segmentation has the heart segment(s) {missing_heart}")
    if blood_pool_segment and not pool_found:
        raise InputError(f"no segmentation has the LV blood-pool segment {blood_pool_segment!r}")
    landmark_path = None
    if landmarks is not None:
        if landmarks.GetNumberOfControlPoints() == 0:
            raise InputError(f"the landmarks node {landmarks.GetName()!r} has no points")
        landmark_path = _storage_io(scene, landmarks, slicer.vtkMRMLMarkupsJsonStorageNode,
                                    out / "landmarks_reference.mrk.json", write=True)
    annotated_path = None
    if annotated_landmarks:
        if landmark_path is None:
            raise InputError("annotated landmark positions need the reference landmarks")
        annotated_path = write_trajectories_csv(out / "landmarks_annotated.csv",
                                                _annotated_trajectories(annotated_landmarks, frames))
    return InputFiles(image=out / "frames", labels=tuple(label_specs), evaluation_labels=tuple(evaluation_specs),
                      myocardium_label=MYOCARDIUM_VALUE if label_specs or evaluation_specs else None,
                      heart_label=((MYOCARDIUM_VALUE, HEART_VALUE) + ((BLOOD_POOL_VALUE,) if pool_found else ())
                                   if label_specs and heart_segments else ()),
                      blood_pool_label=BLOOD_POOL_VALUE if pool_found else None,
                      landmarks=landmark_path, landmarks_annotated=annotated_path)


def _write_label_map(scene, labels: np.ndarray, reference, folder: Path, frame: int) -> Path:
    """``labels`` (k, j, i) on the grid of the volume node ``reference`` written as ``folder/frame_NNN.nii.gz``
    through a temporary label-map node (Slicer's own writer: its RAS geometry becomes the file's LPS)."""
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"labels frame {frame}")
    try:
        labelmap.CopyOrientation(reference)
        slicer.util.updateVolumeFromArray(labelmap, labels)
        return _storage_io(scene, labelmap, slicer.vtkMRMLVolumeArchetypeStorageNode,
                           folder / f"frame_{frame:03d}.nii.gz", write=True)
    finally:
        scene.RemoveNode(labelmap)


def _nodes_by_frame(nodes, frames: int, what: str) -> dict:
    """``{frame: node}`` from None, such a dict, or a sequence node with one item per frame; InputError naming
    ``what`` when a frame of the dict is outside the CT sequence's ``frames``."""
    if nodes is None:
        return {}
    if isinstance(nodes, dict):
        outside = sorted(t for t in nodes if not 0 <= t < frames)
        if outside:
            raise InputError(f"{what} given for frame {outside[0]}, but the CT sequence has frames 0..{frames - 1}")
        return dict(nodes)
    if nodes.GetNumberOfDataNodes() != frames:
        raise InputError(f"the {what} sequence has {nodes.GetNumberOfDataNodes()} items, the CT sequence {frames}")
    return {t: nodes.GetNthDataNode(t) for t in range(frames)}


def _annotated_trajectories(annotated, frames: int) -> Trajectories:
    """Trajectories (LPS) of the landmarks present in every annotated frame."""
    by_frame = _nodes_by_frame(annotated, frames, "annotated landmarks")
    points = {}
    for t, markups in sorted(by_frame.items()):
        if markups is None or markups.GetNumberOfControlPoints() == 0:
            continue
        points[t] = {markups.GetNthControlPointLabel(n): np.array(markups.GetNthControlPointPosition(n)) * RAS_TO_LPS
                     for n in range(markups.GetNumberOfControlPoints())}
    common = [label for label in next(iter(points.values()), {}) if all(label in p for p in points.values())]
    if not common:
        raise InputError("the annotated frames have no landmark label in common")
    frame_list = sorted(points)
    return Trajectories(tuple(frame_list), tuple(common),
                        np.array([[points[t][label] for label in common] for t in frame_list]))


# --- the scene's views ------------------------------------------------------------------------------------
VIEW_ORDER = ("Red", "Yellow", "Green")


def shown_sequence(scene=None):
    """The sequence whose proxy volume is the background of a slice view, or None: views shown in the current
    layout first (Red, Yellow, Green, then others), then hidden ones. MRML only, so layouts without a Red view
    (or without any slice view) are fine."""
    scene = scene_or_default(scene)
    mapped = {}
    for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        slice_node = scene.GetNthNodeByClass(n, "vtkMRMLSliceNode")
        mapped[slice_node.GetLayoutName()] = bool(slice_node.IsMappedInLayout())
    composites = [scene.GetNthNodeByClass(n, "vtkMRMLSliceCompositeNode")
                  for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]

    def preference(composite) -> tuple:
        name = composite.GetLayoutName() or ""
        return (not mapped.get(name, False), VIEW_ORDER.index(name) if name in VIEW_ORDER else len(VIEW_ORDER), name)

    for composite in sorted(composites, key=preference):
        volume = scene.GetNodeByID(composite.GetBackgroundVolumeID() or "")
        if volume is None:
            continue
        browser = sequences_logic().GetFirstBrowserNodeForProxyNode(volume)
        if browser is not None:
            return browser.GetSequenceNode(volume)
    return None


# --- loading files as a scene ---------------------------------------------------------------------------
@dataclass
class CycleNodes:
    """A cardiac cycle loaded from files (:func:`load_cycle_files`): all sequences in one browser."""

    ct: object
    browser: object
    segmentations: object | None = None
    landmarks: object | None = None


def browser_for_sequence(sequence, scene=None, create: bool = True):
    """The sequence browser that plays ``sequence`` (the first one found), or a new one when ``create``."""
    scene = scene_or_default(scene)
    for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        browser = scene.GetNthNodeByClass(n, "vtkMRMLSequenceBrowserNode")
        if browser.IsSynchronizedSequenceNode(sequence.GetID(), True):
            return browser
    if not create:
        return None
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{sequence.GetName()} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    sequences_logic().UpdateProxyNodesFromSequences(browser)
    return browser


def _set_geometry(node, volume: Volume) -> None:
    """IJK -> RAS of ``node`` from the LPS geometry of ``volume``."""
    import vtk

    geometry = volume.geometry
    flip = np.diag(RAS_TO_LPS)
    directions = flip @ np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    matrix = vtk.vtkMatrix4x4()
    for row in range(3):
        for column in range(3):
            matrix.SetElement(row, column, directions[row, column])
    node.SetIJKToRASDirectionMatrix(matrix)
    node.SetSpacing(*geometry.spacing)
    node.SetOrigin(*(np.asarray(geometry.origin) * RAS_TO_LPS))


def volume_node(scene, volume: Volume, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node holding ``volume`` (voxels copied, LPS geometry turned into Slicer's RAS)."""
    node = scene.AddNewNodeByClass(class_name, name)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array))
    _set_geometry(node, volume)
    return node


def load_cycle_files(image: str | Path, labels: str | Path | None = None, label_names: dict[int, str] | None = None,
                     landmarks: str | Path | None = None, scene=None, name: str = "CT") -> CycleNodes:
    """Load a cardiac cycle from files as Slicer nodes: the frames (any input ``inr-cardiac register`` reads: 4D
    NIfTI/NRRD, ``.seq.nrrd``, a folder of frames, DICOM) as a volume sequence, the label maps as a segmentation
    sequence (one segment per value of ``label_names``, e.g. ``{1: "LV myocardium"}``), the reference landmarks as a
    markups node; the sequences synchronised in one new browser."""
    scene = scene_or_default(scene)
    sequence = read_frame_sequence(image, name=name)
    ct = new_sequence(scene, name, "frame", "", True)
    for t, frame in enumerate(sequence.frames):
        node = volume_node(scene, frame, f"{name} frame {t}")
        ct.SetDataNodeAtValue(node, str(t))
        scene.RemoveNode(node)
    browser = browser_for_sequence(ct, scene)
    nodes = CycleNodes(ct=ct, browser=browser)
    if labels is not None:
        by_frame = read_frame_labels(str(labels), sequence)
        names = label_names or {1: "LV myocardium"}
        nodes.segmentations = new_sequence(scene, f"{name} segmentation", "frame", "", True)
        for t, label_volume in sorted(by_frame.items()):
            segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} segmentation frame {t}")
            for value, segment_name in names.items():
                mask = label_volume.with_array((np.asarray(label_volume.array) == value).astype(np.uint8))
                labelmap = volume_node(scene, mask, segment_name, "vtkMRMLLabelMapVolumeNode")
                try:
                    import_segment(segmentation, labelmap, segment_name,
                                   f"label value {value} of frame {t} of {labels}")
                finally:
                    scene.RemoveNode(labelmap)
            nodes.segmentations.SetDataNodeAtValue(segmentation, str(t))
            scene.RemoveNode(segmentation)
        browser.AddSynchronizedSequenceNodeID(nodes.segmentations.GetID())
    if landmarks is not None:
        nodes.landmarks = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{name} landmarks")
        _storage_io(scene, nodes.landmarks, slicer.vtkMRMLMarkupsJsonStorageNode, Path(landmarks))
    sequences_logic().UpdateProxyNodesFromSequences(browser)
    return nodes


def load_run_folder(run_dir: str | Path, scene=None, name: str | None = None) -> tuple[CycleNodes | None, RunNodes]:
    """Open any run folder in Slicer: one made by ``inr-cardiac register`` or ``demo``, a cohort or this module,
    finished or still running. The CT it was made from (``run.json``'s image) becomes a volume sequence and the
    run's finished frames are imported (:func:`import_run`) into that CT's browser; where the image is no longer at
    its recorded path, the results come in a browser of their own (the returned cycle is None). Call
    ``import_run(run_dir, scene, nodes=...)`` again to add frames finished since."""
    run = RunFolder(run_dir)
    if not run.exists():
        raise InputError(f"{run.root} is not a run folder: it has no run.json")
    prefix = name or run.root.name
    image = run.read_request().inputs.image
    cycle = None
    if image and Path(image).exists():
        cycle = load_cycle_files(image, scene=scene, name=f"{prefix} CT")
    nodes = import_run(run.root, scene, browser=None if cycle is None else cycle.browser, name=prefix)
    return cycle, nodes
