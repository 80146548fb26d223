"""The MRML bridge against the real MRML scene of the PyPI ``slicer-core`` wheel (no Slicer application): a run
folder made by the real worker on a tiny phantom, imported as sequences, markups, curves, a table and charts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="the slicer-core wheel is not installed (pip install slicer-core)")

from helpers import TINY_SETTINGS  # noqa: E402
from INRCardiacRegistrationLib.cli.main import main  # noqa: E402
from INRCardiacRegistrationLib.core.metrics import dice  # noqa: E402
from INRCardiacRegistrationLib.cycle.request import RunRequest  # noqa: E402
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder  # noqa: E402
from INRCardiacRegistrationLib.fileio.landmarks import RAS_TO_LPS, read_markups_json, read_trajectories_csv  # noqa: E402
from INRCardiacRegistrationLib.mrml.bridge import export_inputs, import_run, sequences_logic  # noqa: E402
from mrml_scene import new_scene, read_node  # noqa: E402


@pytest.fixture
def worker_run(tiny_run):
    return tiny_run


def _segment_array(segmentation, reference_volume):
    segment_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    return slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, reference_volume) > 0


def _label_volume(scene, path):
    return read_node(scene, "vtkMRMLLabelMapVolumeNode", slicer.vtkMRMLVolumeArchetypeStorageNode, path)


@pytest.mark.slow
def test_imported_run_matches_the_worker_files(worker_run):
    """One item per frame (the moving transforms are checked in test_slicer_transforms.py); each segmentation
    matches the propagated label file (Dice >= 0.99); one table row per frame with the metrics of metrics.csv."""
    scene = new_scene()
    nodes = import_run(worker_run.root, scene)
    assert nodes.frames == [0, 1, 2, 3]
    assert nodes.moving_transforms.GetNumberOfDataNodes() == 4 and nodes.segmentations.GetNumberOfDataNodes() == 4
    assert nodes.landmarks.GetNumberOfDataNodes() == 4
    assert nodes.moving_transforms.GetNthDataNode(1).GetClassName() == "vtkMRMLGridTransformNode"
    dices = []
    for t in range(4):
        label = _label_volume(scene, worker_run.label_path(t))
        expected = sitk.GetArrayFromImage(sitk.ReadImage(str(worker_run.label_path(t)))) > 0
        dices.append(dice(_segment_array(nodes.segmentations.GetNthDataNode(t), label), expected))
    print(f"min Dice segmentation vs label file {min(dices):.4f}")
    assert min(dices) >= 0.99
    table = nodes.table
    rows = worker_run.read_metrics()
    assert table.GetNumberOfRows() == 4
    for r, row in enumerate(rows):
        assert int(table.GetCellText(r, table.GetColumnIndex("frame"))) == row["frame"]
        for name in ("dice", "hd95_mm", "hd95_subvoxel_mm", "mean_surface_mm", "tre_mm"):
            value = float(table.GetCellText(r, table.GetColumnIndex(name)))
            assert value == pytest.approx(row[name], rel=1e-5, abs=1e-9) or (np.isnan(value) and np.isnan(row[name]))
    assert set(nodes.charts) == {"dice", "hd95_mm", "tre_mm"}
    surface = nodes.charts["hd95_mm"]
    assert surface.GetTitle() == "Surface distance per phase"
    assert [surface.GetNthPlotSeriesNode(n).GetYColumnName() for n in range(surface.GetNumberOfPlotSeriesNodes())] \
        == ["hd95_subvoxel_mm", "mean_surface_mm", "hd95_mm"]
    assert len(nodes.curves) == len(read_markups_json(worker_run.landmarks_path(0))) \
        and nodes.curves[0].GetNumberOfControlPoints() == 4


@pytest.mark.slow
def test_the_cardiac_function_is_imported_as_tables_and_charts(worker_run):
    """The tiny run measured the function (its request names the LV blood pool): function.csv and
    strain_segments.csv become table nodes cell for cell, with volume, strain and twist charts of that table."""
    import csv

    scene = new_scene()
    nodes = import_run(worker_run.root, scene)
    assert set(nodes.function) == {"table", "segments", "volumes", "strain", "twist", "strain_map", "peaks",
                                   "bullseye"}
    for key, path in (("table", worker_run.function_csv), ("segments", worker_run.strain_segments_csv)):
        rows = list(csv.DictReader(path.open()))
        table = nodes.function[key]
        assert table.GetNumberOfRows() == len(rows) > 0
        for column in rows[0]:
            index = table.GetColumnIndex(column)
            assert index >= 0
            for r, row in enumerate(rows):
                assert float(table.GetCellText(r, index)) == pytest.approx(float(row[column]), rel=1e-6, abs=1e-9)
    strain = nodes.function["strain"]
    assert strain.GetNumberOfPlotSeriesNodes() == 3
    series = strain.GetNthPlotSeriesNode(0)
    assert series.GetTableNodeID() == nodes.function["table"].GetID() and series.GetYColumnName() == "gls_pct"
    strain_map = nodes.function["strain_map"]
    assert strain_map.GetNumberOfDataNodes() == 4 and nodes.browser.IsSynchronizedSequenceNode(strain_map.GetID())
    circumferential = {(int(r["frame"]), int(r["segment"])): float(r["circumferential_pct"])
                       for r in csv.DictReader(worker_run.strain_segments_csv.open())}
    for t in (0, 2):
        segments = sitk.GetArrayFromImage(sitk.ReadImage(str(worker_run.segments_path(t))))
        painted = slicer.util.arrayFromVolume(strain_map.GetNthDataNode(t))
        lookup = np.array([np.nan] + [circumferential[(t, s)] for s in range(1, 18)])
        expected = lookup[segments]
        assert np.allclose(painted, expected, atol=1e-4, equal_nan=True) and (segments > 0).sum() > 100
    again = import_run(worker_run.root, scene, nodes=nodes)  # refreshing makes no second set of nodes
    assert again.function["table"] is nodes.function["table"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode") == 3 + 3  # Dice, HD95, TRE + the function's three
    assert again.function["bullseye"] is nodes.function["bullseye"]


def _display_rgba(display_node, volume_node) -> np.ndarray:
    """The RGBA image (k, j, i, 4) a scalar-volume display node's pipeline makes of ``volume_node``: what a slice
    view draws (slicer-core runs the pipeline; no rendering)."""
    from vtk.util import numpy_support

    display_node.SetInputImageDataConnection(volume_node.GetImageDataConnection())
    display_node.UpdateImageDataPipeline()
    producer = display_node.GetOutputImageDataConnection().GetProducer()
    producer.Update()
    image = producer.GetOutputDataObject(0)
    k, j, i = slicer.util.arrayFromVolume(volume_node).shape
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k, j, i, -1)


@pytest.mark.slow
def test_the_strain_map_is_coloured_blue_white_red_and_transparent_off_the_myocardium(worker_run):
    """The proxy of the strain map, through Slicer's own display pipeline: voxels outside the myocardium are
    transparent; shortening (negative strain) is drawn bluer than red, lengthening redder than blue, and the
    colour range is symmetric about 0 (white), also after the browser moved to another frame."""
    scene = new_scene()
    nodes = import_run(worker_run.root, scene)
    nodes.browser.SetSelectedItemNumber(2)  # frame 0 is the reference: no strain; the colouring stays per frame
    sequences_logic().UpdateProxyNodesFromSequences(nodes.browser)
    proxy = nodes.browser.GetProxyNode(nodes.function["strain_map"])
    display = proxy.GetDisplayNode()
    assert display.GetColorNode().GetName() == "INR strain (blue-white-red)"
    assert display.GetLevel() == pytest.approx(0.0)
    values = slicer.util.arrayFromVolume(proxy)
    rgba = _display_rgba(display, proxy)
    assert np.all(rgba[np.isnan(values)][:, 3] == 0) and np.all(rgba[np.isfinite(values)][:, 3] == 255)
    red, blue = rgba[..., 0].astype(int), rgba[..., 2].astype(int)
    finite = np.isfinite(values) & (np.abs(np.nan_to_num(values)) > 0.05 * display.GetWindow())
    assert finite.sum() > 50
    assert np.all((red > blue)[finite & (values > 0)]) and np.all((blue > red)[finite & (values < 0)])


@pytest.mark.slow
def test_the_bullseye_holds_the_peak_strain_per_segment_over_its_segments(worker_run):
    """The bull's-eye table and model carry function.json's peak strain of each of the 17 segments; each tile of
    segments 1-16 lies, seen along the long axis, in the direction of its segment's myocardium (the reference
    frame's carried segments, segments/frame_000.nii.gz, read by SimpleITK), and the rings grow from the apex."""
    import json

    from vtk.util import numpy_support

    summary = json.loads(worker_run.function_json.read_text())
    scene = new_scene()
    nodes = import_run(worker_run.root, scene)
    table = nodes.function["peaks"]
    assert table.GetNumberOfRows() == 17
    peaks = summary["peak_segment_strain_pct"]
    polydata = nodes.function["bullseye"].GetPolyData()
    cells = polydata.GetCellData()
    segment_of_cell = numpy_support.vtk_to_numpy(cells.GetArray("segment"))
    assert set(segment_of_cell) == set(range(1, 18))
    for kind in ("radial", "circumferential", "longitudinal"):
        column = table.GetColumnIndex(f"peak_{kind}_pct")
        on_model = numpy_support.vtk_to_numpy(cells.GetArray(f"peak_{kind}_pct"))
        for segment in range(1, 18):
            expected = peaks[str(segment)][kind]
            expected = np.nan if expected is None else expected
            assert np.allclose(on_model[segment_of_cell == segment], expected, equal_nan=True)
            assert np.allclose(float(table.GetCellText(segment - 1, column)), expected, equal_nan=True)
    display = nodes.function["bullseye"].GetDisplayNode()
    assert display.GetActiveScalarName() == "peak_circumferential_pct" and display.GetScalarVisibility()
    low, high = display.GetScalarRange()
    assert low == pytest.approx(-high) and high > 0
    details = summary["details"]
    axis, apex = np.array(details["long_axis_lps"]), np.array(details["apex_lps_mm"])
    image = sitk.ReadImage(str(worker_run.segments_path(0)))
    segments = sitk.GetArrayFromImage(image)
    voxels = np.argwhere(segments > 0)
    lps = np.array([image.TransformContinuousIndexToPhysicalPoint(v[::-1].astype(float).tolist()) for v in voxels])
    values = segments[tuple(voxels.T)]
    centres = []
    for c in range(polydata.GetNumberOfCells()):
        ids = polydata.GetCell(c).GetPointIds()
        corners = [polydata.GetPoint(ids.GetId(n)) for n in range(ids.GetNumberOfIds())]
        centres.append(np.mean(corners, axis=0) * RAS_TO_LPS)
    centres = np.array(centres)
    heights = (centres - apex) @ axis
    assert np.allclose(heights, heights[0], atol=1e-6) and heights[0] < 0  # one plane beyond the apex

    def across(points):
        flat = points - apex - np.outer((points - apex) @ axis, axis)
        return flat / np.linalg.norm(flat, axis=1, keepdims=True)

    radii = np.linalg.norm(centres - apex - np.outer(heights, axis), axis=1)
    for segment in range(1, 17):
        mine = values == segment
        if mine.sum() < 5:
            continue
        wall = across(lps[mine]).mean(axis=0)
        tile = across(centres[segment_of_cell == segment]).mean(axis=0)
        cosine = wall @ tile / np.linalg.norm(wall) / np.linalg.norm(tile)
        assert cosine > np.cos(np.radians(30.0)), (segment, np.degrees(np.arccos(cosine)))
    ring_radius = [radii[np.isin(segment_of_cell, ring)].mean() for ring in ((17,), (13, 14, 15, 16),
                                                                               tuple(range(7, 13)), tuple(range(1, 7)))]
    assert np.all(np.diff(ring_radius) > 0)


