"""The inputs of a whole-cycle registration, checked: frames on one grid, myocardium masks, the reference
frame's heart mask, landmarks on the reference frame and (optionally) annotated landmark positions per frame.

Every check raises :class:`InputError` with one line naming the frame, file or value, before anything is written.
:func:`read_cycle_inputs` reads them from a run request's files.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..core.masks import label_mask
from ..core.vocabulary import InputError
from ..core.volume import Volume
from ..fileio.landmarks import Landmarks, Trajectories
from .request import InputFiles


@dataclass
class CycleInputs:
    """Checked inputs. All volumes lie on one grid (the reference frame's); points are LPS mm.

    ``myocardium[t]``: boolean LV-myocardium mask of frame t, for the frames that have a label (the SDF term
    and Dice/HD95 use it); ``heart``: boolean heart mask of the reference frame (sampling) or None (then the
    reference myocardium dilated by a margin is sampled); ``landmarks``: points on the reference frame;
    ``annotated``: their annotated positions in some frames (for TRE); ``blood_pool``: boolean LV-cavity mask of
    the reference frame (for the cardiac function) or None; ``right_ventricle``: boolean RV-cavity mask of the reference
    frame (orients the strain's AHA segments) or None; ``evaluation[t]``: boolean LV-myocardium masks used only to
    score frame t (never in the loss or the sampling mask; where a frame has both, the run is scored against it).
    """

    frames: list[Volume]
    reference_frame: int
    myocardium: dict[int, Volume] = field(default_factory=dict)
    heart: Volume | None = None
    landmarks: Landmarks | None = None
    annotated: Trajectories | None = None
    blood_pool: Volume | None = None
    right_ventricle: Volume | None = None
    evaluation: dict[int, Volume] = field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        return len(self.frames)

    @property
    def scored_myocardium(self) -> dict[int, Volume]:
        """The myocardium each frame is scored against (Dice, HD95, the report's overlays): its evaluation label,
        else its registration label."""
        return {**self.myocardium, **self.evaluation}

    @property
    def reference(self) -> Volume:
        return self.frames[self.reference_frame]

    def validate(self) -> CycleInputs:
        """Raise InputError naming the first problem; return self."""
        count = len(self.frames)
        if count < 2:
            raise InputError(f"a cycle needs at least 2 frames, got {count}")
        if not 0 <= self.reference_frame < count:
            raise InputError(f"reference frame must be in [0, {count - 1}], got {self.reference_frame}")
        grid = self.frames[self.reference_frame].geometry
        for t, frame in enumerate(self.frames):
            if not grid.matches(frame.geometry):
                raise InputError(f"frame {t} grid ({frame.geometry.describe()}) differs from the reference frame's "
                                 f"({grid.describe()}); resample the frames onto one grid first")
            frame.require_finite()
        for what, masks in (("myocardium label", self.myocardium), ("evaluation label", self.evaluation)):
            for t, mask in masks.items():
                if not 0 <= t < count:
                    raise InputError(f"{what} given for frame {t}, but frames are 0..{count - 1}")
                if not grid.matches(mask.geometry):
                    raise InputError(f"{what} of frame {t} grid ({mask.geometry.describe()}) does not match "
                                     f"the frames' grid ({grid.describe()})")
                if not np.any(mask.array):
                    raise InputError(f"{what} of frame {t} is empty")
        if self.reference_frame not in self.myocardium:
            raise InputError(f"the reference frame {self.reference_frame} has no myocardium label: it defines what "
                             "is tracked (propagated labels, Dice/HD95) and, without a heart label, where to sample")
        if self.heart is not None:
            if not grid.matches(self.heart.geometry):
                raise InputError(f"heart mask grid ({self.heart.geometry.describe()}) does not match the frames' "
                                 f"grid ({grid.describe()})")
            if not np.any(self.heart.array):
                raise InputError("heart mask of the reference frame is empty")
        if self.landmarks is not None:
            inside = grid.contains_physical(self.landmarks.points_lps, margin_voxels=0.5)
            if not inside.all():
                n = int(np.flatnonzero(~inside)[0])
                point = ", ".join(f"{c:.1f}" for c in self.landmarks.points_lps[n])
                raise InputError(f"landmark {self.landmarks.labels[n]!r} at LPS ({point}) mm lies outside the "
                                 f"reference image ({grid.describe()}); {int((~inside).sum())} landmark(s) outside")
        if self.annotated is not None:
            bad_frames = [f for f in self.annotated.frames if not 0 <= f < count]
            if bad_frames:
                raise InputError(f"annotated landmarks name frames {bad_frames} outside 0..{count - 1}")
            if self.landmarks is None:
                raise InputError("annotated landmark positions need the reference landmarks", option="landmarks")
            unknown = sorted(set(self.annotated.labels) - set(self.landmarks.labels))
            if unknown:
                raise InputError(f"annotated landmarks {unknown} are not among the reference landmarks "
                                 f"{list(self.landmarks.labels)}")
        return self


def _values_text(values: Sequence) -> str:
    return ", ".join(str(int(v)) for v in values)


def myocardium_value(labels: dict[int, Volume], value: int | None) -> int:
    """The myocardium label value: ``value`` if given, else the only non-zero value of the label maps (a
    label map with several values needs an explicit choice)."""
    if value is not None:
        return int(value)
    present = sorted({int(v) for label in labels.values() for v in np.unique(label.array) if v != 0})
    if len(present) == 1:
        return present[0]
    raise InputError(f"the label maps hold the values {_values_text(present)}: say which one is the LV myocardium",
                     option="myocardium_label")


def build_cycle_inputs(frames: list[Volume], labels: dict[int, Volume], reference_frame: int = 0, *,
                       myocardium_label: int | None = None, heart_labels: Sequence[int] | None = None,
                       landmarks: Landmarks | None = None, annotated: Trajectories | None = None,
                       blood_pool_label: int | None = None, rv_label: int | None = None,
                       evaluation_labels: dict[int, Volume] | None = None) -> CycleInputs:
    """Checked :class:`CycleInputs` from label maps (integer values per frame).

    ``myocardium_label``: the LV-myocardium value (it must occur in every given label map); ``heart_labels``:
    values whose union, in the reference frame, is the heart mask used for sampling (None: sample around the
    reference myocardium); ``blood_pool_label`` / ``rv_label``: the LV / RV cavity values in the reference frame's
    label map; ``evaluation_labels``: label maps of frames to score the run against only (their myocardium value
    must occur in each).
    """
    if not labels:
        raise InputError("no labels given: the reference frame needs at least an LV-myocardium label", option="labels")
    value = myocardium_value(labels, myocardium_label)
    myocardium = {t: label_mask(label, value, name=f"myocardium (label {value}) of frame {t}")
                  for t, label in sorted(labels.items())}
    heart = None
    if heart_labels:
        heart = _reference_value_mask(labels, reference_frame, heart_labels, None, "heart")
    blood_pool = None
    if blood_pool_label is not None:
        blood_pool = _reference_value_mask(labels, reference_frame, [blood_pool_label], "blood_pool_label",
                                           "LV blood pool")
    right_ventricle = None
    if rv_label is not None:
        right_ventricle = _reference_value_mask(labels, reference_frame, [rv_label], "rv_label", "RV cavity")
    evaluation = {t: label_mask(label, value, name=f"evaluation myocardium (label {value}) of frame {t}")
                  for t, label in sorted((evaluation_labels or {}).items())}
    return CycleInputs(list(frames), reference_frame, myocardium, heart, landmarks, annotated, blood_pool,
                       right_ventricle, evaluation).validate()


def _reference_value_mask(labels: dict[int, Volume], reference_frame: int, values: Sequence[int],
                          option: str | None, what: str) -> Volume:
    """The voxels of any of ``values`` in the reference frame's label map, as a boolean volume (``what`` of the
    reference frame); InputError when the reference frame has no label map or none of the values occurs in it."""
    values = [int(v) for v in values]
    if reference_frame not in labels:
        raise InputError(f"{what} label(s) {values} were asked for, but the reference frame {reference_frame} has "
                         "no label map", option=option)
    reference_labels = labels[reference_frame]
    mask = np.isin(reference_labels.array, values)
    if not mask.any():
        present = [v for v in np.unique(reference_labels.array) if v != 0]
        raise InputError(f"{what} label value(s) {_values_text(values)} do not occur in the reference frame "
                         f"{reference_frame} (values present: {_values_text(present)})", option=option)
    return reference_labels.with_array(mask, name=f"{what} mask of the reference frame")


def read_cycle_inputs(files: InputFiles, reference_frame: int = 0) -> tuple[CycleInputs, list[str]]:
    """Read and check the inputs a run request names; returns ``(inputs, warnings)`` (the warnings met while reading,
    e.g. frames resampled onto the reference grid). Writes nothing."""
    from ..fileio.frame_sequence import read_frame_labels, read_frame_sequence
    from ..fileio.landmarks import read_landmarks, read_trajectories_csv

    if files.image is None:
        raise InputError("no image given (a 4D image, a folder of frames or a DICOM folder)", option="image")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sequence = read_frame_sequence(files.image, reference_frame)
        labels = read_frame_labels(list(files.labels) or None, sequence)
        evaluation = read_frame_labels(list(files.evaluation_labels), sequence, "evaluation labels") \
            if files.evaluation_labels else {}
    texts = list(sequence.warnings) + [str(w.message) for w in caught if str(w.message) not in sequence.warnings]
    landmarks = read_landmarks(files.landmarks, reference_frame) if files.landmarks else None
    annotated = read_trajectories_csv(files.landmarks_annotated) if files.landmarks_annotated else None
    inputs = build_cycle_inputs(sequence.frames, labels, reference_frame, myocardium_label=files.myocardium_label,
                                heart_labels=list(files.heart_label) or None, landmarks=landmarks, annotated=annotated,
                                blood_pool_label=files.blood_pool_label, rv_label=files.rv_label,
                                evaluation_labels=evaluation)
    return inputs, texts
