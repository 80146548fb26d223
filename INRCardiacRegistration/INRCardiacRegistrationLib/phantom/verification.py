"""Acceptance figures of the phantom, measured rather than taken from the parameters: torsion and shortening
from the ground-truth map (:func:`measure_motion`), and EF, myocardial volume, pushed-label Dice and the agreement
of trajectories and transforms from a written phantom's files (:func:`verify_phantom`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.itk_file_access import ITK_FILE_ACCESS
from .config import LABEL_VALUES, PhantomConfig
from .files import load_phantom
from .heart_frame import Z_APICAL, Z_BASE, endo_radius, epi_radius, from_heart_frame, heart_axes_lps
from .motion import ground_truth_map, push_reference_mask


def measure_motion(config: PhantomConfig, frame: int | None = None) -> dict[str, float]:
    """Torsion and longitudinal shortening of ``frame`` (default ES), measured by mapping reference points.

    Rings of mid-wall points at the apical level (``Z_APICAL``, 15 % of the LV length above the epicardial
    apex) and at the base plane are pushed through :func:`ground_truth_map`; each ring's rotation about the
    long axis (around its own mapped centroid; right-handed about e3 = apex -> base) is averaged.
    ``torsion_deg`` = basal minus apical rotation: positive when the apex turns counter-clockwise and the base
    clockwise seen from the apex, as in systole. ``longitudinal_shortening`` = 1 - (apex to base-ring centroid
    distance along e3 in ``frame``) / (the same at ED).
    """
    frame = config.es_frame if frame is None else int(frame)
    axes = heart_axes_lps()
    angles = np.deg2rad(np.arange(0.0, 360.0, 10.0))

    def ring(z: float) -> np.ndarray:
        radius = 0.5 * (float(endo_radius(z)) + float(epi_radius(z)))
        ring_heart = np.stack([radius * np.cos(angles), radius * np.sin(angles), np.full_like(angles, z)], -1)
        return from_heart_frame(ring_heart)

    def rotation(points_ref: np.ndarray, points_t: np.ndarray) -> float:
        a = (points_ref - points_ref.mean(axis=0)) @ axes[:2].T
        b = (points_t - points_t.mean(axis=0)) @ axes[:2].T
        turn = np.arctan2(b[:, 1], b[:, 0]) - np.arctan2(a[:, 1], a[:, 0])
        return float(np.rad2deg(np.angle(np.mean(np.exp(1j * turn)))))

    apical, basal = ring(Z_APICAL), ring(Z_BASE)
    rot_apex = rotation(apical, ground_truth_map(apical, frame, config))
    rot_base = rotation(basal, ground_truth_map(basal, frame, config))
    apex = from_heart_frame(np.zeros(3))
    apex_t = ground_truth_map(apex, frame, config)
    length_ed = float((basal.mean(axis=0) - apex) @ axes[2])
    length_t = float((ground_truth_map(basal, frame, config).mean(axis=0) - apex_t) @ axes[2])
    return {"frame": frame, "apex_rotation_deg": rot_apex, "base_rotation_deg": rot_base,
            "torsion_deg": rot_base - rot_apex, "longitudinal_shortening": 1.0 - length_t / length_ed}


def verify_phantom(manifest_path: str | Path) -> dict:
    """The acceptance figures of a written phantom, measured from its files.

    - ``ejection_fraction``: 1 - blood-pool volume at ES / at ED (label voxels);
    - ``myocardium_volume_max_deviation``: max over frames of |V_myo(t) / V_myo(ED) - 1|;
    - ``torsion_deg``, ``longitudinal_shortening``: :func:`measure_motion` at ES (from the map);
    - ``pushed_myocardium_dice_min``: min over frames of Dice(ED myocardium label pushed to frame t by
      :func:`push_reference_mask`, the frame-t label);
    - ``trajectories_vs_map_max_mm``: max |CSV position - phi_t(reference landmark)|;
    - ``transforms_vs_trajectories_max_mm``: max |ReadTransform(frame_t.h5).TransformPoint(reference landmark)
      - CSV position| (SimpleITK);
    plus per-frame lists ``blood_pool_ml``, ``myocardium_ml`` and ``pushed_myocardium_dice``.
    """
    from ..core.metrics import dice

    phantom = load_phantom(manifest_path)
    config = phantom.config
    voxel_ml = phantom.images[0].geometry.voxel_volume_mm3 / 1000.0

    def volumes(value: int) -> list[float]:
        return [float(np.count_nonzero(v.array == value)) * voxel_ml for v in phantom.labels]

    blood, myocardium = volumes(LABEL_VALUES["blood_pool"]), volumes(LABEL_VALUES["myocardium"])
    ed_myocardium = phantom.labels[0].array == LABEL_VALUES["myocardium"]
    dices = [dice(push_reference_mask(ed_myocardium, t, config), v.array == LABEL_VALUES["myocardium"])
             for t, v in enumerate(phantom.labels)]
    reference = phantom.landmarks.points_lps
    csv_error = transform_error = 0.0
    for t in range(config.frames):
        expected = phantom.trajectories.points_lps[t]
        csv_error = max(csv_error, float(np.abs(ground_truth_map(reference, t, config) - expected).max()))
        with ITK_FILE_ACCESS:
            transform = sitk.ReadTransform(str(phantom.ground_truth_path(t)))
        moved = np.array([transform.TransformPoint(tuple(float(c) for c in p)) for p in reference])
        transform_error = max(transform_error, float(np.linalg.norm(moved - expected, axis=1).max()))
    motion = measure_motion(config)
    return {
        "ed_frame": phantom.ed_frame, "es_frame": phantom.es_frame,
        "ejection_fraction": 1.0 - blood[phantom.es_frame] / blood[0],
        "myocardium_volume_max_deviation": max(abs(m / myocardium[0] - 1.0) for m in myocardium),
        "torsion_deg": motion["torsion_deg"], "longitudinal_shortening": motion["longitudinal_shortening"],
        "pushed_myocardium_dice_min": min(dices),
        "trajectories_vs_map_max_mm": csv_error, "transforms_vs_trajectories_max_mm": transform_error,
        "blood_pool_ml": blood, "myocardium_ml": myocardium, "pushed_myocardium_dice": dices,
    }
