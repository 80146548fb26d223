"""The demo's wall time against an earlier commit's: ``inr-cardiac demo`` of a git revision (default 3b055cc, the
speed issue's baseline) and of this working tree, run one after the other on this machine, each into a fresh
folder (phantom generation included), with their ground-truth scores.

The earlier revision runs from a temporary ``git worktree`` with this interpreter (``PYTHONPATH`` set to its
``INRCardiacRegistration`` folder); nothing else should run on the machine meanwhile.

    python benchmarks/demo_speed.py --write-docs
    python benchmarks/demo_speed.py --baseline 3b055cc --extra-options --chains 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchmark_report import OUT, machine_description, publish

ROOT = Path(__file__).resolve().parents[1]


def run_demo(lib_parent: Path, out: Path, options: list[str]) -> dict:
    """Run the demo of the Lib under ``lib_parent`` into ``out`` (removed first); its wall seconds and scores."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(lib_parent)}
    entry = ("import sys\ntry:\n    from INRCardiacRegistrationLib.cli.main import main\nexcept ImportError:\n"
             "    from INRCardiacRegistrationLib.cli import main\nsys.exit(main())")  # cli/main.py, or cli.py
    command = [sys.executable, "-c", entry, "demo", "--out", str(out), "--quiet", *options]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, cwd=lib_parent.parent, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    evaluation = json.loads((out / "run" / "phantom_evaluation.json").read_text())["mean"]
    run_seconds = json.loads((out / "run" / "run.json").read_text()).get("seconds")
    return {"seconds": round(seconds, 1), "run_seconds": run_seconds, "dice": round(evaluation["dice"], 4),
            "tre_mm": round(evaluation["landmark_tre_mm"], 3), "dense_error_mm": round(evaluation["dense_error_mm"], 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="3b055cc", help="git revision to compare with (default 3b055cc)")
    parser.add_argument("--out", type=Path, default=OUT / "demo_speed")
    parser.add_argument("--extra-options", nargs=argparse.REMAINDER, default=[],
                        help="options for this tree's demo only (e.g. --chains 2)")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    args.out = args.out.resolve()  # the demos run from their own trees
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip())
    rows = {}
    with tempfile.TemporaryDirectory(prefix="demo_baseline_") as temporary:
        worktree = Path(temporary) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.baseline], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            rows[args.baseline] = run_demo(worktree / "INRCardiacRegistration", args.out / "baseline", [])
            print(json.dumps({"revision": args.baseline, **rows[args.baseline]}), flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False,
                           capture_output=True)
    here = f"{revision}{' + changes' if dirty else ''}" + (f" {' '.join(args.extra_options)}" if args.extra_options
                                                           else "")
    rows[here] = run_demo(ROOT / "INRCardiacRegistration", args.out / "current", args.extra_options)
    print(json.dumps({"revision": here, **rows[here]}), flush=True)
    base = rows[args.baseline]["seconds"]
    command = "python benchmarks/demo_speed.py --write-docs"
    lines = [f"`{command}` (the two demos one after the other, each into a fresh folder, phantom included)", "",
             f"Machine: {machine_description(torch.device('cpu'))}.", "",
             "| revision | demo wall s | speed-up | registration s (run.json) | Dice | landmark TRE (mm) | "
             "dense error (mm) |", "|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['seconds']:.1f} | {base / row['seconds']:.2f}x | {row['run_seconds']} | "
                     f"{row['dice']:.3f} | {row['tre_mm']:.3f} | {row['dense_error_mm']:.3f} |")
    text = "\n".join(lines)
    publish("Demo wall time against the speed issue's baseline (cpu)", text, args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
