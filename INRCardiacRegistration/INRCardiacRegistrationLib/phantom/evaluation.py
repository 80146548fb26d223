"""A run on the synthetic phantom scored against the phantom's ground truth (known motion everywhere).

Per frame t: the written transform of the run (``transforms/frame_NNN.h5``, read back as a sampled field, i.e.
what SimpleITK and Slicer see) is compared with the analytic map ``phantom.motion.ground_truth_map`` at every voxel
centre of the reference myocardium (dense error, mm) and at the phantom's landmarks (landmark TRE, mm); Dice
and HD95 come from the run's metrics (the reference myocardium propagated to frame t against frame t's
label). When the run measured the cardiac function (``function.json``), its EDV, ESV, EF and ES frame are compared
with the phantom's own: the LV blood pool of its label map in every frame (rendered from the analytic motion),
and the ejection fraction it was configured with.
"""

from __future__ import annotations

import json
import math

import numpy as np

from ..core.masks import volume_ml
from ..core.vocabulary import InputError
from ..cycle.report_data import float_or_nan
from ..cycle.run_folder import RunFolder
from ..engine.displacement_map import SampledDisplacementMap
from ..fileio.displacement_field import read_displacement_field
from .config import LABEL_VALUES
from .files import Phantom
from .motion import ground_truth_map


def evaluate_run_on_phantom(run: RunFolder, phantom: Phantom) -> dict:
    """Ground-truth errors of every finished frame of ``run`` (the phantom's reference frame must be the run's).

    Returns ``{"frames": [per-frame dicts], "mean": {...}}``; per frame: ``frame``, ``dice``, ``hd95_mm``,
    ``hd95_subvoxel_mm``, ``landmark_tre_mm`` (all landmarks), ``coronary_tre_mm`` (the four coronary landmarks),
    ``dense_error_mm`` (mean over the reference myocardium), ``dense_error_p95_mm``, ``seconds``. Means are
    over the frames other than the reference.
    """
    info = run.read_run_info()
    reference = int(info["reference_frame"])
    if reference != phantom.ed_frame:
        raise InputError(f"the run's reference frame {reference} is not the phantom's reference frame "
                         f"{phantom.ed_frame}")
    config = phantom.config
    reference_labels = phantom.labels[reference]
    myocardium = np.argwhere(reference_labels.array == LABEL_VALUES["myocardium"])[:, ::-1]
    points = reference_labels.geometry.index_to_physical(myocardium)
    landmarks = phantom.landmarks.points_lps
    coronary = np.array([label[0].isdigit() for label in phantom.landmarks.labels])
    rows = []
    for row in run.read_metrics():
        frame = row["frame"]
        displacement, grid = read_displacement_field(run.transform_path(frame))
        field = SampledDisplacementMap(displacement, grid)
        dense = np.linalg.norm(field.map_points(points) - ground_truth_map(points, frame, config), axis=1)
        tre = np.linalg.norm(field.map_points(landmarks) - ground_truth_map(landmarks, frame, config), axis=1)
        rows.append({"frame": frame, "dice": row["dice"], "hd95_mm": row["hd95_mm"],
                     "hd95_subvoxel_mm": float_or_nan(row.get("hd95_subvoxel_mm")),  # NaN: an older run
                     "landmark_tre_mm": float(tre.mean()),
                     "coronary_tre_mm": float(tre[coronary].mean()) if coronary.any() else math.nan,
                     "dense_error_mm": float(dense.mean()), "dense_error_p95_mm": float(np.percentile(dense, 95)),
                     "seconds": row["seconds"]})
    others = [r for r in rows if r["frame"] != reference]
    keys = ("dice", "hd95_mm", "hd95_subvoxel_mm", "landmark_tre_mm", "coronary_tre_mm", "dense_error_mm",
            "dense_error_p95_mm", "seconds")
    mean = {key: _mean_of_finite([r[key] for r in others]) for key in keys}
    mean["dice_min"] = float(np.nanmin([r["dice"] for r in others])) if others else math.nan
    mean["frames"] = len(others)
    evaluation = {"frames": rows, "mean": mean}
    if run.function_json.is_file():
        evaluation["function"] = _function_against_truth(run, phantom)
    return evaluation


def _mean_of_finite(values: list[float]) -> float:
    """The mean of the finite values (NaN when there is none: no frame, or a column a run did not have)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _function_against_truth(run: RunFolder, phantom: Phantom) -> dict:
    """The run's EDV, ESV, EF and ES frame next to the phantom's (blood pool of its label maps; configured EF)."""
    ours = json.loads(run.function_json.read_text(encoding="utf-8"))
    truth = [volume_ml(np.asarray(labels.array) == LABEL_VALUES["blood_pool"], labels.geometry.spacing)
             for labels in phantom.labels]
    edv, esv = max(truth), min(truth)
    return {"edv_ml": ours["edv_ml"], "edv_true_ml": edv, "esv_ml": ours["esv_ml"], "esv_true_ml": esv,
            "ef_pct": ours["ef_pct"], "ef_true_pct": 100.0 * (edv - esv) / edv,
            "ef_configured_pct": 100.0 * phantom.config.ejection_fraction,
            "es_frame": ours["es_frame"], "es_frame_true": phantom.es_frame, "lv_volume_true_ml": truth}


def format_phantom_evaluation(evaluation: dict) -> str:
    """A few lines for the terminal: means over the non-reference frames."""
    mean = evaluation["mean"]
    return (f"against the phantom's ground truth ({mean['frames']} frames besides the reference):\n"
            f"  Dice mean {mean['dice']:.3f} (min {mean['dice_min']:.3f}), HD95 mean {mean['hd95_mm']:.2f} mm"
            + (f" (sub-voxel {mean['hd95_subvoxel_mm']:.2f} mm)" if math.isfinite(mean["hd95_subvoxel_mm"]) else "")
            + "\n"
            f"  landmark TRE mean {mean['landmark_tre_mm']:.2f} mm (coronary {mean['coronary_tre_mm']:.2f} mm)\n"
            f"  dense error in the myocardium mean {mean['dense_error_mm']:.2f} mm "
            f"(95th percentile {mean['dense_error_p95_mm']:.2f} mm)\n" + _function_text(evaluation.get("function")))


def _function_text(function: dict | None) -> str:
    if function is None:
        return ""
    return (f"  LV EF {function['ef_pct']:.1f} % (true {function['ef_true_pct']:.1f} %), EDV {function['edv_ml']:.1f} "
            f"mL (true {function['edv_true_ml']:.1f}), ESV {function['esv_ml']:.1f} mL (true "
            f"{function['esv_true_ml']:.1f}), ES frame {function['es_frame']} (true {function['es_frame_true']})\n")
