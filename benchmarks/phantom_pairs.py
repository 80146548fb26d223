"""Pair screening on the phantom: reference -> frame pairs alone, from scratch, for several settings, scored
against the phantom's known motion (synthetic texture, or a real CT's texture with ``--texture-ct``).

A setting is a string of registration options as ``inr-cardiac register`` takes them, on top of the preset and
alpha 0, with the heart labels 1-3 of the reference as the sampling region (dilated as the runs do). For each of
the frames (default: 4, the ES frame 8 and 14 of the 20-frame phantom) the pair's network is compared with the
analytic motion at every voxel centre of the reference myocardium (dense error, mean and 95th percentile, mm) and
at the 17 landmarks (TRE, mm). A pair takes seconds: the quick loop for trying a change (issue 17); a whole cycle
(warm-started from the neighbour) is ``phantom_table.py``.

    python benchmarks/phantom_pairs.py --out out/phantom_pairs --write-docs
    python benchmarks/phantom_pairs.py --out out/phantom_pairs_ct --texture-ct ../shared/data/ct/heart_ct_crop.nii.gz \\
        --write-docs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from benchmark_report import OUT, machine_description, publish, shown_path
from INRCardiacRegistrationLib.core.masks import label_mask, sampling_mask
from INRCardiacRegistrationLib.cycle.request import RunRequest
from INRCardiacRegistrationLib.engine.config import PRESETS
from INRCardiacRegistrationLib.engine.pair_registration import register_pair
from INRCardiacRegistrationLib.phantom.config import LABEL_VALUES
from INRCardiacRegistrationLib.phantom.motion import ground_truth_map
from phantom_table import phantom_in

# the parts of the ct / cine-mri presets one by one, on top of fast (global NCC, omega 30)
SCREENED = ["", "--omega 12", "--local-ncc-mm 20", "--local-ncc-mm 12", "--local-ncc-mm 20 --omega 20",
            "--local-ncc-mm 20 --omega 12"]


def pair_errors(phantom, frames: list[int], options: str, preset: str, device: str) -> np.ndarray:
    """(frames, 4): dense error mean and p95, landmark TRE (mm) and seconds of each reference -> frame pair."""
    config = RunRequest().with_options(["--preset", preset, "--alpha", "0", "--device", device,
                                        *options.split()]).registration
    reference = phantom.labels[phantom.ed_frame]
    mask = sampling_mask(heart=label_mask(reference, (1, 2, 3)), dilation_voxels=config.mask_dilation_voxels,
                         myocardium_margin_mm=config.myocardium_margin_mm)
    myocardium = reference.geometry.index_to_physical(
        np.argwhere(np.asarray(reference.array) == LABEL_VALUES["myocardium"])[:, ::-1])
    landmarks = phantom.landmarks.points_lps
    rows = []
    for frame in frames:
        started = time.perf_counter()
        result = register_pair(phantom.images[phantom.ed_frame], phantom.images[frame], mask=mask, config=config)
        seconds = time.perf_counter() - started
        dense = np.linalg.norm(result.map_points(myocardium) - ground_truth_map(myocardium, frame, phantom.config),
                               axis=1)
        tre = np.linalg.norm(result.map_points(landmarks) - ground_truth_map(landmarks, frame, phantom.config), axis=1)
        rows.append((dense.mean(), np.percentile(dense, 95), tre.mean(), seconds))
    return np.array(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT / "phantom_pairs", help="where the phantom is written")
    parser.add_argument("--texture-ct", type=Path, default=None,
                        help="a real 3D CT (HU) as the reference frame's texture (no noise or blur added)")
    parser.add_argument("--frames", type=int, nargs="+", default=[4, 8, 14])
    parser.add_argument("--settings", nargs="+", default=SCREENED, help="option strings on top of the preset")
    parser.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    phantom = phantom_in(args.out, 20, args.texture_ct)
    lines = ["| setting | dense error (mm) | dense error p95 (mm) | landmark TRE (mm) | s per pair |",
             "|---|---|---|---|---|"]
    for setting in args.settings:
        mean = pair_errors(phantom, args.frames, setting, args.preset, args.device).mean(axis=0)
        lines.append(f"| `{setting or '(preset)'}` | {mean[0]:.3f} | {mean[1]:.3f} | {mean[2]:.3f} | {mean[3]:.1f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    texture = "a real CT's texture" if args.texture_ct is not None else "synthetic texture"
    command = (f"python benchmarks/phantom_pairs.py --out {shown_path(args.out)} --preset {args.preset} "
               f"--device {args.device}"
               + (f" --texture-ct {args.texture_ct}" if args.texture_ct is not None else "") + " --write-docs")
    text = "\n".join([f"Machine: {machine_description(torch.device(args.device))}. Phantom with {texture}; alpha 0, "
                      f"every setting on top of preset `{args.preset}`; the reference -> frame pairs "
                      f"{', '.join(map(str, args.frames))} alone, from scratch (means over them).", "",
                      f"    {command}", "", *lines])
    title = "Phantom pair screening" + (" (real CT texture)" if args.texture_ct is not None else "")
    publish(title, text, args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
