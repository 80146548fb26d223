"""A synthetic run folder with known metrics for the report tests: a shell moving on a small loop over the cycle.

Imported by ``test_report_figure.py`` and ``test_report_summary.py`` (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import math

import numpy as np
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.cycle.run_folder import FrameRecord, RunFolder
from INRCardiacRegistrationLib.fileio.landmarks import Trajectories, write_trajectories_csv

FRAMES = 6
REFERENCE = 1  # not frame 0, so that "excluding the reference" is tested for what it says
GEOMETRY = Geometry(size=(24, 24, 16), spacing=(2.0, 2.0, 2.5), origin=(-23.0, -23.0, -18.75))
DICE = {0: 0.91, 1: 1.0, 2: 0.84, 3: 0.78, 4: 0.88, 5: 0.95}
HD95 = {0: 1.5, 1: 0.0, 2: 2.25, 3: 3.5, 4: 2.0, 5: 1.25}
TRE = {0: 1.1, 1: 0.0, 2: 1.6, 3: 2.4, 4: 1.8, 5: 1.2}
JACOBIAN = {0: 0.01, 1: 0.0, 2: 0.05, 3: 0.2, 4: 0.0, 5: 0.02}
SECONDS = {0: 20.0, 1: 0.0, 2: 90.0, 3: 25.0, 4: 22.0, 5: 21.0}


def centre(t: int) -> np.ndarray:
    """The moving shell's centre in frame t (LPS mm): a small loop over the cycle."""
    angle = 2 * np.pi * t / FRAMES
    return np.array([3.0 * np.sin(angle), 2.0 * (1 - np.cos(angle)), 0.0])


def shell(at: np.ndarray) -> np.ndarray:
    """The myocardium mask: a shell of radii 7 and 12 mm around ``at``."""
    distance = np.linalg.norm(GEOMETRY.voxel_centres_physical() - at, axis=-1)
    return ((distance > 7.0) & (distance < 12.0)).astype(np.uint8)


def image(t: int) -> Volume:
    """Frame t's image: a bright blood pool inside the shell, with a little noise."""
    distance = np.linalg.norm(GEOMETRY.voxel_centres_physical() - centre(t), axis=-1)
    array = np.where(distance < 7.0, 300.0, np.where(distance < 12.0, 100.0, -50.0))
    return Volume(array + np.random.default_rng(t).normal(0, 5, array.shape), GEOMETRY, f"frame {t}")


def trajectories(frames: list[int], offset: float = 0.0) -> Trajectories:
    """Three landmarks riding on the shell in ``frames``, shifted by ``offset`` mm on every axis."""
    base = np.array([[9.0, 0.0, 0.0], [-9.0, 0.0, 2.0], [0.0, 9.0, -2.0]])
    points = np.stack([base + centre(t) + offset for t in frames])
    return Trajectories(tuple(frames), ("LAD", "CX", "apex"), points)


def make_run(root, finished: list[int], with_trajectories: bool = True, status: str = "finished",
             subvoxel: bool = False) -> RunFolder:
    """A run folder with the ``finished`` frames' records, labels and metrics (and predicted trajectories);
    ``subvoxel``: with the sub-voxel surface distances (0.4 and 0.15 times the voxel HD95), else as a run made
    before they existed."""
    run = RunFolder(root)
    run.write_run_info({"frames": FRAMES, "reference_frame": REFERENCE, "mode": "non-sequential",
                        "preset": "fast", "device": "cpu", "status": status,
                        "config": {"alpha": 0.8, "iterations": 300, "warm_start_iterations": 100, "width": 64,
                                   "depth": 2, "points": 1000}})
    run.append_event("started", frames=FRAMES, order=[2, 3, 4, 5, 0])
    records = []
    for t in finished:
        # the "propagated" shell lags 1 mm behind the true one
        Volume(shell(centre(t) - np.array([1.0, 0.0, 0.0]) * (t != REFERENCE)), GEOMETRY).write(run.label_path(t))
        reference = t == REFERENCE
        record = FrameRecord(frame=t, dice=DICE[t], hd95_mm=HD95[t], tre_mm=TRE[t],
                             negative_jacobian_pct=JACOBIAN[t], final_loss=math.nan if reference else 0.1,
                             seconds=SECONDS[t], iterations=0 if reference else (300 if t == 2 else 100),
                             alpha_used=0.8, pair=f"{REFERENCE}->{t}",
                             files={"label": run.label_path(t).relative_to(run.root).as_posix()})
        if subvoxel:
            record.hd95_subvoxel_mm, record.mean_surface_mm = 0.4 * HD95[t], 0.15 * HD95[t]
        run.write_frame_record(record)
        records.append(record)
    run.write_metrics(records)
    if with_trajectories:
        write_trajectories_csv(run.trajectories_csv, trajectories(sorted(finished), offset=0.5))
    return run
