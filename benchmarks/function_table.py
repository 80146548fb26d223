"""Cardiac function from the tracked motion against the truth: LV volumes, ejection fraction, the ES frame, strain.

- Phantom: ``inr-cardiac demo`` (the default phantom: 20 frames of 1.75 mm, configured EF 58 %; fast preset,
  non-sequential, alpha 0.8) into ``OUT/phantom_function`` (reused when finished). Truth: the LV blood pool of the
  phantom's own label map in every frame (rendered from its analytic motion), also cut at the annulus plane carried
  by the exact motion, and the configured EF; strain: the same estimator on the analytic motion.
- ACDC (``../shared/data/acdc``, five patients): the whole cycle registered from ED with only the ED labels
  (alpha 0; without and with the cavity's label at registration, the latter the alpha-0 runs of
  ``benchmarks/acdc.py``, reused from its ``OUT``). The ED LV cavity (label 3) carried
  through the cycle gives the volume curve; truth: EDV, ESV and EF of the expert ED and ES cavity labels, the ES
  frame from ``meta.json``.

The function of a run is measured with ``inr-cardiac function RUN_DIR --blood-pool-label N --es-frame T``
(:mod:`INRCardiacRegistrationLib.function.cardiac_function`).

    python benchmarks/function_table.py --device cpu --write-docs
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from acdc import DEFAULT_DATA, register, run_name
from baselines import MRI_PRESET
from benchmark_report import machine_description, update_section
from INRCardiacRegistrationLib.cli.main import main as cli_main
from INRCardiacRegistrationLib.core.aha_segments import SEGMENT_NAMES
from INRCardiacRegistrationLib.core.masks import volume_ml
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder
from INRCardiacRegistrationLib.engine.devices import resolve_device
from INRCardiacRegistrationLib.function.basal_plane import find_basal_annulus
from INRCardiacRegistrationLib.function.cardiac_function import CardiacFunction, run_function
from INRCardiacRegistrationLib.function.lv_frame import estimate_lv_frame
from INRCardiacRegistrationLib.function.report_figure import peak_segment_strain, write_function_report
from INRCardiacRegistrationLib.function.strain import SEGMENTS, FrameStrain, MyocardialPoints, frame_strain
from INRCardiacRegistrationLib.function.volumes import capped_cavity
from INRCardiacRegistrationLib.phantom.config import LABEL_VALUES
from INRCardiacRegistrationLib.phantom.evaluation import evaluate_run_on_phantom
from INRCardiacRegistrationLib.phantom.files import load_phantom
from INRCardiacRegistrationLib.phantom.motion import ground_truth_deformation_gradient, ground_truth_map

ROOT = Path(__file__).resolve().parents[1]
ACDC_CAVITY = 3



def phantom_row(out: Path, device: str) -> dict:
    """Run (or reuse) the demo and compare its function with the phantom's."""
    if cli_main(["demo", "--out", str(out), "--quiet", "--device", device]) != 0:
        raise SystemExit(f"the demo failed in {out}")
    phantom = load_phantom(out / "phantom" / "manifest.json")
    run = RunFolder(out / "run")
    run_function(run.root, LABEL_VALUES["blood_pool"], phantom.es_frame)
    return {**evaluate_run_on_phantom(run, phantom)["function"], **capped_truth(phantom),
            **strain_against_truth(run, phantom)}


def _reference_masks(phantom) -> tuple[np.ndarray, np.ndarray, object]:
    reference = phantom.labels[0]
    values = np.asarray(reference.array)
    return values == LABEL_VALUES["myocardium"], values == LABEL_VALUES["blood_pool"], reference.geometry


def capped_truth(phantom) -> dict:
    """The phantom's LV volume by our definition: its own blood-pool label in each frame, cut at the plane through
    the reference annulus carried by the exact motion."""
    wall, cavity, geometry = _reference_masks(phantom)
    annulus = find_basal_annulus(cavity, wall, geometry)
    volumes = []
    for t, labels in enumerate(phantom.labels):
        carried = ground_truth_map(annulus.points_mm, t, phantom.config)
        blood = np.asarray(labels.array) == LABEL_VALUES["blood_pool"]
        volumes.append(volume_ml(capped_cavity(blood, labels.geometry, annulus, carried), labels.geometry.spacing))
    edv, esv = max(volumes), min(volumes)
    return {"edv_capped_true_ml": edv, "esv_capped_true_ml": esv, "ef_capped_true_pct": 100.0 * (edv - esv) / edv}


