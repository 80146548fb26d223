"""ED -> ES myocardium propagation on the ACDC cine MRI patients: our whole-cycle registration against no
registration and an elastix B-spline registration of the same pair.

For each patient folder under ROOT (``cine_4d.nii.gz``, ``ed_gt.nii.gz``, ``es_gt.nii.gz``, ``meta.json``; labels
1 = RV cavity, 2 = LV myocardium, 3 = LV cavity):

- ours: the whole cycle registered non-sequentially from ED with ``inr-cardiac register`` (the worker users
  run) into ``OUT/<patient>_alpha<a>/``; the ED myocardium propagated to ES (``labels/frame_<ES>.nii.gz``) is
  scored against ``es_gt`` (Dice, HD95 in mm). alpha 0: only the ED labels are given (pure image tracking; they
  set the sampling region, the LV cavity (``--blood-pool-label 3``, the default ``--options``) and what is
  propagated); alpha 0.8: the ED and ES labels are given (the SDF term uses both, as in the paper, where every
  frame has a label); worst folding: the largest share (%) of the sampling mask with det J <= 0 over the cycle's
  frames (``metrics.csv``);
- no registration: the ED myocardium scored against the ES one;
- elastix (itk-elastix): elastix's default multi-resolution B-spline parameter map (3 resolutions, 10 mm final
  grid, Mattes mutual information + bending energy), fixed = ES frame, moving = ED frame; the ED myocardium
  warped to ES with nearest-neighbour interpolation.

Seconds: ours = the worker's wall time for the whole cycle (all frames), with the ED->ES pair's share in
brackets; elastix = the one pair. Finished runs in OUT are reused (delete OUT to measure again).

    python benchmarks/acdc.py --device cpu --write-docs
    python benchmarks/acdc.py --patients patient001 patient003 --alphas 0 --options "--blood-pool-label 3 --omega 20"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from baselines import MRI_NOTE, MRI_PRESET, elastix_propagation, score
from benchmark_report import machine_description, register_or_reuse, update_section
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder
from INRCardiacRegistrationLib.engine.config import PRESETS
from INRCardiacRegistrationLib.engine.devices import resolve_device
from INRCardiacRegistrationLib.fileio.frame_sequence import read_4d_frames

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "acdc"
MYOCARDIUM = 2
HEART = (1, 2, 3)
CAVITY = 3
# The ED label map holds the LV cavity as it holds the heart: given, its Jacobian penalty is relative to its mean (it
# empties; without it, the untextured cavity folded at up to 0.18 % of the mask in a frame). The README's cine MRI
# command gives it too.
CAVITY_OPTION = f"--blood-pool-label {CAVITY}"


def register(patient: Path, meta: dict, run_dir: Path, alpha: float, preset: str, device: str,
             options: list[str]) -> float:
    """Run (or reuse) the whole-cycle registration; return its wall seconds."""
    ed, es = meta["ed_index"], meta["es_index"]
    labels = [f"{ed}={patient / 'ed_gt.nii.gz'}"] + ([f"{es}={patient / 'es_gt.nii.gz'}"] if alpha > 0 else [])
    argv = ["register", str(patient / "cine_4d.nii.gz"), "--out", str(run_dir), "--reference-frame", str(ed),
            "--labels", *labels, "--myocardium-label", str(MYOCARDIUM), "--heart-label", *map(str, HEART),
            "--mode", "non-sequential", "--alpha", str(alpha), "--preset", preset, "--device", device, "--quiet",
            "--no-report", *options]
    return register_or_reuse(argv, run_dir)


def run_name(patient: str, alpha: float, options: str, preset: str = "fast") -> str:
    """``patient001_alpha0_omega20_local-ncc-mm20`` (``patient001_cine-mri_alpha0...`` for another preset than
    fast): the run folder of one setting."""
    slug = "".join(c for c in options.replace("--", "_").replace(" ", "") if c.isalnum() or c in "_-.")
    return f"{patient}{'' if preset == 'fast' else '_' + preset}_alpha{alpha:g}{slug}"


def evaluate_patient(patient: Path, out: Path, settings: list[tuple[float, str, str]], device: str) -> dict:
    meta = json.loads((patient / "meta.json").read_text())
    ed, es = meta["ed_index"], meta["es_index"]
    frames = read_4d_frames(patient / "cine_4d.nii.gz")
    ed_labels, es_labels = Volume.read(patient / "ed_gt.nii.gz"), Volume.read(patient / "es_gt.nii.gz")
    truth = np.asarray(es_labels.array) == MYOCARDIUM
    geometry = es_labels.geometry
    row = {"patient": patient.name, "frames": len(frames), "ed": ed, "es": es}
    row["none"] = score(np.asarray(ed_labels.array) == MYOCARDIUM, truth, geometry)
    warped, seconds = elastix_propagation(frames[es], frames[ed], ed_labels)
    row["elastix"] = (*score(warped == MYOCARDIUM, truth, geometry), seconds)
    for alpha, preset, options in settings:
        run_dir = out / run_name(patient.name, alpha, options, preset)
        seconds = register(patient, meta, run_dir, alpha, preset, device, options.split())
        run = RunFolder(run_dir)
        propagated = np.asarray(Volume.read(run.label_path(es)).array) > 0
        pair_seconds = run.read_frame_record(es).seconds
        folding = max(r["negative_jacobian_pct"] for r in run.read_metrics() if r["frame"] != ed)
        row[f"alpha{alpha:g}"] = (*score(propagated, truth, geometry), seconds, pair_seconds, folding)
    return row


def _mean_sd(values: list[float]) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} +- {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


def table(rows: list[dict], settings: list[tuple[float, str, str]]) -> str:
    methods = [("none", "no registration"), ("elastix", "elastix B-spline")] + [
        (f"alpha{a:g}", f"ours, alpha {a:g} (`--preset {p}{' ' + o if o else ''}`)") for a, p, o in settings]
    head = "| patient | ES frame | " + " | ".join(
        f"{title}: Dice / HD95 mm" + {"none": "", "elastix": " / s"}.get(key, " / s / worst folding %")
        for key, title in methods) + " |"
    lines = [head, "|" + "---|" * (2 + len(methods))]
    for row in rows:
        cells = []
        for key, _ in methods:
            value = row[key]
            text = f"{value[0]:.3f} / {value[1]:.1f}"
            if key == "elastix":
                text += f" / {value[2]:.1f}"
            elif key != "none":
                text += f" / {value[2]:.0f} ({value[3]:.1f}) / {value[4]:.3f}"
            cells.append(text)
        lines.append(f"| {row['patient']} | {row['es']} of {row['frames']} | " + " | ".join(cells) + " |")
    means = []
    for key, _ in methods:
        dices = [row[key][0] for row in rows]
        hds = [row[key][1] for row in rows]
        text = f"{_mean_sd(dices)} / {np.mean(hds):.1f} +- {np.std(hds, ddof=1) if len(hds) > 1 else 0:.1f}"
        if key.startswith("alpha"):
            text += f"; worst folding {max(row[key][4] for row in rows):.3f}"
        means.append(text)
    lines.append("| **mean +- sd** | | " + " | ".join(means) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_DATA, help=f"ACDC folder (default {DEFAULT_DATA})")
    parser.add_argument("--patients", nargs="+", default=None, help="patient folder names (default: all)")
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.0, 0.8])
    parser.add_argument("--preset", default=MRI_PRESET, choices=sorted(PRESETS),
                        help=f"preset of the alpha-0 runs (default {MRI_PRESET})")
    parser.add_argument("--labelled-preset", default="fast", choices=sorted(PRESETS),
                        help="preset of the runs with alpha > 0 (default fast, see the docs)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--options", default=CAVITY_OPTION,
                        help=f"further register options for the alpha-0 runs (default {CAVITY_OPTION!r})")
    parser.add_argument("--labelled-options", default=CAVITY_OPTION,
                        help=f"further register options for the runs with alpha > 0 (default {CAVITY_OPTION!r})")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "acdc")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if not args.root.is_dir():
        raise SystemExit(f"{args.root} is missing (see ../shared/data/README.md)")
    patients = sorted(p for p in args.root.iterdir() if (p / "meta.json").is_file())
    if args.patients:
        patients = [p for p in patients if p.name in args.patients]
    device = resolve_device(args.device)
    settings = [(alpha, args.preset, args.options) if alpha == 0 else
                (alpha, args.labelled_preset, args.labelled_options) for alpha in args.alphas]
    rows = []
    for patient in patients:
        print(f"{patient.name} ...", file=sys.stderr, flush=True)
        rows.append(evaluate_patient(patient, args.out, settings, device.type))
        print(table(rows[-1:], settings).splitlines()[2], file=sys.stderr, flush=True)
    text = table(rows, settings)
    print(text)
    if args.write_docs:
        command = f"python benchmarks/acdc.py --device {args.device} --write-docs"
        body = (f"Machine: {machine_description(device)}. Non-sequential from ED, device {device.type}. Dice and HD95 "
                f"of the ED LV myocardium propagated to "
                f"ES against the expert ES label; ours: s = whole cycle (ED->ES pair in brackets), worst folding = the "
                f"largest share of the sampling mask with det J <= 0 in a frame of the cycle.\n\n"
                f"    {command}\n\n{text}\n\n{MRI_NOTE}\n")
        update_section("ACDC cine MRI: ED -> ES myocardium", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
