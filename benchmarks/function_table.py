"""Cardiac function from the tracked motion against the truth: LV volumes, ejection fraction and the ES frame.

- Phantom: ``inr-cardiac demo`` (the default phantom: 20 frames of 1.75 mm, configured EF 58 %; fast preset,
  non-sequential, alpha 0.8) into ``OUT/phantom`` (reused when finished). Truth: the LV blood pool of the
  phantom's own label map in every frame (rendered from its analytic motion) and the configured EF.
- ACDC (``../shared/data/acdc``, five patients): the whole cycle registered from ED with only the ED labels
  (alpha 0; the alpha-0 runs of ``benchmarks/acdc.py``, reused from its ``OUT``). The ED LV cavity (label 3) carried
  through the cycle gives the volume curve; truth: EDV, ESV and EF of the expert ED and ES cavity labels, the ES
  frame from ``meta.json``.

The function of a run is measured with ``inr-cardiac function RUN_DIR --blood-pool-label N --es-frame T``
(:mod:`INRCardiacRegistrationLib.function.volumes`).

    python benchmarks/function_table.py --device cpu --write-docs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from acdc import DEFAULT_DATA, register, run_name
from baselines import MRI_OPTIONS
from benchmark_report import machine_description, update_section
from INRCardiacRegistrationLib.cli.main import main as cli_main
from INRCardiacRegistrationLib.core.masks import volume_ml
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder
from INRCardiacRegistrationLib.engine.devices import resolve_device
from INRCardiacRegistrationLib.engine.displacement_map import SampledDisplacementMap
from INRCardiacRegistrationLib.fileio.displacement_field import read_displacement_field
from INRCardiacRegistrationLib.function.volumes import run_function
from INRCardiacRegistrationLib.phantom.config import LABEL_VALUES
from INRCardiacRegistrationLib.phantom.evaluation import evaluate_run_on_phantom
from INRCardiacRegistrationLib.phantom.files import load_phantom
from INRCardiacRegistrationLib.phantom.motion import ground_truth_map

ROOT = Path(__file__).resolve().parents[1]
ACDC_CAVITY = 3



def phantom_row(out: Path, device: str) -> dict:
    """Run (or reuse) the demo and compare its function with the phantom's."""
    if cli_main(["demo", "--out", str(out), "--quiet", "--device", device]) != 0:
        raise SystemExit(f"the demo failed in {out}")
    phantom = load_phantom(out / "phantom" / "manifest.json")
    run = RunFolder(out / "run")
    run_function(run.root, LABEL_VALUES["blood_pool"], phantom.es_frame)
    return {**evaluate_run_on_phantom(run, phantom)["function"], **cavity_diagnosis(run, phantom)}


def cavity_diagnosis(run: RunFolder, phantom) -> dict:
    """At the phantom's ES frame: the reference cavity carried by the phantom's ground-truth field through the same
    code (is the volume method right?), the registered field's error inside the cavity against the exact motion,
    and where the carried cavity's extra voxels lie in the phantom's labels."""
    t = phantom.es_frame
    reference = phantom.labels[0]
    cavity = reference.with_array((np.asarray(reference.array) == LABEL_VALUES["blood_pool"]).astype(np.uint8))
    truth_u, truth_grid = read_displacement_field(phantom.manifest_path.parent / f"ground_truth/frame_{t:03d}.h5")
    by_truth = SampledDisplacementMap(truth_u, truth_grid).propagate_fixed_label(cavity, reference.geometry)
    ours = SampledDisplacementMap(*read_displacement_field(run.transform_path(t)))
    carried = np.asarray(ours.propagate_fixed_label(cavity, reference.geometry).array) > 0
    points = reference.geometry.index_to_physical(np.argwhere(np.asarray(cavity.array) > 0)[:, ::-1])
    error = np.linalg.norm(ours.map_points(points) - ground_truth_map(points, t, phantom.config), axis=1)
    labels_t = np.asarray(phantom.labels[t].array)
    extra = carried & (labels_t != LABEL_VALUES["blood_pool"])
    return {"esv_by_true_field_ml": volume_ml(by_truth.array, reference.geometry.spacing),
            "cavity_error_mean_mm": float(error.mean()), "cavity_error_p95_mm": float(np.percentile(error, 95)),
            "extra_voxels": int(extra.sum()), "extra_in_rest_of_heart": int((extra & (labels_t == 3)).sum()),
            "extra_in_myocardium": int((extra & (labels_t == LABEL_VALUES["myocardium"])).sum())}


def phantom_note(row: dict) -> str:
    return (f"Where the error comes from (ES frame): the phantom's ground-truth field through the same code carries "
            f"the cavity to {row['esv_by_true_field_ml']:.1f} mL (true {row['esv_true_ml']:.1f}), so the volume "
            f"method is right; the registered motion inside the blood pool is not (error against the exact motion "
            f"in the cavity {row['cavity_error_mean_mm']:.1f} mm mean, p95 {row['cavity_error_p95_mm']:.1f} mm). Of "
            f"the {row['extra_voxels']:,} carried-cavity voxels outside the true cavity, "
            f"{row['extra_in_rest_of_heart']:,} lie in the atria and aortic root (label 3) and "
            f"{row['extra_in_myocardium']:,} in the myocardium: the cavity's basal cap (valve plane) has no image edge "
            "and does not follow the annulus.")


