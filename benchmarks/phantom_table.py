"""The paper's Table 1 on the synthetic phantom: sequential and non-sequential registration x alpha
0.0 / 0.8 / 1.0, scored against the phantom's known motion.

For each of the six settings one whole cycle is registered with ``inr-cardiac register`` (the same worker as
users run) into ``OUT/<mode>_alpha<a>/``; every finished frame's written transform is compared with the
analytic ground truth (:func:`INRCardiacRegistrationLib.phantom.evaluation.evaluate_run_on_phantom`). Columns are
means over the frames other than the reference: Dice and HD95 of the propagated reference myocardium, landmark TRE (17
landmarks; coronary = the 4 coronary landmarks, as the paper's), dense error over the reference myocardium,
% of sampling-mask points with det J <= 0, seconds per frame. Runs already finished in OUT are reused (delete
OUT to measure again); an interrupted one resumes.

    python benchmarks/phantom_table.py --out out/phantom_table --preset fast --device cpu --write-docs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from benchmark_report import OUT, machine_description, register_or_reuse, shown_path, update_section
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder
from INRCardiacRegistrationLib.engine.devices import resolve_device
from INRCardiacRegistrationLib.phantom.config import PhantomConfig
from INRCardiacRegistrationLib.phantom.evaluation import evaluate_run_on_phantom
from INRCardiacRegistrationLib.phantom.files import Phantom, generate_phantom, load_phantom

MODES = ("sequential", "non-sequential")
ALPHAS = (0.0, 0.8, 1.0)


def register(phantom_dir: Path, run_dir: Path, mode: str, alpha: float, preset: str, device: str,
             extra: list[str]) -> float:
    """Register the phantom's cycle into ``run_dir`` (or reuse a finished run there); returns the run's seconds."""
    manifest = json.loads((phantom_dir / "manifest.json").read_text())
    argv = ["register", str(phantom_dir / manifest["image"]), "--out", str(run_dir),
            "--labels", str(phantom_dir / manifest["labels"]), "--myocardium-label", "1",
            "--heart-label", "1", "2", "3", "--landmarks", str(phantom_dir / manifest["landmarks"]),
            "--landmarks-annotated", str(phantom_dir / manifest["trajectories"]), "--mode", mode,
            "--alpha", str(alpha), "--preset", preset, "--device", device, "--quiet", "--no-report", *extra]
    if RunFolder(run_dir).exists():
        info = RunFolder(run_dir).read_run_info()
        if info.get("cycle", {}).get("preset") != preset:
            raise SystemExit(f"{run_dir} was made with the preset {info.get('cycle', {}).get('preset')!r}, not "
                             f"{preset!r}: delete it (or use another --out) to measure again")
    return register_or_reuse(argv, run_dir)


def phantom_in(out: Path, frames: int, texture_ct: Path | None) -> Phantom:
    """The phantom in ``out/phantom``, generated there the first time (``frames`` frames; the reference frame a real
    CT's texture, without added noise or blur, when ``texture_ct`` is given); one of other frames or texture there is
    refused (use another ``out``)."""
    phantom_dir = out / "phantom"
    if not (phantom_dir / "manifest.json").is_file():
        texture = {} if texture_ct is None else {"texture_ct": str(texture_ct), "noise_hu": 0.0, "blur_mm": 0.0}
        generate_phantom(phantom_dir, PhantomConfig(frames=frames, **texture))
    phantom = load_phantom(phantom_dir)
    if phantom.config.frames != frames:
        raise SystemExit(f"{phantom_dir} holds a phantom of {phantom.config.frames} frames, not {frames}: use "
                         "another --out")
    if (phantom.config.texture_ct is not None) != (texture_ct is not None):
        raise SystemExit(f"{phantom_dir} holds a phantom {'with' if phantom.config.texture_ct else 'without'} a "
                         "texture CT: use another --out")
    return phantom


def negative_jacobian_mean(run: RunFolder, reference: int) -> float:
    values = [row["negative_jacobian_pct"] for row in run.read_metrics() if row["frame"] != reference]
    return float(np.nanmean(values)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT / "phantom_table")
    parser.add_argument("--frames", type=int, default=20, help="phantom frames (default 20, as the paper)")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--alphas", nargs="+", type=float, default=list(ALPHAS))
    parser.add_argument("--texture-ct", type=Path, default=None,
                        help="real CT as the phantom's texture (noise and blur off: the CT has its own); its own "
                             "docs section")
    parser.add_argument("extra", nargs="*", help="further register options after --, e.g. -- --iterations 500")
    args = parser.parse_args()

    phantom = phantom_in(args.out, args.frames, args.texture_ct)
    phantom_dir, config = phantom.manifest_path.parent, phantom.config
    rows = []
    for mode in args.modes:
        for alpha in args.alphas:
            run_dir = args.out / f"{mode}_alpha{alpha:.1f}"
            started = time.perf_counter()
            register(phantom_dir, run_dir, mode, alpha, args.preset, args.device, args.extra)
            run = RunFolder(run_dir)
            evaluation = evaluate_run_on_phantom(run, phantom)
            mean = evaluation["mean"]
            row = {"mode": mode, "alpha": alpha, **mean,
                   "negative_jacobian_pct": negative_jacobian_mean(run, phantom.ed_frame),
                   "wall_s": round(time.perf_counter() - started, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)

    device = resolve_device(args.device)
    header = ("| mode | alpha | Dice | HD95 (mm) | landmark TRE (mm) | coronary TRE (mm) | dense error (mm) | "
              "dense error p95 (mm) | det J <= 0 (%) | s / frame |\n|---|---|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {r['mode']} | {r['alpha']:.1f} | {r['dice']:.4f} | {r['hd95_mm']:.3f} | {r['landmark_tre_mm']:.3f} | "
             f"{r['coronary_tre_mm']:.3f} | {r['dense_error_mm']:.3f} | {r['dense_error_p95_mm']:.3f} | "
             f"{r['negative_jacobian_pct']:.3f} | {r['seconds']:.1f} |" for r in rows]
    table = header + "\n".join(lines)
    print(table)
    if args.write_docs:
        info = RunFolder(args.out / f"{rows[0]['mode']}_alpha{rows[0]['alpha']:.1f}").read_run_info()
        settings = {k: info["config"][k] for k in ("iterations", "warm_start_iterations", "points", "width", "depth",
                                                   "omega", "learning_rate", "regularization_weight")}
        extra = f" {' '.join(args.extra)}" if args.extra else ""
        selection = "" if (args.modes, args.alphas) == (list(MODES), list(ALPHAS)) else (
            f" --modes {' '.join(args.modes)} --alphas {' '.join(f'{a:g}' for a in args.alphas)}")
        texture = "" if args.texture_ct is None else f" --texture-ct {args.texture_ct}"
        body = (f"`python benchmarks/phantom_table.py --out {shown_path(args.out)} --preset {args.preset} "
                f"--device {args.device} --write-docs{selection}{texture}{extra}`\n\n"
                f"Machine: {machine_description(device)}.\n\n"
                f"Phantom: {config.frames} frames of {config.geometry.describe()}, ES = frame {config.es_frame}; "
                f"reference frame 0 (ED); heart mask = labels 1-3 dilated by 2 voxels. Preset `{args.preset}`: "
                f"{settings}. Means over the {config.frames - 1} frames besides the reference.\n\n{table}\n")
        if args.texture_ct is None:
            update_section("Phantom table (the paper's Table 1 on the phantom)", body)
        else:
            body += ("\nThe reference frame is a real contrast CT (TotalSegmentator test data, re-centred on the "
                     "phantom's heart) deformed with the phantom's known motion, without added noise or blur. Dice "
                     "and HD95 score the phantom's analytic myocardium, which this texture does not show: judge by "
                     "the landmark TRE and the dense error against the exact motion.\n")
            update_section("Phantom with a real CT texture", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
