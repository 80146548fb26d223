"""The MRML bridge: a run folder as Slicer nodes. The only Lib file that imports ``slicer`` (MRML classes only,
no Qt, no ``slicer.app``), so it runs inside Slicer and on the PyPI ``slicer-core`` wheel alike.

:func:`import_run` creates, for the finished frames of a run folder (:mod:`run_folder`):

- a transform sequence: per frame a grid transform read from ``transforms/frame_NNN.h5`` by Slicer's own
  transform storage node, i.e. phi (reference -> frame t) stored as *FromParent* on the reference grid. Frame t
  placed under it is resampled into the reference frame exactly; the reference landmarks or segmentation go to
  frame t under the *inverted* node (ToParent = phi);
- a segmentation sequence: the reference myocardium propagated to each frame (``labels/frame_NNN.nii.gz``);
- a markups sequence (``landmarks/frame_NNN.mrk.json``) and one curve per landmark along its trajectory;
- a table of ``metrics.csv`` (plus the phase in % of the cycle) and plot charts of Dice, HD95 and TRE per phase;
- all sequences synchronised in one sequence browser: the CT's own browser when given, else a new one.

Sequence index values are the CT sequence's index values of the frames when a CT browser is given, else the
frame numbers. Called again with the returned :class:`RunNodes`, it adds the frames finished since (a run still
in progress) and refreshes the table, charts and curves. Points in MRML are RAS; the run folder is LPS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import slicer

from .landmarks_io import RAS_TO_LPS, read_trajectories_csv
from .run_folder import RunFolder

CHARTS = (("dice", "Dice", ""), ("hd95_mm", "HD95", "mm"), ("tre_mm", "TRE", "mm"))


@dataclass
class RunNodes:
    """The nodes :func:`import_run` made for one run folder."""

    run_dir: Path
    browser: object
    transforms: object
    segmentations: object
    landmarks: object | None
    table: object
    charts: dict = field(default_factory=dict)
    curves: list = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    index_values: list[str] = field(default_factory=list)  # sequence index value of each frame


def _scene(scene):
    return scene if scene is not None else slicer.mrmlScene


def _sequences_logic():
    return slicer.modules.sequences.logic()


def _read_into(scene, node, storage_class, path: Path, **settings):
    """Read ``path`` into ``node`` with a temporary storage node of ``storage_class`` (Slicer's own readers)."""
    storage = storage_class()
    for key, value in settings.items():
        getattr(storage, key)(value)
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    try:
        if not storage.ReadData(node):
            raise ValueError(f"Slicer could not read {path}")
    finally:
        scene.RemoveNode(storage)
    return node


def _new_sequence(scene, name: str, index_name: str, index_unit: str, numeric: bool):
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
        raise ValueError(f"the sequence browser's master sequence has {count} items, the run {frames} frames")
    values = [master.GetNthIndexValue(t) for t in range(frames)]
    return values, master.GetIndexName(), master.GetIndexUnit(), master.GetIndexType() == master.NumericIndex


def _add_frame(scene, nodes: RunNodes, run: RunFolder, frame: int, value: str) -> None:
    transform = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", f"phi frame {frame}")
    _read_into(scene, transform, slicer.vtkMRMLTransformStorageNode, run.transform_path(frame))
    nodes.transforms.SetDataNodeAtValue(transform, value)
    scene.RemoveNode(transform)

    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"myocardium frame {frame}")
    _read_into(scene, labelmap, slicer.vtkMRMLVolumeArchetypeStorageNode, run.label_path(frame))
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"myocardium frame {frame}")
    if not slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, segmentation):
        raise ValueError(f"Slicer could not import {run.label_path(frame)} as a segmentation")
    segmentation.GetSegmentation().GetNthSegment(0).SetName("LV myocardium")
    nodes.segmentations.SetDataNodeAtValue(segmentation, value)
    scene.RemoveNode(segmentation)
    scene.RemoveNode(labelmap)

    if nodes.landmarks is not None and run.landmarks_path(frame).is_file():
        markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"landmarks frame {frame}")
        _read_into(scene, markups, slicer.vtkMRMLMarkupsJsonStorageNode, run.landmarks_path(frame))
        nodes.landmarks.SetDataNodeAtValue(markups, value)
        scene.RemoveNode(markups)