def acdc_row(patient: Path, out: Path, device: str) -> dict:
    meta = json.loads((patient / "meta.json").read_text())
    run_dir = out / run_name(patient.name, 0.0, MRI_OPTIONS)
    register(patient, meta, run_dir, 0.0, "fast", device, MRI_OPTIONS.split())
    ours = run_function(run_dir, ACDC_CAVITY, meta["es_index"])
    volumes = []
    for name in ("ed_gt.nii.gz", "es_gt.nii.gz"):
        labels = Volume.read(patient / name)
        volumes.append(volume_ml(np.asarray(labels.array) == ACDC_CAVITY, labels.geometry.spacing))
    edv, esv = volumes
    return {"patient": patient.name, "frames": meta["n_frames"], "es_true": meta["es_index"], "es": ours.es_frame,
            "edv": ours.edv_ml, "edv_true": edv, "esv": ours.esv_ml, "esv_true": esv, "ef": ours.ef_pct,
            "ef_true": 100.0 * (edv - esv) / edv}


def phantom_table(row: dict) -> str:
    return "\n".join([
        "| | EDV (mL) | ESV (mL) | EF (%) | ES frame |",
        "|---|---|---|---|---|",
        f"| ours | {row['edv_ml']:.1f} | {row['esv_ml']:.1f} | {row['ef_pct']:.1f} | {row['es_frame']} |",
        f"| phantom (its labels) | {row['edv_true_ml']:.1f} | {row['esv_true_ml']:.1f} | {row['ef_true_pct']:.1f} | "
        f"{row['es_frame_true']} |",
        f"| difference | {row['edv_ml'] - row['edv_true_ml']:+.1f} | {row['esv_ml'] - row['esv_true_ml']:+.1f} | "
        f"{row['ef_pct'] - row['ef_true_pct']:+.1f} | {row['es_frame'] - row['es_frame_true']:+d} |",
    ]) + f"\n\nThe phantom was configured with EF {row['ef_configured_pct']:.1f} %."


def acdc_table(rows: list[dict]) -> str:
    lines = ["| patient | ES frame: found / expert | EDV mL: ours / expert | ESV mL: ours / expert | "
             "EF %: ours / expert | EF error (points) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['patient']} | {r['es']} / {r['es_true']} of {r['frames']} | {r['edv']:.1f} / "
                     f"{r['edv_true']:.1f} | {r['esv']:.1f} / {r['esv_true']:.1f} | {r['ef']:.1f} / "
                     f"{r['ef_true']:.1f} | {r['ef'] - r['ef_true']:+.1f} |")
    errors = np.abs([r["ef"] - r["ef_true"] for r in rows])
    lines.append(f"| **mean absolute error** | | | | | {errors.mean():.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_DATA, help=f"ACDC folder (default {DEFAULT_DATA})")
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-phantom", action="store_true")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    device = resolve_device(args.device)
    machine = f"Machine: {machine_description(device)}."
    sections = {}
    if not args.skip_phantom:
        print("phantom ...", file=sys.stderr, flush=True)
        row = phantom_row(args.out / "phantom_function", device.type)
        sections["Cardiac function: phantom"] = (
            f"`python benchmarks/function_table.py --device {device.type} --write-docs`\n\n{machine} The default "
            "phantom (20 frames of 1.75 mm) registered by `inr-cardiac demo` (fast preset, non-sequential, alpha "
            "0.8); the LV cavity of frame 0 carried through the cycle against the blood pool of the phantom's own "
            f"label map in every frame.\n\n{phantom_table(row)}\n\n{phantom_note(row)}")
        print(phantom_table(row), file=sys.stderr)
    patients = sorted(p for p in args.root.iterdir() if (p / "meta.json").is_file()) if args.root.is_dir() else []
    if patients:
        rows = []
        for patient in patients:
            print(f"{patient.name} ...", file=sys.stderr, flush=True)
            rows.append(acdc_row(patient, args.out / "acdc", device.type))
        sections["Cardiac function: ACDC"] = (
            f"`python benchmarks/function_table.py --device {device.type} --write-docs`\n\n{machine} Whole cycle "
            f"from ED with only the ED labels (alpha 0, fast preset, `{MRI_OPTIONS}`, the alpha-0 runs of "
            "`benchmarks/acdc.py`); the ED LV cavity (label 3) carried through the cycle against the expert ED and "
            f"ES cavity labels.\n\n{acdc_table(rows)}")
        print(acdc_table(rows), file=sys.stderr)
    if args.write_docs:
        for title, body in sections.items():
            update_section(title, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
