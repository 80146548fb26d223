"""The LV myocardium of every frame from the TotalSegmentator extension's logic (when it is installed in Slicer).

Per frame, the CT's browser is stepped to the frame and the logic segments its proxy volume with task
``heartchambers_highres`` (segment ``heart_myocardium``; licensed, free for non-commercial use); on the reference
frame only, task ``total`` with the ``heart`` subset adds the heart mask the worker samples in (it takes the mask
from the reference frame alone). The results form a segmentation sequence with the CT's index values, ready for
:func:`.bridge.export_inputs`.

The TotalSegmentator logic is passed in (``slicer.modules.totalsegmentator.widgetRepresentation().self().logic``
or ``TotalSegmentator.TotalSegmentatorLogic()``), so this file needs neither Qt nor the extension itself, and tests
can drive it with a stand-in where the model weights cannot be downloaded.

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


def _run_task(logic, volume, segmentation, task: str, fast: bool, cpu: bool, subset: list[str] | None) -> None:
    parameters = inspect.signature(logic.process).parameters
    options = {"fast": fast, "cpu": cpu, "task": task, "subset": subset}
    if "interactive" in parameters:  # newer logic: never ask "segment all frames of the sequence?"
        options["interactive"] = False
    logic.process(volume, segmentation, **{k: v for k, v in options.items() if k in parameters})


def _segment_name(segmentation, wanted: str, frame: int, task: str) -> str:
    found = segmentation.GetSegmentation()
    names = [found.GetNthSegment(n).GetName() for n in range(found.GetNumberOfSegments())]
    if wanted in names:
        return wanted
    raise InputError(f"TotalSegmentator ({task}) found no '{wanted}' in frame {frame} (segments: {names}); check the "
                     "frame's field of view and contrast, or use your own segmentation")


def segment_frames(logic, browser, ct_sequence, reference_frame: int = 0, *, scene=None, fast: bool = False,
                   cpu: bool = False, on_frame: Callable[[int, int], None] | None = None) -> FrameSegmentations:
    """Segment every frame of ``ct_sequence`` (played by ``browser``) with the TotalSegmentator ``logic``.

    Returns the segmentation sequence (LV myocardium in every frame, plus the heart in the reference frame).
    ``on_frame(t, frames)`` is called before each frame (progress). The browser is left on the reference frame.
    """
    scene = scene_or_default(scene)
    frames = ct_sequence.GetNumberOfDataNodes()
    if not 0 <= reference_frame < frames:
        raise InputError(f"reference frame {reference_frame} is outside 0..{frames - 1}")
    standard_names = getattr(logic, "useStandardSegmentNames", None)
    if standard_names is not None:
        logic.useStandardSegmentNames = False  # TotalSegmentator's own class names, e.g. heart_myocardium
    sequence = new_sequence(scene, f"{ct_sequence.GetName()} TotalSegmentator", ct_sequence.GetIndexName(),
                             ct_sequence.GetIndexUnit(), ct_sequence.GetIndexType() == ct_sequence.NumericIndex)
    try:
        for t in range(frames):
            if on_frame is not None:
                on_frame(t, frames)
            browser.SetSelectedItemNumber(t)
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
            sequence.SetDataNodeAtValue(segmentation, ct_sequence.GetNthIndexValue(t))
            scene.RemoveNode(segmentation)
    finally:
        if standard_names is not None:
            logic.useStandardSegmentNames = standard_names
        browser.SetSelectedItemNumber(reference_frame)
        sequences_logic().UpdateProxyNodesFromSequences(browser)
    if not browser.IsSynchronizedSequenceNode(sequence.GetID(), True):
        browser.AddSynchronizedSequenceNodeID(sequence.GetID())
    return FrameSegmentations(sequence, MYOCARDIUM_SEGMENT, [HEART_SEGMENT])
