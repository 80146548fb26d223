"""The LV myocardium of every frame from the TotalSegmentator extension's logic (when it is installed in Slicer).

Per frame, the CT's browser is stepped to the frame and the logic segments its proxy volume with task
``heartchambers_highres`` (segment ``heart_myocardium``; licensed, free for non-commercial use); on the reference
frame only, task ``total`` with the ``heart`` subset adds the heart mask the worker samples in (it takes the mask
from the reference frame alone). The results form a segmentation sequence with the CT's index values, ready for
:func:`.bridge.export_inputs`.

The TotalSegmentator logic is passed in (``slicer.modules.totalsegmentator.widgetRepresentation().self().logic``
or ``TotalSegmentator.TotalSegmentatorLogic()``), so this file needs neither Qt nor the extension itself, and tests
can drive it with a stand-in where the model weights cannot be downloaded.

The extension runs TotalSegmentator as a subprocess in the calling (GUI) thread and reads its output line by line,
passing each line to ``logic.logCallback`` (SlicerTotalSegmentator ``TotalSegmentator.py``, ``logProcessOutput``
and ``log``); :func:`segment_frames` sets that callback to ``on_log`` for the duration, so the module can keep
Slicer responsive (process events) and show progress while a frame is segmented. Cancel is honoured before each
frame: the extension keeps no handle on its subprocess, so a frame that has started finishes.

The extension's ``process`` took ``fast=`` (a bool) until 2026-02 and takes ``quality=`` ("normal", "fast",
"faster") since (SlicerTotalSegmentator commit a40fc4d, "Restore API backward compatibility"); both are supported.

TotalSegmentator keeps its licence number in ``config.json`` of its home folder (``TOTALSEG_HOME_DIR``, else
``~/.totalsegmentator``; ``/tmp/.totalsegmentator`` when the home folder is ``/``), key ``license_number``.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.vocabulary import InputError
from .bridge import new_sequence, scene_or_default, sequences_logic

MYOCARDIUM_TASK = "heartchambers_highres"
MYOCARDIUM_SEGMENT = "heart_myocardium"
BLOOD_POOL_SEGMENT = "heart_ventricle_left"  # the LV cavity in the same task
HEART_TASK = "total"
HEART_SEGMENT = "heart"


def totalsegmentator_home(env: dict[str, str] | None = None) -> Path:
    """TotalSegmentator's configuration folder."""
    env = os.environ if env is None else env
    if env.get("TOTALSEG_HOME_DIR"):
        return Path(env["TOTALSEG_HOME_DIR"])
    home = Path.home()
    return (Path("/tmp") if str(home) == "/" else home) / ".totalsegmentator"


def license_number(env: dict[str, str] | None = None) -> str:
    """The licence number TotalSegmentator has stored ("" when none is set or the file is unreadable)."""
    path = totalsegmentator_home(env) / "config.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("license_number") or "")
    except (OSError, ValueError, AttributeError):
        return ""


@dataclass
class FrameSegmentations:
    """What :func:`segment_frames` made: a segmentation sequence and the segment names to export."""

    sequence: object
    myocardium_segment: str
    heart_segments: list[str]
    blood_pool_segment: str = ""  # the LV cavity, when TotalSegmentator found it in the reference frame


class SegmentationCancelled(RuntimeError):
    """Cancel was asked: the frames segmented so far stay in the scene (:attr:`sequence`)."""

    def __init__(self, message: str, sequence) -> None:
        super().__init__(message)
        self.sequence = sequence


def task_options(process: Callable, task: str, fast: bool, cpu: bool, subset: list[str] | None) -> dict:
    """The keyword arguments of the extension's ``process`` for ``task``: ``quality="fast"/"normal"`` where it
    takes ``quality`` (2026 and later), ``fast=`` where it takes that (earlier); never interactive pop-ups."""
    parameters = inspect.signature(process).parameters
    options = {"cpu": cpu, "task": task, "subset": subset, "interactive": False}
    if "quality" in parameters:
        options["quality"] = "fast" if fast else "normal"
    else:
        options["fast"] = fast
    return {k: v for k, v in options.items() if k in parameters}


def _run_task(logic, volume, segmentation, task: str, fast: bool, cpu: bool, subset: list[str] | None) -> None:
    logic.process(volume, segmentation, **task_options(logic.process, task, fast, cpu, subset))


def _segment_name(segmentation, wanted: str, frame: int, task: str) -> str:
    found = segmentation.GetSegmentation()
    names = [found.GetNthSegment(n).GetName() for n in range(found.GetNumberOfSegments())]
    if wanted in names:
        return wanted
    raise InputError(f"TotalSegmentator ({task}) found no '{wanted}' in frame {frame} (segments: {names}); check the "
                     "frame's field of view and contrast, or use your own segmentation")


