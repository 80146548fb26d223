"""Cancel and resume while every CPU core is kept busy by other processes (issue 18: a loaded machine).

1. Starts one busy-looping process per CPU core (the hog), then runs the cancel and resume tests
   ``--repeats`` times in a row with pytest, and reports each round's outcome and time.
2. With the hog still running, starts ``inr-cardiac register`` on the default phantom with the paper preset on the
   CPU, waits for its first iteration event, sends SIGINT and measures the seconds until the worker has ended
   (and its exit code: 130 = cancelled by itself).

    python benchmarks/cancel_under_load.py --write-docs
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from benchmark_report import OUT, machine_description, publish
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder
from INRCardiacRegistrationLib.phantom.config import PhantomConfig
from INRCardiacRegistrationLib.phantom.files import generate_phantom

ROOT = Path(__file__).resolve().parents[1]
# the two that failed on a loaded machine (issue 18), the CLI's own SIGTERM cancel, and the cancels in the middle of
# a pair whose resume goes on from the saved training state (through the API, both modes, and with SIGINT)
TESTS = ["Testing/cycle/test_worker_process.py::test_cancel_ends_the_whole_tree_and_keeps_finished_frames",
         "Testing/mrml/test_scene_registration.py::test_cancel_keeps_finished_frames_in_the_scene_and_resume_completes",
         "Testing/cycle/test_driver.py::test_sigterm_cancels_cleanly",
         "Testing/cycle/test_driver.py::test_a_frame_stopped_part_way_goes_on_from_its_saved_state",
         "Testing/cycle/test_driver.py::test_sigint_mid_frame_then_resume_trains_only_what_was_left"]


def _spin() -> None:
    while True:
        pass


def cli_cancel_seconds(out: Path) -> tuple[float, int, float, int | None]:
    """(seconds from SIGINT to the worker's end, exit code, seconds to the first iteration, the iteration whose
    training state the worker saved on the way out) at the paper preset."""
    phantom = out / "phantom"
    if not (phantom / "manifest.json").is_file():
        generate_phantom(phantom, PhantomConfig())
    manifest = json.loads((phantom / "manifest.json").read_text())
    run_dir = out / "paper_run"
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    argv = [sys.executable, "-m", "INRCardiacRegistrationLib.cli", "register", str(phantom / manifest["image"]),
            "--labels", str(phantom / manifest["labels"]), "--myocardium-label", "1", "--heart-label", "1", "2", "3",
            "--out", str(run_dir), "--preset", "paper", "--device", "cpu", "--quiet", "--no-report"]
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = RunFolder(run_dir)
    while not any(e.get("event") == "iteration" for e in (run.read_events() if run.progress_path.exists() else [])):
        if process.poll() is not None:
            raise SystemExit(f"the worker ended early ({process.returncode})")
        time.sleep(0.1)
    first = time.monotonic() - started
    asked = time.monotonic()
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=600)
    seconds = time.monotonic() - asked
    saved = [e["iteration"] for e in run.read_events() if e.get("event") == "state_saved"]
    return seconds, code, first, saved[-1] if saved else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT / "cancel_under_load")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(cores)]
    for hog in hogs:
        hog.start()
    rounds = []
    try:
        for round_number in range(1, args.repeats + 1):
            started = time.monotonic()
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                                    cwd=ROOT, capture_output=True, text=True)
            last = (result.stdout.strip().splitlines() or ["?"])[-1]
            rounds.append((round_number, result.returncode == 0, time.monotonic() - started, last))
            print(f"round {round_number}: {'passed' if result.returncode == 0 else 'FAILED'} in "
                  f"{rounds[-1][2]:.0f} s: {last}", flush=True)
            if result.returncode != 0:
                print(result.stdout[-4000:], flush=True)
        seconds, code, first, saved = cli_cancel_seconds(args.out)
        print(f"CLI cancel at the paper preset: {seconds:.2f} s after SIGINT, exit code {code} (first iteration "
              f"event after {first:.0f} s; training state saved at iteration {saved})", flush=True)
    finally:
        for hog in hogs:
            hog.terminate()
    load = os.getloadavg()[0]
    lines = ["`python benchmarks/cancel_under_load.py --write-docs` (one busy-looping process per core running "
             "beside the tests)", "", f"Machine: {machine_description(torch.device('cpu'))}; load average at the end "
             f"{load:.1f}.", "", "| round | cancel and resume tests | seconds |", "|---|---|---|"]
    lines += [f"| {n} | {'passed' if ok else 'FAILED'} ({last}) | {s:.0f} |" for n, ok, s, last in rounds]
    lines += ["", f"CLI cancel (SIGINT) at the paper preset on the CPU, during the first pair: the worker ended "
              f"{seconds:.2f} s after the signal with exit code {code} (130: cancelled, recorded by itself), having "
              f"saved the pair's training state at iteration {saved} (what --resume goes on from)."]
    text = "\n".join(lines)
    publish("Cancel under load (cpu)", text, args.write_docs)
    return 0 if all(ok for _, ok, _, _ in rounds) else 1


if __name__ == "__main__":
    raise SystemExit(main())