def exact_strain(phantom, frames: list[int]) -> tuple[FrameStrain, ...]:
    """Per frame, the strain estimator applied to the phantom's analytic map (phi and F by central differences of
    ``ground_truth_map``, not the registration code) at the reference points the run's function uses."""
    wall, cavity, geometry = _reference_masks(phantom)
    points = MyocardialPoints.of(wall, geometry, estimate_lv_frame(wall, geometry, cavity))
    return tuple(frame_strain(points, ground_truth_map(points.points_mm, t, phantom.config),
                              ground_truth_deformation_gradient(points.points_mm, t, phantom.config)) for t in frames)


def _csv_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def strain_against_truth(run: RunFolder, phantom) -> dict:
    """Our strain (the run's function.csv and strain_segments.csv) at the phantom's ES frame against
    :func:`exact_strain` there."""
    es = phantom.es_frame
    (truth,) = exact_strain(phantom, [es])
    ours = {int(r["frame"]): r for r in _csv_rows(run.function_csv)}
    segments = {(int(r["frame"]), int(r["segment"])): r for r in _csv_rows(run.strain_segments_csv)}
    row = {"strain_es_frame": es}
    for name in ("gls_pct", "gcs_pct", "grs_pct", "twist_deg"):
        row[f"{name}_es"] = float(ours[es][name])
        row[f"{name}_es_true"] = getattr(truth, name)
    per_segment = []
    for index, segment in enumerate(SEGMENTS):
        mine = segments[(es, segment)]
        per_segment.append({"segment": segment, **{
            f"{kind}": float(mine[f"{kind}_pct"]) for kind in ("radial", "circumferential", "longitudinal")},
            **{f"{kind}_true": truth.segments_pct[index, k]
               for k, kind in enumerate(("radial", "circumferential", "longitudinal"))}})
    row["segments_es"] = per_segment
    return row


HYPOKINETIC_SEGMENT = 7  # mid anterior: the territory of the LAD


def hypokinetic_row(out: Path, device: str) -> dict:
    """The demo on a phantom whose AHA segment :data:`HYPOKINETIC_SEGMENT` keeps about a fifth of its radial
    wall motion: our peak strain per segment against the same estimator on the analytic motion, which segment
    each finds weakest, and the README's figure (the run's function report, that segment outlined)."""
    if cli_main(["demo", "--out", str(out), "--quiet", "--device", device, "--hypokinetic-segment",
                 str(HYPOKINETIC_SEGMENT)]) != 0:
        raise SystemExit(f"the demo failed in {out}")
    phantom = load_phantom(out / "phantom" / "manifest.json")
    ours = run_function(out / "run", LABEL_VALUES["blood_pool"], phantom.es_frame)
    write_function_report(ours, ROOT / "docs" / "function_report.png", "Cardiac function of the phantom with a "
                          f"hypokinetic segment {HYPOKINETIC_SEGMENT} (inr-cardiac demo --hypokinetic-segment "
                          f"{HYPOKINETIC_SEGMENT})", marked=HYPOKINETIC_SEGMENT)
    truth = CardiacFunction(ours.frames, ours.frame_count, 0, ours.lv_volume_ml, ours.myocardium_volume_ml,
                            strain=exact_strain(phantom, list(ours.frames)))
    mine, exact = peak_segment_strain(ours), peak_segment_strain(truth)
    return {"segment": HYPOKINETIC_SEGMENT, "ours": mine, "truth": exact, "ef": ours.ef_pct,
            "weakest_radial": int(np.argmin(mine[:16, 0])) + 1,
            "weakest_radial_true": int(np.argmin(exact[:16, 0])) + 1,
            "weakest_circumferential": int(np.argmax(mine[:16, 1])) + 1,
            "weakest_circumferential_true": int(np.argmax(exact[:16, 1])) + 1}


