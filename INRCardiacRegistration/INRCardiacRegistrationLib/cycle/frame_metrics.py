"""A finished frame's record: its metrics against the frame's own label and annotated landmarks (no torch).

Dice, HD95 (voxel and sub-voxel) and the mean surface distance compare the reference myocardium propagated to frame
t with frame t's own label (when it has one: its evaluation label, else its registration label);
TRE is the mean distance of the tracked landmarks to their annotated positions in frame t (when annotated).
"""

from __future__ import annotations

import numpy as np

from ..core.metrics import dice, hd95_mm, negative_jacobian_percent, target_registration_errors_mm
from ..core.surface_distance import surface_distances
from .inputs import CycleInputs
from .run_folder import FrameRecord


def landmark_errors_mm(inputs: CycleInputs, frame: int, positions_lps: np.ndarray | None) -> list[float]:
    """Distances (mm) of the tracked landmarks to their annotated positions in ``frame`` (empty when the frame has
    none); ``positions_lps``: the reference landmarks tracked into the frame, in ``inputs.landmarks`` order."""
    annotated = inputs.annotated
    if annotated is None or positions_lps is None or frame not in annotated.frames:
        return []
    truth = annotated.at_frame(frame)
    index = [inputs.landmarks.labels.index(label) for label in truth.labels]
    return target_registration_errors_mm(positions_lps[index], truth.points_lps).tolist()


def frame_record(inputs: CycleInputs, frame: int, propagated: np.ndarray, landmarks_lps: np.ndarray | None,
                 determinants: np.ndarray, pair: str, files: dict[str, str]) -> FrameRecord:
    """The record of ``frame``: the propagated reference myocardium (on frame t's grid), the tracked landmarks
    (LPS mm), det(grad phi) at the sampling-mask voxels, the pair's name and the frame's files (relative paths).
    The training figures (loss, iterations, seconds) are the caller's to add."""
    record = FrameRecord(frame=frame, negative_jacobian_pct=negative_jacobian_percent(determinants), pair=pair,
                         files=dict(files))
    scored = inputs.scored_myocardium
    if frame in scored:
        own = scored[frame].array
        record.dice = dice(propagated, own)
        record.hd95_mm = hd95_mm(propagated, own, inputs.frames[frame].geometry)
        surfaces = surface_distances(propagated, own, inputs.frames[frame].geometry)
        record.hd95_subvoxel_mm, record.mean_surface_mm = surfaces.hd95_mm, surfaces.mean_mm
    errors = landmark_errors_mm(inputs, frame, landmarks_lps)
    if errors:
        record.landmark_errors_mm = errors
        record.tre_mm = float(np.mean(errors))
    return record