@pytest.mark.slow
def test_browser_steps_all_results_together(worker_run):
    scene = new_scene()
    nodes = import_run(worker_run.root, scene)
    browser = nodes.browser
    logic = slicer.modules.sequences.logic()
    trajectories = read_trajectories_csv(worker_run.trajectories_csv)
    for t in (2, 0, 3):
        browser.SetSelectedItemNumber(t)
        logic.UpdateProxyNodesFromSequences(browser)
        transform = browser.GetProxyNode(nodes.moving_transforms)
        segmentation = browser.GetProxyNode(nodes.segmentations)
        markups = browser.GetProxyNode(nodes.landmarks)
        probe = trajectories.points_lps[0, 0] * RAS_TO_LPS
        moved = np.array(transform.GetTransformToParent().TransformPoint(list(map(float, probe)))) * RAS_TO_LPS
        assert np.abs(moved - trajectories.points_lps[t, 0]).max() < 1e-3
        label = _label_volume(scene, worker_run.label_path(t))
        expected = sitk.GetArrayFromImage(sitk.ReadImage(str(worker_run.label_path(t)))) > 0
        assert dice(_segment_array(segmentation, label), expected) >= 0.99
        position = np.array(markups.GetNthControlPointPosition(0)) * RAS_TO_LPS
        assert np.abs(position - trajectories.points_lps[t, 0]).max() < 1e-6