def hypokinetic_table(row: dict) -> str:
    lines = ["| segment | peak radial %: ours / truth | peak circumferential %: ours / truth | peak longitudinal %: "
             "ours / truth |", "|---|---|---|---|"]
    for index, segment in enumerate(SEGMENTS):
        name = f"**{segment} {SEGMENT_NAMES[segment]}**" if segment == row["segment"] else \
            f"{segment} {SEGMENT_NAMES[segment]}"
        cells = " | ".join(f"{row['ours'][index, k]:.1f} / {row['truth'][index, k]:.1f}" for k in range(3))
        lines.append(f"| {name} | {cells} |")
    errors = np.abs(row["ours"] - row["truth"]).mean(axis=0)
    lines.append("| **mean absolute error** | " + " | ".join(f"{e:.1f}" for e in errors) + " |")
    return "\n".join(lines) + (
        f"\n\nThe weakest segment (least peak radial strain): ours {row['weakest_radial']}, truth "
        f"{row['weakest_radial_true']}; least circumferential shortening: ours {row['weakest_circumferential']}, "
        f"truth {row['weakest_circumferential_true']} (the phantom's hypokinetic segment: {row['segment']}). "
        f"EF {row['ef']:.1f} %. The bull's-eyes: `docs/function_report.png`.")


def phantom_note(row: dict) -> str:
    return (f"Truth by the same definition: the phantom's blood-pool label in every frame, cut at the plane through "
            f"the annulus carried by the exact motion: EDV {row['edv_capped_true_ml']:.1f} mL, ESV "
            f"{row['esv_capped_true_ml']:.1f} mL, EF {row['ef_capped_true_pct']:.1f} % (ours "
            f"{row['ef_pct'] - row['ef_capped_true_pct']:+.1f} points). Uncapped labels: EF {row['ef_true_pct']:.1f} "
            f"%; configured {row['ef_configured_pct']:.1f} %.")


def strain_table(row: dict) -> str:
    lines = [f"| at ES (frame {row['strain_es_frame']}) | ours | truth (analytic motion) | difference |",
             "|---|---|---|---|"]
    for name, label, unit in (("gls_pct", "GLS", "%"), ("gcs_pct", "GCS", "%"), ("grs_pct", "GRS", "%"),
                              ("twist_deg", "twist", "deg")):
        ours, truth = row[f"{name}_es"], row[f"{name}_es_true"]
        lines.append(f"| {label} ({unit}) | {ours:.1f} | {truth:.1f} | {ours - truth:+.1f} |")
    return "\n".join(lines)


def segment_table(row: dict) -> str:
    lines = ["| segment | radial %: ours / truth | circumferential %: ours / truth | longitudinal %: ours / truth |",
             "|---|---|---|---|"]
    errors = []
    for r in row["segments_es"]:
        cells = []
        for kind in ("radial", "circumferential", "longitudinal"):
            cells.append(f"{r[kind]:.1f} / {r[kind + '_true']:.1f}")
            errors.append((kind, abs(r[kind] - r[kind + "_true"])))
        lines.append(f"| {r['segment']} {SEGMENT_NAMES[r['segment']]} | " + " | ".join(cells) + " |")
    means = {kind: np.mean([e for k, e in errors if k == kind]) for kind in ("radial", "circumferential",
                                                                              "longitudinal")}
    lines.append("| **mean absolute error** | " + " | ".join(f"{means[k]:.1f}" for k in means) + " |")
    return "\n".join(lines)


