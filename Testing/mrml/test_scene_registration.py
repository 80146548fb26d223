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


def test_progress_of_a_pair_stopped_at_its_plateau_counts_its_budget():
    """A pair ended by the plateau rule reports its last iteration as its count (30 of a budget of 60): once the
    frame finishes, its share of the bar is its whole budget, so a finished run's bar is full, not 75 %."""
    progress = RunProgress()
    for event in [{"event": "started", "frames": 3, "finished": [0], "todo": [1, 2], "iterations_total": 120},
                  {"event": "iteration", "frame": 1, "iteration": 20, "iterations": 60, "eta_s": 9.0},
                  {"event": "iteration", "frame": 1, "iteration": 30, "iterations": 30, "eta_s": 5.0}]:
        progress.update(event)
    assert progress.fraction == 0.25
    progress.update({"event": "frame_finished", "frame": 1, "done": 2, "eta_s": 4.0})
    assert progress.fraction == 0.5


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
    scene, loaded, run = _started_run(tiny_phantom, tmp_path, landmarks=True,
                                      heart_segments=["LV blood pool", "rest of heart"],
                                      blood_pool_segment="LV blood pool", settings=TINY_SETTINGS)
    seen = []
    nodes = run.wait(timeout_s=600, interval_s=0.2, on_progress=lambda p: seen.append((p.fraction, p.frames_done)))
    assert run.progress.state == "finished" and run.progress.fraction == 1.0
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and any(0.0 < f < 1.0 for f in fractions)
    assert nodes.frames == [0, 1, 2, 3] and nodes.browser is loaded.browser
    assert loaded.browser.IsSynchronizedSequenceNode(nodes.moving_transforms.GetID())
    assert nodes.table.GetNumberOfRows() == 4
    ours = read_trajectories_csv(run.run.trajectories_csv)
    theirs = read_trajectories_csv(tiny_run.trajectories_csv)
    difference = float(np.abs(ours.points_lps - theirs.points_lps).max())
    print(f"max trajectory difference scene run vs files: {difference:.2e} mm")
    assert ours.labels == theirs.labels and difference < 0.01
    import json

    function, expected = (json.loads(path.read_text()) for path in (run.run.function_json, tiny_run.function_json))
    assert function["ef_pct"] == pytest.approx(expected["ef_pct"], abs=0.05)  # the LV blood pool segment exported
    for t in range(4):  # the exported frames are the phantom's voxels
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(run.run.inputs_dir / "frames" / f"frame_{t:03d}.nii.gz")))
        assert np.array_equal(written, tiny_phantom.images[t].array)


def _started_run(phantom, tmp_path, landmarks: bool = False, **options):
    """A new scene with the phantom loaded, and a run on it started with the LV myocardium segment, the landmarks
    (when ``landmarks``) and ``options``: ``(scene, loaded nodes, run)``."""
    scene = new_scene()
    loaded = _load(phantom, scene)
    run = SceneRegistration(tmp_path / "run", scene=scene)
    run.start(loaded.ct, segmentations=loaded.segmentations, myocardium_segment="LV myocardium",
              landmarks=loaded.landmarks if landmarks else None, **options)
    return scene, loaded, run


def _poll_until_frames(run, frames: int, timeout_s: float = 300) -> None:
    """Poll the running ``run`` until ``frames`` frames are finished (and imported)."""
    deadline = time.monotonic() + timeout_s
    while run.poll().frames_done < frames:
        assert run.running and time.monotonic() < deadline, run.worker.log_tail()
        time.sleep(0.1)


@pytest.mark.slow
def test_cancel_keeps_finished_frames_in_the_scene_and_resume_completes(tiny_phantom, tmp_path):
    """Later frames are long enough (300 iterations, no plateau) that the cancel lands before the run could end,
    also on a loaded machine."""
    settings = TINY_SETTINGS.with_changes(warm_start_iterations=300, plateau_window=0)
    scene, loaded, run = _started_run(tiny_phantom, tmp_path, landmarks=True, settings=settings)
    _poll_until_frames(run, 2)
    progress = run.cancel()
    assert progress.state == "cancelled" and not run.worker.tree_alive()
    kept = sorted(RunFolder(run.run.root).finished_records(4))
    assert 2 <= len(kept) < 4 and run.nodes.frames == kept
    assert run.nodes.moving_transforms.GetNumberOfDataNodes() == len(kept)
    first_nodes = run.nodes
    run.resume()
    nodes = run.wait(timeout_s=600, interval_s=0.2)
    assert nodes is first_nodes and nodes.frames == [0, 1, 2, 3]
    assert nodes.moving_transforms.GetNumberOfDataNodes() == 4 and nodes.table.GetNumberOfRows() == 4