@pytest.mark.slow
def test_a_run_in_progress_is_imported_and_updated(worker_run, tmp_path):
    """Frames finished later are added to the same nodes."""
    partial = tmp_path / "partial"
    shutil.copytree(worker_run.root, partial)
    for t in (2, 3):
        (partial / "frames" / f"frame_{t:03d}.json").unlink()
    scene = new_scene()
    nodes = import_run(partial, scene)
    assert nodes.frames == [0, 1] and nodes.moving_transforms.GetNumberOfDataNodes() == 2
    for t in (2, 3):
        shutil.copy(worker_run.record_path(t), partial / "frames")
    again = import_run(partial, scene, nodes=nodes)
    assert again is nodes and nodes.frames == [0, 1, 2, 3]
    assert nodes.moving_transforms.GetNumberOfDataNodes() == 4 and nodes.segmentations.GetNumberOfDataNodes() == 4
    assert nodes.table.GetNumberOfRows() == 4


@pytest.mark.slow
def test_results_join_the_ct_browser(worker_run, tiny_phantom):
    """With the CT's own browser, the results are synchronised to it and take its index values."""
    scene = new_scene()
    ct = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "CT")
    ct.SetIndexName("time")
    ct.SetIndexUnit("ms")
    for t in range(4):
        volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
        slicer.util.updateVolumeFromArray(volume, tiny_phantom.images[t].array)
        ct.SetDataNodeAtValue(volume, f"{t * 250.0:g}")
        scene.RemoveNode(volume)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "CT browser")
    browser.SetAndObserveMasterSequenceNodeID(ct.GetID())
    nodes = import_run(worker_run.root, scene, browser=browser)
    assert nodes.browser is browser and browser.IsSynchronizedSequenceNode(nodes.moving_transforms.GetID())
    assert [nodes.moving_transforms.GetNthIndexValue(t) for t in range(4)] == ["0", "250", "500", "750"]
    browser.SetSelectedItemNumber(3)
    slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
    assert browser.GetProxyNode(nodes.moving_transforms) is not None
    with pytest.raises(ValueError, match="master sequence has 3 items"):
        short = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode")
        three = scene.AddNewNodeByClass("vtkMRMLSequenceNode")
        for t in range(3):
            three.SetDataNodeAtValue(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode"), str(t))
        short.SetAndObserveMasterSequenceNodeID(three.GetID())
        import_run(worker_run.root, scene, browser=short)


def _phantom_scene(tiny_phantom, folder: Path):
    """The phantom's frames as a CT volume sequence and its label maps as one segmentation per frame (segments
    "myocardium", "blood pool", "rest of heart": label values 1, 2, 3)."""
    scene = new_scene()
    folder.mkdir()
    ct = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "CT")
    segmentations = {}
    for t in range(len(tiny_phantom.images)):
        tiny_phantom.images[t].write(folder / f"ct_{t}.nii.gz")
        tiny_phantom.labels[t].write(folder / f"labels_{t}.nii.gz")
        volume = read_node(scene, "vtkMRMLScalarVolumeNode", slicer.vtkMRMLVolumeArchetypeStorageNode,
                            folder / f"ct_{t}.nii.gz")
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        assert slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(
            _label_volume(scene, folder / f"labels_{t}.nii.gz"), segmentation)
        for n, name in enumerate(["myocardium", "blood pool", "rest of heart"]):
            segmentation.GetSegmentation().GetNthSegment(n).SetName(name)
        ct.SetDataNodeAtValue(volume, str(t))
        segmentations[t] = segmentation
    return scene, ct, segmentations