def _browser_item(browser, ct_sequence, frame: int) -> int:
    """The browser's item number that shows item ``frame`` of ``ct_sequence`` (the same number when the CT is the
    browser's master sequence, else the master's item with the same index value)."""
    master = browser.GetMasterSequenceNode()
    if master is None or master is ct_sequence:
        return frame
    item = master.GetItemNumberFromIndexValue(ct_sequence.GetNthIndexValue(frame))
    if item < 0:
        raise InputError(f"the browser's master sequence {master.GetName()!r} has no item at the CT's index value "
                         f"{ct_sequence.GetNthIndexValue(frame)!r} (frame {frame})")
    return item


def segment_frames(logic, browser, ct_sequence, reference_frame: int = 0, *, scene=None, fast: bool = False,
                   cpu: bool = False, on_frame: Callable[[int, int], None] | None = None,
                   on_log: Callable[[str], None] | None = None,
                   cancelled: Callable[[], bool] | None = None) -> FrameSegmentations:
    """Segment every frame of ``ct_sequence`` (played by ``browser``) with the TotalSegmentator ``logic``.

    Returns the segmentation sequence (LV myocardium in every frame, plus the heart in the reference frame).
    ``on_frame(t, frames)`` is called before each frame (progress), ``on_log(line)`` with each line TotalSegmentator
    prints (the module processes GUI events there); ``cancelled()`` is asked before each frame and, when True,
    :class:`SegmentationCancelled` is raised (the frames done stay in its sequence). The browser is left on the
    reference frame.
    """
    scene = scene_or_default(scene)
    frames = ct_sequence.GetNumberOfDataNodes()
    if not 0 <= reference_frame < frames:
        raise InputError(f"reference frame {reference_frame} is outside 0..{frames - 1}")
    standard_names = getattr(logic, "useStandardSegmentNames", None)
    if standard_names is not None:
        logic.useStandardSegmentNames = False  # TotalSegmentator's own class names, e.g. heart_myocardium
    log_callback = getattr(logic, "logCallback", None)
    if on_log is not None:
        logic.logCallback = on_log
    blood_pool = ""
    sequence = new_sequence(scene, f"{ct_sequence.GetName()} TotalSegmentator", ct_sequence.GetIndexName(),
                             ct_sequence.GetIndexUnit(), ct_sequence.GetIndexType() == ct_sequence.NumericIndex)
    try:
        for t in range(frames):
            if cancelled is not None and cancelled():
                sequence.SetName(f"{sequence.GetName()} (cancelled: {t} of {frames} frames)")
                raise SegmentationCancelled(f"TotalSegmentator cancelled after {t} of {frames} frames", sequence)
            if on_frame is not None:
                on_frame(t, frames)
            browser.SetSelectedItemNumber(_browser_item(browser, ct_sequence, t))
            sequences_logic().UpdateProxyNodesFromSequences(browser)
            volume = browser.GetProxyNode(ct_sequence)
            segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"TotalSegmentator frame {t}")
            _run_task(logic, volume, segmentation, MYOCARDIUM_TASK, False, cpu, None)  # no fast mode for this task
            _segment_name(segmentation, MYOCARDIUM_SEGMENT, t, MYOCARDIUM_TASK)
            if t == reference_frame:
                heart = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "TotalSegmentator heart")
                _run_task(logic, volume, heart, HEART_TASK, fast, cpu, [HEART_SEGMENT])
                source = heart.GetSegmentation()
                segment_id = source.GetSegmentIdBySegmentName(_segment_name(heart, HEART_SEGMENT, t, HEART_TASK))
                segmentation.GetSegmentation().CopySegmentFromSegmentation(source, segment_id)
                scene.RemoveNode(heart)
                if segmentation.GetSegmentation().GetSegmentIdBySegmentName(BLOOD_POOL_SEGMENT):
                    blood_pool = BLOOD_POOL_SEGMENT
            sequence.SetDataNodeAtValue(segmentation, ct_sequence.GetNthIndexValue(t))
            scene.RemoveNode(segmentation)
    finally:
        if standard_names is not None:
            logic.useStandardSegmentNames = standard_names
        if on_log is not None:
            logic.logCallback = log_callback
        browser.SetSelectedItemNumber(_browser_item(browser, ct_sequence, reference_frame))
        sequences_logic().UpdateProxyNodesFromSequences(browser)
    if not browser.IsSynchronizedSequenceNode(sequence.GetID(), True):
        browser.AddSynchronizedSequenceNodeID(sequence.GetID())
    return FrameSegmentations(sequence, MYOCARDIUM_SEGMENT, [HEART_SEGMENT], blood_pool)
