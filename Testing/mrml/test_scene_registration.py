"""A registration driven from an MRML scene (what the Slicer module's Logic runs): files loaded as sequences, the
inputs exported, the real worker in the background, progress, results growing in the scene, cancel and resume,
failures with the worker's last log lines. Real MRML from the ``slicer-core`` wheel, real worker processes."""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import TINY_SETTINGS
from INRCardiacRegistrationLib.core.vocabulary import InputError
from INRCardiacRegistrationLib.cycle.worker_process import RunProgress, format_duration

slicer = pytest.importorskip("slicer", reason="the slicer-core wheel is not installed (pip install slicer-core)")

import vtk  # noqa: E402  (comes with slicer-core)
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder  # noqa: E402
from INRCardiacRegistrationLib.fileio.landmarks import read_trajectories_csv  # noqa: E402
from INRCardiacRegistrationLib.mrml.bridge import load_cycle_files  # noqa: E402
from INRCardiacRegistrationLib.mrml.scene_registration import RegistrationFailed, SceneRegistration  # noqa: E402
from mrml_scene import new_scene  # noqa: E402

LABEL_NAMES = {1: "LV myocardium", 2: "LV blood pool", 3: "rest of heart"}


def test_progress_from_events():
    progress = RunProgress()
    assert progress.state == "starting" and progress.fraction == 0.0
    events = [{"event": "started", "frames": 4, "finished": [0], "todo": [1, 2, 3], "iterations_total": 120},
              {"event": "iteration", "frame": 1, "iteration": 30, "iterations": 60, "eta_s": 75.0},
              {"event": "iteration", "frame": 1, "iteration": 60, "iterations": 60, "eta_s": 30.0},
              {"event": "frame_finished", "frame": 1, "done": 2, "eta_s": 29.0},
              {"event": "iteration", "frame": 2, "iteration": 30, "iterations": 30, "eta_s": 12.0}]
    fractions = []
    for event in events:
        progress.update(event)
        fractions.append(progress.fraction)
    assert fractions == [0.0, 0.25, 0.5, 0.5, 0.75]
    assert progress.frames_done == 2 and progress.frame == 2 and progress.eta_s == 12.0
    assert progress.text() == "registering frame 2, 2/4 frames done, about 12 s left"
    progress.update({"event": "cancelled", "done": 2, "frames": 4})
    assert progress.state == "cancelled" and progress.text() == "cancelled: 2/4 frames"
    assert format_duration(3725) == "1 h 02 min" and format_duration(200) == "3 min 20 s"
    assert format_duration(float("nan")) == "?"


def _load(phantom, scene):
    root = phantom.manifest_path.parent
    return load_cycle_files(root / "ct_4d.nii.gz", labels=root / "labels_4d.nii.gz", label_names=LABEL_NAMES,
                            landmarks=root / "landmarks_reference.mrk.json", scene=scene, name="Phantom")


def test_files_load_as_sequences_like_slicer_reads_them(tiny_phantom, tmp_path):
    """Voxels and IJK->RAS of each frame equal Slicer's own reader on the same frame; segments hold the labels."""
    scene = new_scene()
    loaded = _load(tiny_phantom, scene)
    assert loaded.ct.GetNumberOfDataNodes() == 4 and loaded.segmentations.GetNumberOfDataNodes() == 4
    assert loaded.browser.IsSynchronizedSequenceNode(loaded.segmentations.GetID())
    assert loaded.landmarks.GetNumberOfControlPoints() == len(tiny_phantom.landmarks.labels)
    for t in (0, 2):
        path = tmp_path / f"frame_{t}.nii.gz"
        tiny_phantom.images[t].write(path)
        expected = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        scene.AddNode(storage)
        storage.SetFileName(str(path))
        assert storage.ReadData(expected)
        ours = loaded.ct.GetNthDataNode(t)
        mine, theirs = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        ours.GetIJKToRASMatrix(mine)
        expected.GetIJKToRASMatrix(theirs)
        assert np.allclose([[mine.GetElement(r, c) for c in range(4)] for r in range(4)],
                           [[theirs.GetElement(r, c) for c in range(4)] for r in range(4)], atol=1e-9)
        assert np.array_equal(slicer.util.arrayFromVolume(ours), slicer.util.arrayFromVolume(expected))
        segmentation = loaded.segmentations.GetNthDataNode(t)
        segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName("LV myocardium")
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, expected) > 0
        assert np.array_equal(mask, tiny_phantom.labels[t].array == 1)