@pytest.mark.slow
def test_inputs_exported_from_mrml_register_like_the_files(tiny_phantom, worker_run, tmp_path):
    """Acceptance 2: a CT volume sequence and a segmentation sequence built in MRML from the phantom's frames,
    exported by the bridge and registered by the worker, give the trajectories of the CLI run on the files."""
    scene, ct, by_frame = _phantom_scene(tiny_phantom, tmp_path / "frames")
    segmentations = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "segmentations")
    for t, segmentation in by_frame.items():
        segmentations.SetDataNodeAtValue(segmentation, str(t))
    root = tiny_phantom.manifest_path.parent
    landmarks = read_node(scene, "vtkMRMLMarkupsFiducialNode", slicer.vtkMRMLMarkupsJsonStorageNode,
                           root / "landmarks_reference.mrk.json")
    exported = export_inputs(ct, tmp_path / "inputs", segmentations=segmentations, myocardium_segment="myocardium",
                             heart_segments=["blood pool", "rest of heart"], blood_pool_segment="blood pool",
                             landmarks=landmarks, scene=scene)
    for t in range(4):
        written = sitk.ReadImage(str(Path(exported.image) / f"frame_{t:03d}.nii.gz"))
        assert np.array_equal(sitk.GetArrayFromImage(written), tiny_phantom.images[t].array)
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "inputs" / "labels" / f"frame_{t:03d}.nii.gz")))
        assert np.array_equal(labels == 1, tiny_phantom.labels[t].array == 1)
        assert np.array_equal(labels > 0, tiny_phantom.labels[t].array > 0)
        assert np.array_equal(labels == 3, tiny_phantom.labels[t].array == 2)  # the LV blood pool
    out = tmp_path / "run"
    argv = ["register", *RunRequest(exported, TINY_SETTINGS).to_argv(), "--out", str(out), "--quiet", "--no-report"]
    assert main(argv) == 0
    ours = read_trajectories_csv(RunFolder(out).trajectories_csv)
    theirs = read_trajectories_csv(worker_run.trajectories_csv)
    difference = np.abs(ours.points_lps - theirs.points_lps).max()
    print(f"max trajectory difference MRML export vs files: {difference:.2e} mm")
    assert ours.labels == theirs.labels and difference < 0.01