def _update_table(scene, nodes: RunNodes, run: RunFolder, frames: int) -> None:
    """The metrics table (one row per finished frame, ``phase_pct`` first) and the Dice/HD95/TRE charts."""
    import vtk

    rows = run.read_metrics()
    table = vtk.vtkTable()
    columns = ["frame", "phase_pct", "dice", "hd95_mm", "tre_mm", "negative_jacobian_pct", "final_loss", "seconds",
               "iterations", "alpha_used"]
    for name in columns:
        array = vtk.vtkIntArray() if name in ("frame", "iterations") else vtk.vtkDoubleArray()
        array.SetName(name)
        for row in rows:
            array.InsertNextValue(100.0 * row["frame"] / frames if name == "phase_pct" else row[name])
        table.AddColumn(array)
    pair = vtk.vtkStringArray()
    pair.SetName("pair")
    for row in rows:
        pair.InsertNextValue(row["pair"])
    table.AddColumn(pair)
    nodes.table.SetAndObserveTable(table)
    for name, title, unit in CHARTS:
        if not any(math.isfinite(row[name]) for row in rows) or name in nodes.charts:
            continue
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{title} per phase")
        series.SetAndObserveTableNodeID(nodes.table.GetID())
        series.SetXColumnName("phase_pct")
        series.SetYColumnName(name)
        series.SetPlotType(series.PlotTypeScatter)
        series.SetMarkerStyle(series.MarkerStyleCircle)
        chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{title} per phase")
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
        chart.SetTitle(f"{title} per phase")
        chart.SetXAxisTitle("phase (% of the cycle)")
        chart.SetYAxisTitle(f"{title} ({unit})" if unit else title)
        nodes.charts[name] = chart


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
               name: str | None = None) -> RunNodes:
    """Import (or, with ``nodes``, update) the finished frames of the run folder ``run_dir`` as MRML nodes.

    ``browser``: the CT's sequence browser, to synchronise the results with (its master sequence must have one
    item per frame); without it a new browser is made. ``name`` prefixes the node names (default: the run
    folder's name). Returns the nodes; :attr:`RunNodes.frames` lists the frames imported so far.
    """
    scene = _scene(scene)
    run = RunFolder(run_dir)
    info = run.read_run_info()
    frames = int(info["frames"])
    prefix = name or run.root.name
    if nodes is None:
        values, index_name, index_unit, numeric = _index_values(browser, frames)
        has_landmarks = info.get("inputs", {}).get("landmarks") is not None
        nodes = RunNodes(
            run_dir=run.root,
            browser=browser,
            transforms=_new_sequence(scene, f"{prefix} transforms", index_name, index_unit, numeric),
            segmentations=_new_sequence(scene, f"{prefix} myocardium", index_name, index_unit, numeric),
            landmarks=(_new_sequence(scene, f"{prefix} landmarks", index_name, index_unit, numeric)
                       if has_landmarks else None),
            table=scene.AddNewNodeByClass("vtkMRMLTableNode", f"{prefix} metrics"),
            index_values=values,
        )
        if nodes.browser is None:
            nodes.browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{prefix} browser")
            nodes.browser.SetAndObserveMasterSequenceNodeID(nodes.transforms.GetID())
        for sequence in (nodes.transforms, nodes.segmentations, nodes.landmarks):
            if sequence is not None and sequence is not nodes.browser.GetMasterSequenceNode():
                nodes.browser.AddSynchronizedSequenceNodeID(sequence.GetID())
    for frame in sorted(run.finished_records(frames)):
        if frame not in nodes.frames:
            _add_frame(scene, nodes, run, frame, nodes.index_values[frame])
            nodes.frames.append(frame)
    nodes.frames.sort()
    _update_table(scene, nodes, run, frames)
    _update_curves(scene, nodes, run)
    _sequences_logic().UpdateProxyNodesFromSequences(nodes.browser)
    return nodes