def acdc_row(patient: Path, out: Path, device: str) -> dict:
    """EF of the ED cavity carried through two runs: registered without the cavity's label (the paper's Jacobian
    penalty everywhere) and with ``--blood-pool-label`` (the cavity's penalty relative to its mean; the alpha-0 run
    of ``benchmarks/acdc.py``), against the expert ED and ES labels."""
    meta = json.loads((patient / "meta.json").read_text())
    volumes = []
    for name in ("ed_gt.nii.gz", "es_gt.nii.gz"):
        labels = Volume.read(patient / name)
        volumes.append(volume_ml(np.asarray(labels.array) == ACDC_CAVITY, labels.geometry.spacing))
    edv, esv = volumes
    row = {"patient": patient.name, "frames": meta["n_frames"], "es_true": meta["es_index"], "edv_true": edv,
           "esv_true": esv, "ef_true": 100.0 * (edv - esv) / edv}
    for key, extra in (("", ""), ("_relative", f" --blood-pool-label {ACDC_CAVITY}")):
        run_dir = out / run_name(patient.name, 0.0, extra.strip(), MRI_PRESET)
        register(patient, meta, run_dir, 0.0, MRI_PRESET, device, extra.split())
        ours = run_function(run_dir, ACDC_CAVITY, meta["es_index"])
        row.update({f"es{key}": ours.es_frame, f"edv{key}": ours.edv_ml, f"esv{key}": ours.esv_ml,
                    f"ef{key}": ours.ef_pct})
    return row


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
             "EF %: ours / expert | EF error (points) | with the cavity's label at registration: EF % / error |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['patient']} | {r['es']} / {r['es_true']} of {r['frames']} | {r['edv']:.1f} / "
                     f"{r['edv_true']:.1f} | {r['esv']:.1f} / {r['esv_true']:.1f} | {r['ef']:.1f} / "
                     f"{r['ef_true']:.1f} | {r['ef'] - r['ef_true']:+.1f} | {r['ef_relative']:.1f} / "
                     f"{r['ef_relative'] - r['ef_true']:+.1f} |")
    errors = np.abs([r["ef"] - r["ef_true"] for r in rows])
    relative = np.abs([r["ef_relative"] - r["ef_true"] for r in rows])
    lines.append(f"| **mean absolute error** | | | | | {errors.mean():.1f} | {relative.mean():.1f} |")
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
            "0.8, the LV blood pool's Jacobian penalty relative to its mean); the LV cavity of frame 0 carried "
            "through the cycle and closed at the carried annulus plane, against the blood pool of the phantom's own "
            f"label map in every frame.\n\n{phantom_table(row)}\n\n{phantom_note(row)}\n\n"
            "Strain (Green-Lagrange, the reference myocardium's points) against the same estimator on the "
            "phantom's analytic motion (phi and F = grad phi by central differences of its closed-form map, not the "
            f"registration code):\n\n{strain_table(row)}\n\nPer AHA segment at ES:\n\n{segment_table(row)}")
        print(phantom_table(row), strain_table(row), segment_table(row), sep="\n\n", file=sys.stderr)
        print("phantom with a hypokinetic segment ...", file=sys.stderr, flush=True)
        hypokinetic = hypokinetic_row(args.out / "phantom_hypokinetic", device.type)
        sections["Cardiac function: regional dysfunction"] = (
            f"`python benchmarks/function_table.py --device {device.type} --write-docs`\n\n{machine} "
            f"`inr-cardiac demo --hypokinetic-segment {HYPOKINETIC_SEGMENT}`: the default phantom whose AHA segment "
            f"{HYPOKINETIC_SEGMENT} ({SEGMENT_NAMES[HYPOKINETIC_SEGMENT]}) keeps about a fifth of its radial "
            "wall motion; demo settings. Peak strain per segment over the cycle (Green-Lagrange), ours against the "
            f"same estimator on the phantom's analytic motion.\n\n{hypokinetic_table(hypokinetic)}")
        print(hypokinetic_table(hypokinetic), file=sys.stderr)
    patients = sorted(p for p in args.root.iterdir() if (p / "meta.json").is_file()) if args.root.is_dir() else []
    if patients:
        rows = []
        for patient in patients:
            print(f"{patient.name} ...", file=sys.stderr, flush=True)
            rows.append(acdc_row(patient, args.out / "acdc", device.type))
        sections["Cardiac function: ACDC"] = (
            f"`python benchmarks/function_table.py --device {device.type} --write-docs`\n\n{machine} Whole cycle "
            f"from ED with only the ED labels (alpha 0, preset `{MRI_PRESET}`, without the cavity's label at "
            "registration: the paper's Jacobian penalty everywhere); the ED LV cavity (label 3) carried through the "
            "cycle against the expert ED and ES cavity labels. Last column: the same with `--blood-pool-label 3` "
            "given at registration (the cavity's Jacobian penalty relative to its mean; the alpha-0 runs of "
            "`benchmarks/acdc.py`). These cropped volumes hold the LV between their first "
            "and last slice, so the cavity has no open face and is not capped, and the apex is cut by the field of "
            f"view (no strain).\n\n{acdc_table(rows)}")
        print(acdc_table(rows), file=sys.stderr)
    if args.write_docs:
        for title, body in sections.items():
            update_section(title, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
