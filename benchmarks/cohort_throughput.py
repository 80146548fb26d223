"""Cohort throughput of ``inr-cardiac batch`` on the local Dask cluster: patients per hour for several
workers x threads-per-task splits of the same machine, on phantoms of different seeds (results must not depend
on the split: the table shows the mean Dice of each).

    python benchmarks/cohort_throughput.py --device cpu --write-docs
    python benchmarks/cohort_throughput.py --device cuda --splits 1x8 --write-docs    # one GPU
"""

from __future__ import annotations

import argparse
import csv
import shutil
import time
from pathlib import Path

import torch
from benchmark_report import OUT, machine_description, update_section
from INRCardiacRegistrationLib.cli.main import main as cli_main
from INRCardiacRegistrationLib.phantom.config import PhantomConfig
from INRCardiacRegistrationLib.phantom.files import generate_phantom


def phantoms(root: Path, count: int, frames: int, spacing: float) -> Path:
    """``count`` phantoms (seeds 1..count) and their manifest; existing ones are reused."""
    rows = ["patient,image,labels,landmarks,landmarks_annotated"]
    for seed in range(1, count + 1):
        folder = root / f"phantom{seed:02d}"
        if not (folder / "manifest.json").is_file():
            generate_phantom(folder, PhantomConfig(frames=frames, spacing_mm=(spacing,) * 3, seed=seed))
        rows.append(f"{folder.name},{folder.name}/ct_4d.nii.gz,{folder.name}/labels_4d.nii.gz,"
                    f"{folder.name}/landmarks_reference.mrk.json,{folder.name}/landmark_trajectories.csv")
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def mean_dice(cohort: Path) -> float:
    with open(cohort / "cohort_summary.csv", newline="") as stream:
        values = [float(row["dice_mean"]) for row in csv.DictReader(stream) if row["dice_mean"]]
    return sum(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=2)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--spacing", type=float, default=3.5, help="phantom voxel size in mm")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--splits", nargs="+", default=["1x2", "2x1"], metavar="WxT",
                        help="local workers x threads per task (default: 1x2 2x1, for 2 cores)")
    parser.add_argument("--out", type=Path, default=OUT / "benchmarks" / "cohort")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()

    manifest = phantoms(args.out, args.patients, args.frames, args.spacing)
    options = f"--myocardium-label 1 --heart-label 1 2 3 --preset {args.preset} --device {args.device}"
    rows = []
    for split in args.splits:
        workers, threads = (int(v) for v in split.lower().split("x"))
        cohort = args.out / f"cohort_{workers}x{threads}"
        shutil.rmtree(cohort, ignore_errors=True)
        started = time.perf_counter()
        code = cli_main(["batch", str(manifest), "--out", str(cohort), "--workers", str(workers),
                         "--threads-per-task", str(threads), "--options", options, "--quiet", "--no-report",
                         *(["--gpus-per-task", "0"] if args.device == "cpu" else [])])
        wall = time.perf_counter() - started
        if code != 0:
            raise SystemExit(f"batch {split} failed (exit {code}); see {cohort}")
        rows.append((workers, threads, wall, 3600.0 * args.patients / wall, mean_dice(cohort)))
        print(f"{workers} workers x {threads} threads: {wall:.1f} s, {rows[-1][3]:.1f} patients/h, "
              f"mean Dice {rows[-1][4]:.4f}", flush=True)

    device = torch.device(args.device)
    table = ["| workers x threads per task | wall time (s) | patients / hour | mean Dice (over patients) |",
             "|---|---|---|---|"]
    table += [f"| {w} x {t} | {wall:.1f} | {rate:.1f} | {dice:.4f} |" for w, t, wall, rate, dice in rows]
    body = (f"Machine: {machine_description(device)}. {args.patients} phantoms (seeds 1..{args.patients}, "
            f"{args.frames} frames, {args.spacing:g} mm voxels), preset {args.preset}, device {args.device}; wall "
            "time of the whole `inr-cardiac batch` command on the embedded Dask cluster (cluster start and the "
            "per-patient worker start-up included).\n\n" + "\n".join(table) + "\n\nCommand: `python "
            "benchmarks/cohort_throughput.py --device " + args.device + " --splits " + " ".join(args.splits)
            + " --write-docs`")
    print(body)
    if args.write_docs:
        print(f"updated {update_section('Cohort throughput (inr-cardiac batch, local Dask cluster)', body)}")


if __name__ == "__main__":
    main()
