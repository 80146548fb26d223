"""SIGINT in the middle of a pair, then ``--resume``: what is kept and whether the result is the uninterrupted one.

On the default phantom (the demo's, 20 frames) with the fast preset on the CPU:

1. an uninterrupted ``inr-cardiac register`` run;
2. the same run, sent SIGINT once the first pair (trained from scratch, the longest) has done ``--stop-share`` of
   its iterations; then ``inr-cardiac register --resume``.

Prints the events that show where the pair stopped and where it went on, the training seconds the saved state kept,
and compares the resumed run's metrics.csv (all but the seconds column) and every transform file with the
uninterrupted run's.

    python benchmarks/resume_mid_frame.py --write-docs
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from benchmark_report import OUT, machine_description, publish
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder
from INRCardiacRegistrationLib.fileio.displacement_field import read_displacement_field
from INRCardiacRegistrationLib.phantom.config import PhantomConfig
from INRCardiacRegistrationLib.phantom.files import generate_phantom


def register_argv(phantom: Path, run_dir: Path) -> list[str]:
    manifest = json.loads((phantom / "manifest.json").read_text())
    return [sys.executable, "-m", "INRCardiacRegistrationLib.cli", "register", str(phantom / manifest["image"]),
            "--labels", str(phantom / manifest["labels"]), "--myocardium-label", "1", "--heart-label", "1", "2", "3",
            "--landmarks", str(phantom / manifest["landmarks"]), "--out", str(run_dir), "--preset", "fast",
            "--device", "cpu", "--quiet", "--no-report"]


def metric_rows_without_time(run: RunFolder) -> list[list[str]]:
    lines = run.metrics_csv.read_text().splitlines()
    column = lines[0].split(",").index("seconds")
    return [[cell for i, cell in enumerate(line.split(",")) if i != column] for line in lines]


def interrupted_then_resumed(phantom: Path, run_dir: Path, stop_share: float) -> dict:
    """SIGINT once the first pair has done ``stop_share`` of its iterations, then --resume; what happened."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run = RunFolder(run_dir)
    process = subprocess.Popen(register_argv(phantom, run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    first_frame = None
    while True:
        events = run.read_events() if run.progress_path.exists() else []
        started = [e for e in events if e["event"] == "started"]
        if started and first_frame is None:
            first_frame = started[0]["order"][0]
        if any(e["event"] == "iteration" and e["frame"] == first_frame and e["iteration"] >= stop_share *
               e["iterations"] for e in events):
            break
        if process.poll() is not None:
            raise SystemExit(f"the worker ended early ({process.returncode}): {process.stderr.read()}")
        time.sleep(0.05)
    asked = time.monotonic()
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=600)
    stop_seconds = time.monotonic() - asked
    before = len(run.read_events())
    started = time.monotonic()
    resumed = subprocess.run(register_argv(phantom, run_dir)[:4] + ["--out", str(run_dir), "--resume", "--quiet",
                                                                    "--no-report", "--device", "cpu"],
                             capture_output=True, text=True)
    if resumed.returncode != 0:
        raise SystemExit(f"--resume failed ({resumed.returncode}): {resumed.stderr}")
    events = run.read_events()
    return {"frame": first_frame, "exit_code": code, "stop_seconds": stop_seconds,
            "resume_seconds": time.monotonic() - started,
            "saved": [e for e in events[:before] if e["event"] in ("state_saved", "cancelled")],
            "resumed": [e for e in events[before:] if e["event"] in ("frame_resumed", "warning")],
            "first_iteration_after": min(e["iteration"] for e in events[before:]
                                         if e["event"] == "iteration" and e["frame"] == first_frame)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT / "resume_mid_frame")
    parser.add_argument("--stop-share", type=float, default=0.6, help="share of the first pair's iterations done "
                        "when SIGINT is sent")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    phantom = args.out / "phantom"
    if not (phantom / "manifest.json").is_file():
        generate_phantom(phantom, PhantomConfig())
    whole_dir = args.out / "uninterrupted"
    shutil.rmtree(whole_dir, ignore_errors=True)
    started = time.monotonic()
    subprocess.run(register_argv(phantom, whole_dir), check=True)
    whole_seconds = time.monotonic() - started
    outcome = interrupted_then_resumed(phantom, args.out / "interrupted", args.stop_share)
    whole, resumed = RunFolder(whole_dir), RunFolder(args.out / "interrupted")
    same_metrics = metric_rows_without_time(resumed) == metric_rows_without_time(whole)
    frames = len(whole.read_metrics())
    same_fields = sum(np.array_equal(read_displacement_field(resumed.transform_path(t))[0],
                                     read_displacement_field(whole.transform_path(t))[0]) for t in range(frames))
    saved = [e for e in outcome["saved"] if e["event"] == "state_saved"]
    resumed_events = outcome["resumed"]
    record = resumed.read_frame_record(outcome["frame"])
    lines = ["`python benchmarks/resume_mid_frame.py --write-docs` (default phantom, 20 frames, fast preset, CPU)",
             "", f"Machine: {machine_description(torch.device('cpu'))}.", "",
             f"- Uninterrupted run: {whole_seconds:.0f} s.",
             f"- SIGINT at {args.stop_share:.0%} of the first pair (frame {outcome['frame']}, from scratch): the "
             f"worker ended {outcome['stop_seconds']:.2f} s later with exit code {outcome['exit_code']}; events:"]
    lines += [f"  - `{json.dumps({k: v for k, v in e.items() if k != 'time'})}`" for e in outcome["saved"]]
    lines += ["- `--resume` (" + f"{outcome['resume_seconds']:.0f} s); events:"]
    lines += [f"  - `{json.dumps({k: v for k, v in e.items() if k != 'time'})}`" for e in resumed_events]
    lines += [f"  - first iteration event of frame {outcome['frame']} after the resume: iteration "
              f"{outcome['first_iteration_after']} (iterations 1-{saved[0]['iteration'] if saved else '?'} were not "
              f"trained again); the frame's record: {record.iterations} iterations in {record.seconds:.1f} s "
              "(training of both sessions plus its outputs)",
              f"- Resumed against uninterrupted: metrics.csv but the seconds column "
              f"{'identical' if same_metrics else 'DIFFERENT'}; transform files bit for bit identical: "
              f"{same_fields} of {frames}."]
    text = "\n".join(lines)
    publish("Resume in the middle of a frame (cpu)", text, args.write_docs)
    return 0 if same_metrics and same_fields == frames else 1


if __name__ == "__main__":
    raise SystemExit(main())