@pytest.mark.slow
def test_a_failed_run_raises_with_the_worker_log(tiny_phantom, tmp_path):
    scene = new_scene()
    loaded = _load(tiny_phantom, scene)
    run = SceneRegistration(tmp_path / "run", scene=scene)
    with pytest.raises(InputError, match="extra options: 'alpha' must be in"):  # checked before anything is written
        run.start(loaded.ct, segmentations=loaded.segmentations, myocardium_segment="LV myocardium",
                  settings=TINY_SETTINGS, extra_options=["--alpha", "3"])
    assert not (tmp_path / "run").exists()
    for missing in (None, {1: loaded.segmentations.GetNthDataNode(1)}):  # no segmentation of reference frame 0
        with pytest.raises(InputError, match="no segmentation of the reference frame 0"):
            run.start(loaded.ct, segmentations=missing, myocardium_segment="LV myocardium", settings=TINY_SETTINGS)
        assert not (tmp_path / "run").exists()
    run.start(loaded.ct, segmentations=loaded.segmentations, myocardium_segment="LV myocardium",
              settings=TINY_SETTINGS, extra_options=["--device", "cuda:7"])
    assert run.request.registration.device == "cuda:7"
    with pytest.raises(RegistrationFailed, match="(?s)inputs were rejected.*device 'cuda:7' was requested"):
        run.wait(timeout_s=300, interval_s=0.2)
    with pytest.raises(ValueError, match="already holds a run|not empty"):
        SceneRegistration(tmp_path / "run", scene=scene).start(loaded.ct, segmentations=loaded.segmentations,
                                                               myocardium_segment="LV myocardium")


@pytest.mark.slow
def test_a_damaged_frame_fails_the_run_once_with_its_cause(tiny_phantom, tmp_path):
    """An exception while importing (here a frame's label file damaged before the scene reads it) ends the run as
    failed with the cause and the log tail; polling again neither raises nor repeats it (the widget's timer shows
    one error)."""
    scene, loaded, run = _started_run(tiny_phantom, tmp_path, settings=TINY_SETTINGS)
    assert run.worker.wait(timeout=300) == 0  # finished, nothing imported yet
    run.run.label_path(2).write_bytes(b"not a NIfTI file")
    progress = run.poll()
    assert progress.state == "failed" and not run.running
    message = run.error_message()
    assert "could not be imported" in message and "frame_002.nii.gz" in message
    assert run.poll().state == "failed" and run.error_message() == message
    with pytest.raises(RegistrationFailed, match="could not be imported"):
        run.wait(timeout_s=5)


@pytest.mark.slow
def test_closing_the_scene_cancels_the_run_and_writes_no_node(tiny_phantom, tmp_path):
    scene, loaded, run = _started_run(tiny_phantom, tmp_path,
                                      settings=TINY_SETTINGS.with_changes(iterations=400, warm_start_iterations=400))
    _poll_until_frames(run, 2)  # the reference frame and one registered frame are in the scene
    scene.Clear(0)
    assert not run.running and not run.worker.tree_alive() and run.detached
    assert run.progress.state == "cancelled" and run.nodes is None
    for _ in range(3):
        run.poll()
    assert scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode") == 0
    assert len(RunFolder(run.run.root).finished_records(4)) >= 2  # kept for a resume in the next scene
    with pytest.raises(ValueError, match="scene of this run was closed"):
        run.resume()


class _EndsDuringTheImport:
    """A worker stand-in whose process ends between the first liveness check and the end of the import (a race
    that real processes hit only by chance): alive at the first look, then its final event appears."""

    def __init__(self, run_dir):
        self.looks = 0
        self.run_dir = run_dir

    @property
    def running(self) -> bool:
        self.looks += 1
        return self.looks == 1

    def poll(self) -> list[dict]:
        if self.looks <= 1:
            return [{"event": "frame_finished", "frame": 3, "done": 4, "frames": 4}]
        return [{"event": "finished", "done": 4, "frames": 4}]

    def outcome(self):
        from INRCardiacRegistrationLib.core.vocabulary import RunState

        return RunState.FINISHED


@pytest.mark.slow
def test_a_worker_that_ends_during_the_import_is_seen_as_finished_in_the_same_poll(tiny_run, tmp_path):
    """Once ``running`` is False after a poll, the state is final: the widget's timer stops on it and shows the
    results (it would otherwise stop with the run still 'running')."""
    scene = new_scene()
    run = SceneRegistration(tiny_run.root, scene=scene)
    run.worker = _EndsDuringTheImport(tiny_run.root)
    progress = run.poll()
    assert not run.running and progress.state == "finished" and run.nodes.frames == [0, 1, 2, 3]
