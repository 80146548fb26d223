"""Per-frame segmentation through the TotalSegmentator extension's logic, on the real MRML of ``slicer-core``.

The TotalSegmentator model cannot run here (its weights download on first use), so a stand-in logic with the
extension's ``process`` signature answers with the phantom's true labels for the frame it is given (found by its
voxels). Everything else is real: stepping the CT's browser, the segmentation sequence, the export to the worker."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="the slicer-core wheel is not installed (pip install slicer-core)")

from INRCardiacRegistrationLib.mrml.bridge import (  # noqa: E402
    export_inputs,
    import_segment,
    load_cycle_files,
    volume_node,
)
from INRCardiacRegistrationLib.mrml.totalsegmentator_frames import (  # noqa: E402
    SegmentationCancelled,
    license_number,
    segment_frames,
    task_options,
)
from mrml_scene import new_scene  # noqa: E402


class StandInTotalSegmentatorLogic:
    """The extension logic's interface (``process(inputVolume, outputSegmentation, fast, cpu, task, subset,
    interactive)``, ``useStandardSegmentNames``) answering with the phantom's labels."""

    def __init__(self, phantom, scene):
        self.phantom, self.scene = phantom, scene
        self.useStandardSegmentNames = True
        self.logCallback = None
        self.calls = []

    def process(self, inputVolume, outputSegmentation, fast=True, cpu=False, task=None, subset=None,
                interactive=False, sequenceBrowserNode=None):
        assert not self.useStandardSegmentNames and not interactive
        voxels = slicer.util.arrayFromVolume(inputVolume)
        frame = next(t for t, image in enumerate(self.phantom.images) if np.array_equal(image.array, voxels))
        self.calls.append((frame, task, subset))
        if self.logCallback:  # as the extension's logProcessOutput passes on each line its subprocess prints
            self.logCallback(f"segmenting with task {task}")
        labels = self.phantom.labels[frame]
        wanted = {"heartchambers_highres": [("heart_myocardium", labels.array == 1),
                                            ("heart_ventricle_left", labels.array == 2)],
                  "total": [("heart", labels.array > 0)]}[task]
        for name, mask in wanted:
            node = volume_node(self.scene, labels.with_array(mask.astype(np.uint8)), name, "vtkMRMLLabelMapVolumeNode")
            import_segment(outputSegmentation, node, name, f"frame {frame}")
            self.scene.RemoveNode(node)


def test_every_frame_is_segmented_and_exported(tiny_phantom, tmp_path):
    scene = new_scene()
    root = tiny_phantom.manifest_path.parent
    loaded = load_cycle_files(root / "ct_4d.nii.gz", scene=scene, name="CT")
    logic = StandInTotalSegmentatorLogic(tiny_phantom, scene)
    steps, lines = [], []
    result = segment_frames(logic, loaded.browser, loaded.ct, reference_frame=1, scene=scene,
                            on_frame=lambda t, n: steps.append((t, n)), on_log=lines.append)
    assert steps == [(t, 4) for t in range(4)] and logic.useStandardSegmentNames is True
    assert len(lines) == 5 and lines[0] == "segmenting with task heartchambers_highres"
    assert logic.logCallback is None  # the extension's own callback is back
    myocardium = "heartchambers_highres"
    assert logic.calls == [(0, myocardium, None), (1, myocardium, None), (1, "total", ["heart"]),
                           (2, myocardium, None), (3, myocardium, None)]
    assert result.sequence.GetNumberOfDataNodes() == 4 and loaded.browser.GetSelectedItemNumber() == 1
    exported = export_inputs(loaded.ct, tmp_path / "inputs", segmentations=result.sequence,
                             myocardium_segment=result.myocardium_segment, heart_segments=result.heart_segments,
                             blood_pool_segment=result.blood_pool_segment, scene=scene)
    assert result.blood_pool_segment == "heart_ventricle_left"
    assert exported.heart_label == (1, 2, 3) and exported.myocardium_label == 1 and exported.blood_pool_label == 3
    for t in range(4):
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "inputs" / "labels" / f"frame_{t:03d}.nii.gz")))
        truth = tiny_phantom.labels[t].array
        assert np.array_equal(written == 1, truth == 1)
        assert np.array_equal(written == 3, truth == 2)  # TotalSegmentator's LV cavity: the blood pool
        assert np.array_equal(written > 0, truth > 0 if t == 1 else (truth == 1) | (truth == 2))  # heart: reference