def test_evaluation_segmentations_are_exported_for_scoring_only(tiny_phantom, tmp_path):
    """Expert segmentations of other frames, given to export_inputs as evaluation_segmentations, are written as
    label maps of their myocardium (value 1) that the run request passes as --evaluation-labels: the worker's
    inputs hold them as evaluation masks of those frames, and not as labels (no SDF term there). A frame outside
    the sequence, or a segmentation without the myocardium segment, is refused by name."""
    from INRCardiacRegistrationLib.core.vocabulary import InputError
    from INRCardiacRegistrationLib.cycle.inputs import read_cycle_inputs

    scene, ct, segmentations = _phantom_scene(tiny_phantom, tmp_path / "frames")
    exported = export_inputs(ct, tmp_path / "inputs", segmentations={0: segmentations[0]},
                             myocardium_segment="myocardium", evaluation_segmentations={2: segmentations[2]},
                             scene=scene)
    assert [spec.split("=")[0] for spec in exported.evaluation_labels] == ["2"]
    written = sitk.GetArrayFromImage(sitk.ReadImage(exported.evaluation_labels[0].split("=", 1)[1]))
    assert set(np.unique(written)) == {0, 1}
    assert np.array_equal(written == 1, tiny_phantom.labels[2].array == 1)
    argv = RunRequest(exported, TINY_SETTINGS).to_argv()
    assert argv[argv.index("--evaluation-labels") + 1] == exported.evaluation_labels[0]
    inputs, _ = read_cycle_inputs(exported)
    assert sorted(inputs.myocardium) == [0] and sorted(inputs.evaluation) == [2]
    assert np.array_equal(inputs.evaluation[2].array, tiny_phantom.labels[2].array == 1)
    with pytest.raises(InputError, match="evaluation segmentation given for frame 7"):
        export_inputs(ct, tmp_path / "refused", segmentations={0: segmentations[0]}, myocardium_segment="myocardium",
                      evaluation_segmentations={7: segmentations[2]}, scene=scene)
    unnamed = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    unnamed.GetSegmentation().AddEmptySegment("", "wall")
    with pytest.raises(InputError, match="frame 1 has no segment 'myocardium'"):
        export_inputs(ct, tmp_path / "refused2", segmentations={0: segmentations[0]},
                      myocardium_segment="myocardium", evaluation_segmentations={1: unnamed}, scene=scene)


@pytest.mark.slow
def test_any_run_folder_opens_with_the_ct_it_was_made_from(worker_run, tmp_path):
    """load_run_folder (the module's "Load run folder..."): the CT of run.json as a volume sequence whose browser
    also plays the run's results; a run whose image has moved opens alone; a folder without run.json is refused."""
    import json

    from INRCardiacRegistrationLib.core.vocabulary import InputError
    from INRCardiacRegistrationLib.mrml.bridge import load_run_folder

    scene = new_scene()
    cycle, nodes = load_run_folder(worker_run.root, scene)
    assert cycle.ct.GetNumberOfDataNodes() == 4 and nodes.frames == [0, 1, 2, 3]
    assert nodes.browser is cycle.browser and cycle.browser.IsSynchronizedSequenceNode(nodes.segmentations.GetID())
    moved = tmp_path / "moved"
    shutil.copytree(worker_run.root, moved)
    info = json.loads((moved / "run.json").read_text())
    info["inputs"]["image"] = str(tmp_path / "gone" / "ct_4d.nii.gz")
    (moved / "run.json").write_text(json.dumps(info))
    cycle, nodes = load_run_folder(moved, scene)
    assert cycle is None and nodes.frames == [0, 1, 2, 3] and nodes.browser is not None
    with pytest.raises(InputError, match="not a run folder"):
        load_run_folder(tmp_path, scene)
