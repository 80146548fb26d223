"""Pair-only screening on the ACDC cine MRI patients: the ED -> ES pair alone, from scratch, for several settings.

A setting is a string of registration options as ``inr-cardiac register`` takes them (on top of the preset, alpha 0,
the heart labels 1-3 of the ED label map as the sampling region and its LV cavity (label 3) as the blood pool, as the
whole-cycle runs of ``acdc.py`` use).
For each patient and setting the ED myocardium is propagated to ES through the pair's inverse map and scored against
the expert ES label (Dice); the last Dice column carries it as before issue 17 (its 0/1 values interpolated
trilinearly and thresholded at 0.5, instead of its signed distance), for the ablation. Folding is the share of the
sampling-mask voxels with det(grad phi) <= 0. A pair takes seconds on a CPU, a whole cycle a minute: this is the
quick loop for trying a change (issue 17), not the result (a whole cycle warm-starts ED -> ES from its neighbour, see
``acdc.py``).

    python benchmarks/acdc_pairs.py --settings "" "--points 8000"
    python benchmarks/acdc_pairs.py --write-docs   # the settings screened for issue 17
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from baselines import MRI_PRESET
from benchmark_report import machine_description, publish
from INRCardiacRegistrationLib.core.masks import label_mask, sampling_mask
from INRCardiacRegistrationLib.core.metrics import dice
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.cycle.request import RunRequest
from INRCardiacRegistrationLib.engine.config import PRESETS
from INRCardiacRegistrationLib.engine.pair_registration import register_pair
from INRCardiacRegistrationLib.fileio.frame_sequence import read_4d_frames
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "acdc"
MYOCARDIUM, HEART, CAVITY = 2, (1, 2, 3), 3
# what was screened for issue 17, each on top of the cine-mri preset (fast, omega 12, NCC in 20 mm cubes): its parts
# undone one by one back to the fast preset (global NCC, omega 30), omega 20, a heavier, lighter or no Jacobian
# penalty, more points, other NCC neighbourhoods, a longer or faster optimisation, a larger network
SCREENED = ["", "--local-ncc-mm 0 --omega 30", "--local-ncc-mm 0", "--omega 30", "--omega 20",
            "--regularization-weight 0.2", "--regularization-weight 0.02", "--regularization-weight 0",
            "--points 8000", "--local-ncc-mm 12", "--local-ncc-mm 30", "--local-ncc-points 32", "--iterations 1000",
            "--learning-rate 3e-4", "--width 256 --depth 5 --iterations 600"]


def in_plane_border_distance(a: np.ndarray, b: np.ndarray, spacing_mm: float) -> float:
    """Mean distance (mm) between the borders of the masks ``a`` and ``b`` (k, j, i) within each slice (both
    directions, all slices pooled): the in-plane contour disagreement of a short-axis stack, whose 10 mm slices
    have no surface between them to measure. ``spacing_mm``: the in-plane pixel size (square pixels)."""
    distances = []
    for a_slice, b_slice in zip(a, b, strict=True):
        if not a_slice.any() or not b_slice.any():
            continue
        borders = [m & ~ndimage.binary_erosion(m, border_value=1) for m in (a_slice, b_slice)]
        for source, target in (borders, borders[::-1]):
            distances.append(ndimage.distance_transform_edt(~target)[source] * spacing_mm)
    return float(np.mean(np.concatenate(distances)))


def pair_scores(patient: Path, options: str, preset: str, device: str) -> dict:
    """Dice, Dice carrying the label's 0/1 values (``dice_01``), folding %, seconds of the ED -> ES pair of
    ``patient`` with ``options``, the voxel counts of the myocardium and the LV cavity: expert at ED and ES,
    carried from ED to ES (``volumes``: {"myocardium" | "cavity": (ED, ES, carried)}), and the in-plane border
    distance (mm) between carried and expert ES endocardium (the cavity's border) and epicardium (the border of
    myocardium and cavity together) (``borders``: {"endocardium" | "epicardium": mm})."""
    meta = json.loads((patient / "meta.json").read_text())
    frames = read_4d_frames(patient / "cine_4d.nii.gz")
    ed_labels, es_labels = Volume.read(patient / "ed_gt.nii.gz"), Volume.read(patient / "es_gt.nii.gz")
    config = RunRequest().with_options(["--preset", preset, "--alpha", "0", "--device", device,
                                        *options.split()]).registration
    fixed, moving = (frames[meta[key]] for key in ("ed_index", "es_index"))
    fixed, moving = (v.with_array(np.asarray(v.array, dtype=np.float32)) for v in (fixed, moving))
    mask = sampling_mask(heart=label_mask(ed_labels, HEART), dilation_voxels=config.mask_dilation_voxels,
                         myocardium_margin_mm=config.myocardium_margin_mm)
    myocardium, cavity = (label_mask(ed_labels, value) for value in (MYOCARDIUM, CAVITY))
    started = time.perf_counter()
    result = register_pair(fixed, moving, mask=mask, blood_pool=cavity, config=config)
    seconds = time.perf_counter() - started
    propagated, carried_cavity = result.propagate_fixed_labels(
        [label.with_array(label.array.astype(np.uint8)) for label in (myocardium, cavity)], moving.geometry)
    truth = np.asarray(es_labels.array) == MYOCARDIUM
    score = dice(np.asarray(propagated.array) > 0, truth)
    volumes = {name: (int(np.count_nonzero(np.asarray(ed_labels.array) == value)),
                      int(np.count_nonzero(np.asarray(es_labels.array) == value)),
                      int(np.count_nonzero(np.asarray(carried.array))))
               for name, value, carried in (("myocardium", MYOCARDIUM, propagated),
                                            ("cavity", CAVITY, carried_cavity))}
    carried_wall, carried_pool = (np.asarray(v.array) > 0 for v in (propagated, carried_cavity))
    expert_pool = np.asarray(es_labels.array) == CAVITY
    pixel = float(moving.geometry.spacing[0])
    borders = {"endocardium": in_plane_border_distance(carried_pool, expert_pool, pixel),
               "epicardium": in_plane_border_distance(carried_wall | carried_pool, truth | expert_pool, pixel)}
    # the label's 0/1 values carried (trilinear, >= 0.5) at the voxels where the carried label could be
    near = ndimage.binary_dilation(np.asarray(propagated.array) > 0, iterations=3)
    sources, _ = result.inverse_map_points(moving.geometry.index_to_physical(np.argwhere(near)[:, ::-1]))
    index = myocardium.geometry.physical_to_index(sources)[:, ::-1].T
    by_values = np.zeros(near.shape, dtype=bool)
    values = ndimage.map_coordinates(myocardium.array.astype(np.float32), index, order=1, mode="nearest")
    by_values[near] = values >= 0.5
    nodes = fixed.geometry.index_to_physical(np.argwhere(np.asarray(mask.array) > 0)[:, ::-1])
    folding = 100.0 * float(np.mean(result.jacobian_determinant_at(nodes) <= 0))
    return {"dice": score, "dice_01": dice(by_values, truth), "folding": folding, "seconds": seconds,
            "volumes": volumes, "borders": borders}


def volume_table(names: list[str], scores: list[dict]) -> str:
    """Voxel counts of the myocardium and the LV cavity at ED, at ES (expert) and carried to ES, and the in-plane
    border distances of the carried ES endocardium and epicardium to the expert's, per patient."""
    lines = ["| patient | myocardium: ED / ES / carried | cavity: ED / ES / carried | myocardium + cavity: ES / "
             "carried | border distance mm: endocardium / epicardium |", "|---|---|---|---|---|"]
    for name, score in zip(names, scores, strict=True):
        wall, pool = score["volumes"]["myocardium"], score["volumes"]["cavity"]
        lines.append(f"| {name} | {' / '.join(map(str, wall))} | {' / '.join(map(str, pool))} | "
                     f"{wall[1] + pool[1]} / {wall[2] + pool[2]} | {score['borders']['endocardium']:.2f} / "
                     f"{score['borders']['epicardium']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_DATA, help=f"ACDC folder (default {DEFAULT_DATA})")
    parser.add_argument("--settings", nargs="+", default=SCREENED,
                        help="option strings, each on top of --base (default: the settings screened for issue 17)")
    parser.add_argument("--base", default="", help="options of every setting (default none)")
    parser.add_argument("--preset", default=MRI_PRESET, choices=sorted(PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if not args.root.is_dir():
        raise SystemExit(f"{args.root} is missing (see ../shared/data/README.md)")
    patients = sorted(p for p in args.root.iterdir() if (p / "meta.json").is_file())
    names = [p.name for p in patients]
    lines = ["| setting | " + " | ".join(names)
             + " | mean Dice | mean Dice, 0/1 carry | worst folding % | s per pair |",
             "|---|" + "---|" * (len(names) + 4)]
    volumes = ""
    for number, setting in enumerate(args.settings):
        options = f"{args.base} {setting}".strip()
        scores = [pair_scores(patient, options, args.preset, args.device) for patient in patients]
        dices, by_values, folding, seconds = (np.array([s[k] for s in scores])
                                              for k in ("dice", "dice_01", "folding", "seconds"))
        if number == 0:
            volumes = volume_table(names, scores)
        line = (f"| `{setting or '(preset)'}` | " + " | ".join(f"{d:.3f}" for d in dices)
                + f" | {dices.mean():.4f} | {by_values.mean():.4f} | {folding.max():.3f} | {seconds.mean():.1f} |")
        lines.append(line)
        print(line, file=sys.stderr, flush=True)
    device = torch.device(args.device)
    base = f" and `{args.base}`" if args.base else ""
    text = "\n".join([f"Machine: {machine_description(device)}. Alpha 0, every setting on top of preset "
                      f"`{args.preset}`{base}, the LV cavity given as the blood pool; the ED -> ES pair alone, "
                      "from scratch; Dice of the ED myocardium propagated to ES against the expert ES label.", "",
                      "    python benchmarks/acdc_pairs.py --write-docs", "", *lines, "",
                      f"Voxels of the ED myocardium and LV cavity (expert labels 2 and 3) carried to ES through the "
                      f"first setting's map (`{args.settings[0] or '(preset)'}`), against the expert labels, and "
                      f"the mean in-plane distance (mm, within each slice, both directions) between the carried and "
                      f"the expert ES borders of the cavity (endocardium) and of myocardium and cavity together "
                      f"(epicardium):", "",
                      volumes])
    publish("ACDC cine MRI: ED -> ES pair screening", text, args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