def test_a_frame_without_myocardium_is_a_clear_error(tiny_phantom):
    scene = new_scene()
    loaded = load_cycle_files(tiny_phantom.manifest_path.parent / "ct_4d.nii.gz", scene=scene, name="CT")

    class FindsNothing(StandInTotalSegmentatorLogic):
        def process(self, inputVolume, outputSegmentation, fast=True, cpu=False, task=None, subset=None):
            pass

    with pytest.raises(ValueError, match="found no 'heart_myocardium' in frame 0"):
        segment_frames(FindsNothing(tiny_phantom, scene), loaded.browser, loaded.ct, scene=scene)


def test_license_number_is_read_from_totalsegmentator_config(tmp_path):
    env = {"TOTALSEG_HOME_DIR": str(tmp_path)}
    assert license_number(env) == ""
    (tmp_path / "config.json").write_text(json.dumps({"totalseg_id": "x", "license_number": "aca_123456789012345"}))
    assert license_number(env) == "aca_123456789012345"
    (tmp_path / "config.json").write_text("{broken")
    assert license_number(env) == ""


def test_cancel_before_a_frame_keeps_the_frames_done(tiny_phantom):
    scene = new_scene()
    loaded = load_cycle_files(tiny_phantom.manifest_path.parent / "ct_4d.nii.gz", scene=scene, name="CT")
    logic = StandInTotalSegmentatorLogic(tiny_phantom, scene)
    done = []
    with pytest.raises(SegmentationCancelled, match="after 2 of 4 frames") as cancelled:
        segment_frames(logic, loaded.browser, loaded.ct, scene=scene, on_frame=lambda t, n: done.append(t),
                       cancelled=lambda: len(done) == 2)
    assert cancelled.value.sequence.GetNumberOfDataNodes() == 2 and "cancelled" in cancelled.value.sequence.GetName()
    assert loaded.browser.GetSelectedItemNumber() == 0 and logic.useStandardSegmentNames is True


def test_both_signatures_of_the_extensions_process():
    """SlicerTotalSegmentator's ``process``: ``fast=True`` until 2026-02, ``quality=None`` ("normal"/"fast"/
    "faster") since commit a40fc4d; both as in its source (TotalSegmentator/TotalSegmentator.py)."""

    def before(inputVolume, outputSegmentation, fast=True, cpu=False, task=None, subset=None, interactive=False,
               sequenceBrowserNode=None):
        pass

    def since(inputVolume, outputSegmentation, quality=None, cpu=False, task=None, subset=None, interactive=False,
              sequenceBrowserNode=None):
        pass

    def oldest(inputVolume, outputSegmentation, fast=True, cpu=False, task=None, subset=None):
        pass

    assert task_options(before, "total", True, False, ["heart"]) == {
        "fast": True, "cpu": False, "task": "total", "subset": ["heart"], "interactive": False}
    assert task_options(since, "total", True, True, None) == {
        "quality": "fast", "cpu": True, "task": "total", "subset": None, "interactive": False}
    assert task_options(since, "heartchambers_highres", False, False, None)["quality"] == "normal"
    assert "interactive" not in task_options(oldest, "total", False, False, None)


def test_frames_are_found_when_the_ct_is_not_the_browsers_master(tiny_phantom):
    """The browser steps its master sequence; a CT synchronised to it is shown at the item with the same index
    value (here the master has one item more, before the CT's first), and each result keeps the CT's index."""
    scene = new_scene()
    loaded = load_cycle_files(tiny_phantom.manifest_path.parent / "ct_4d.nii.gz", scene=scene, name="CT")
    master = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "time")
    for value in ("-1", "0", "1", "2", "3"):
        master.SetDataNodeAtValue(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode"), value)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode")
    browser.SetAndObserveMasterSequenceNodeID(master.GetID())
    browser.AddSynchronizedSequenceNodeID(loaded.ct.GetID())
    logic = StandInTotalSegmentatorLogic(tiny_phantom, scene)
    result = segment_frames(logic, browser, loaded.ct, reference_frame=2, scene=scene)
    assert [frame for frame, task, _ in logic.calls if task == "heartchambers_highres"] == [0, 1, 2, 3]
    assert [result.sequence.GetNthIndexValue(t) for t in range(4)] == ["0", "1", "2", "3"]
    assert browser.GetSelectedItemNumber() == 3  # the reference frame 2 is the master's item 3
