"""The demo's accuracy over several seeds, with and without the fast preset's tail average, and with two chains.

One run's landmark error moves by a few hundredths of a millimetre with the seed (the warm-started pairs stop at other
iterations), so an option's effect is measured as a mean over seeds.

Each setting runs ``inr-cardiac demo --seed S`` for seeds 0..N-1 on one phantom (generated once, copied into each
demo folder) and scores it against the phantom's known motion (Dice, landmark TRE, dense error, EF).

    python benchmarks/demo_seeds.py --write-docs
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

import torch
from benchmark_report import OUT, machine_description, publish
from INRCardiacRegistrationLib.cli.main import main as cli_main
from INRCardiacRegistrationLib.phantom.config import PhantomConfig
from INRCardiacRegistrationLib.phantom.files import generate_phantom

# setting -> (folder name, demo options)
SETTINGS = {"tail average off (--tail-average 0)": ("tail0", ["--tail-average", "0"]),
            "fast preset (tail average 25)": ("fast", []),
            "fast preset, two chains (--chains 2)": ("chains2", ["--chains", "2"])}


def run_demo(phantom: Path, out: Path, seed: int, options: list[str]) -> dict:
    """One demo into ``out`` (reused when finished) on a copy of ``phantom``; its ground-truth scores."""
    evaluation = out / "run" / "phantom_evaluation.json"
    if not evaluation.is_file():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(phantom, out / "phantom")
        if cli_main(["demo", "--out", str(out), "--quiet", "--seed", str(seed), *options]) != 0:
            raise SystemExit(f"the demo failed in {out}")
    scores = json.loads(evaluation.read_text())
    mean = scores["mean"]
    return {"dice": mean["dice"], "tre_mm": mean["landmark_tre_mm"], "dense_error_mm": mean["dense_error_mm"],
            "seconds": json.loads((out / "run" / "run.json").read_text()).get("seconds")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT / "demo_seeds")
    parser.add_argument("--seeds", type=int, default=4, help="seeds 0..N-1 (default 4)")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    phantom = args.out / "phantom"
    if not (phantom / "manifest.json").is_file():
        generate_phantom(phantom, PhantomConfig())
    rows: dict[str, list[dict]] = {}
    for name, (slug, options) in SETTINGS.items():
        rows[name] = [run_demo(phantom, args.out / f"{slug}_seed{seed}", seed, options) for seed in range(args.seeds)]
        for seed, row in enumerate(rows[name]):
            print(json.dumps({"setting": name, "seed": seed, **row}), flush=True)
    lines = [f"`python benchmarks/demo_seeds.py --write-docs` (the demo, fast preset, seeds 0-{args.seeds - 1}; "
             "means over the 19 frames besides the reference, then over the seeds)", "",
             f"Machine: {machine_description(torch.device('cpu'))}.", "",
             "| setting | landmark TRE (mm) per seed | mean TRE (mm) | mean dense error (mm) | mean Dice | "
             "mean registration s |", "|---|---|---|---|---|---|"]
    for name, runs in rows.items():
        per_seed = " / ".join(f"{r['tre_mm']:.3f}" for r in runs)
        lines.append(f"| {name} | {per_seed} | "
                     f"{statistics.mean(r['tre_mm'] for r in runs):.3f} | "
                     f"{statistics.mean(r['dense_error_mm'] for r in runs):.3f} | "
                     f"{statistics.mean(r['dice'] for r in runs):.4f} | "
                     f"{statistics.mean(r['seconds'] for r in runs):.1f} |")
    publish("Demo accuracy over seeds: the tail average (cpu)", "\n".join(lines), args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