@pytest.mark.slow
def test_scene_run_reports_progress_and_fills_the_ct_browser(tiny_phantom, tiny_run, tmp_path):
    """Exported from the scene and run in the background: progress rises to 1, every frame lands in sequences
    synchronised to the CT's browser, and the trajectories equal the command line's on the files."""
    scene = new_scene()
    loaded = _load(tiny_phantom, scene)
    run = SceneRegistration(tmp_path / "run", scene=scene)
    run.start(loaded.ct, segmentations=loaded.segmentations, myocardium_segment="LV myocardium",
              heart_segments=["LV blood pool", "rest of heart"], landmarks=loaded.landmarks, settings=TINY_SETTINGS)
    seen = []
    nodes = run.wait(timeout_s=600, interval_s=0.2, on_progress=lambda p: seen.append((p.fraction, p.frames_done)))
    assert run.progress.state == "finished" and run.progress.fraction == 1.0
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and any(0.0 < f < 1.0 for f in fractions)
    assert nodes.frames == [0, 1, 2, 3] and nodes.browser is loaded.browser
    assert loaded.browser.IsSynchronizedSequenceNode(nodes.transforms.GetID())
    assert nodes.table.GetNumberOfRows() == 4
    ours = read_trajectories_csv(run.run.trajectories_csv)
    theirs = read_trajectories_csv(tiny_run.trajectories_csv)
    difference = float(np.abs(ours.points_lps - theirs.points_lps).max())
    print(f"max trajectory difference scene run vs files: {difference:.2e} mm")
    assert ours.labels == theirs.labels and difference < 0.01
    for t in range(4):  # the exported frames are the phantom's voxels
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(run.run.inputs_dir / "frames" / f"frame_{t:03d}.nii.gz")))
        assert np.array_equal(written, tiny_phantom.images[t].array)


@pytest.mark.slow
def test_cancel_keeps_finished_frames_in_the_scene_and_resume_completes(tiny_phantom, tmp_path):
    scene = new_scene()
    loaded = _load(tiny_phantom, scene)
    run = SceneRegistration(tmp_path / "run", scene=scene)
    run.start(loaded.ct, segmentations=loaded.segmentations, myocardium_segment="LV myocardium",
              landmarks=loaded.landmarks, settings=TINY_SETTINGS)
    deadline = time.monotonic() + 300
    while run.poll().frames_done < 2:
        assert run.running and time.monotonic() < deadline, run.worker.log_tail()
        time.sleep(0.1)
    progress = run.cancel()
    assert progress.state == "cancelled" and not run.worker.tree_alive()
    kept = sorted(RunFolder(run.run.root).finished_records(4))
    assert 2 <= len(kept) < 4 and run.nodes.frames == kept
    assert run.nodes.transforms.GetNumberOfDataNodes() == len(kept)
    first_nodes = run.nodes
    run.resume()
    nodes = run.wait(timeout_s=600, interval_s=0.2)
    assert nodes is first_nodes and nodes.frames == [0, 1, 2, 3]
    assert nodes.transforms.GetNumberOfDataNodes() == 4 and nodes.table.GetNumberOfRows() == 4


@pytest.mark.slow
def test_a_failed_run_raises_with_the_worker_log(tiny_phantom, tmp_path):
    scene = new_scene()
    loaded = _load(tiny_phantom, scene)
    run = SceneRegistration(tmp_path / "run", scene=scene)
    with pytest.raises(InputError, match="extra options: 'alpha' must be in"):  # checked before anything is written
        run.start(loaded.ct, segmentations=loaded.segmentations, myocardium_segment="LV myocardium",
                  settings=TINY_SETTINGS, extra_options=["--alpha", "3"])
    assert not (tmp_path / "run").exists()
    run.start(loaded.ct, segmentations=loaded.segmentations, myocardium_segment="LV myocardium",
              settings=TINY_SETTINGS, extra_options=["--device", "cuda:7"])
    assert run.request.registration.device == "cuda:7"
    with pytest.raises(RegistrationFailed, match="(?s)inputs were rejected.*device 'cuda:7' was requested"):
        run.wait(timeout_s=300, interval_s=0.2)
    with pytest.raises(ValueError, match="already holds a run|not empty"):
        SceneRegistration(tmp_path / "run", scene=scene).start(loaded.ct, segmentations=loaded.segmentations,
                                                               myocardium_segment="LV myocardium")
