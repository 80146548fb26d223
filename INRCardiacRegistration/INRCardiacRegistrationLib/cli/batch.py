"""``inr-cardiac batch MANIFEST.csv --out COHORT_DIR``: register a cohort, one patient per Dask task.

See :mod:`..cohort.manifest` for the manifest, :mod:`..cohort.batch` for the cohort folder and the executors,
:mod:`..cohort.summary` for the summary files. Exit codes: 0 every patient finished; 1 some did not (failed, or
cancelled by anything but this batch; the others are done and each one is listed with its reason); 2 bad manifest
or options (nothing run); 130 cancelled (re-run the same command to continue).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from ..core.vocabulary import ExitCode, RunState
from .stop_signals import cancel_on_signals
from .terminal import TerminalBar

DESCRIPTION = """\
Register every patient of MANIFEST (CSV columns patient, image, and optionally labels, landmarks,
landmarks_annotated, options) with the same worker as 'register', each into COHORT_DIR/runs/PATIENT, as Dask tasks:
an embedded local cluster, or a running Dask scheduler (e.g. on SLURM with dask-jobqueue). Failed patients are
retried and then reported without stopping the others; re-running the same command skips finished patients and
resumes interrupted ones. Writes cohort_metrics.csv (patient x frame), cohort_summary.csv (per patient) and
cohort_report.png (Dice per phase, mean +- SD over patients).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "batch", help="register a cohort from a manifest CSV (Dask: local cluster or an existing scheduler)",
        description=DESCRIPTION)
    parser.add_argument("manifest", type=Path, metavar="MANIFEST.csv", help="one row per patient (header required)")
    parser.add_argument("--out", required=True, type=Path, metavar="COHORT_DIR",
                        help="cohort folder (new, or the same folder again to continue)")
    parser.add_argument("--options", default="", metavar="'REGISTER OPTIONS'",
                        help="register options for every patient, one quoted string, e.g. \"--preset fast --alpha 1 "
                             "--myocardium-label 1\"; a row's own options column wins over them")
    engine = parser.add_argument_group("executor")
    engine.add_argument("--executor", choices=("local", "dask"), default="local",
                        help="local: an embedded Dask cluster on this machine (default); dask: the running Dask "
                             "scheduler given by --scheduler")
    engine.add_argument("--scheduler", metavar="ADDRESS",
                        help="Dask scheduler address (tcp://host:8786) or scheduler JSON file; implies --executor dask")
    engine.add_argument("--workers", type=int, metavar="N",
                        help="local workers = patients at a time (default: one per GPU; without CUDA one per CPU core "
                             "with one thread each, at most one per 3 GiB of memory)")
    engine.add_argument("--gpus-per-task", type=int, metavar="G",
                        help="GPUs one patient holds (a Dask resource 'GPU'; remote workers must be started with "
                             "--resources GPU=G); default 1 locally with CUDA, else 0")
    engine.add_argument("--threads-per-task", type=int, metavar="T",
                        help="CPU threads of one patient's worker (default locally: CPU cores / workers)")
    engine.add_argument("--retries", type=int, default=1, metavar="R",
                        help="further attempts for a patient whose worker failed or died (default 1; bad input is "
                             "not retried)")
    engine.add_argument("--lock-wait", type=float, default=300.0, metavar="S",
                        help="wait up to S seconds for a patient's run folder still held by an earlier worker (for "
                             "example of a killed batch on a remote cluster) (default 300)")
    parser.add_argument("--no-report", action="store_true",
                        help="do not write cohort_report.png nor the patients' report.png")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


class BatchProgress(TerminalBar):
    """A tqdm bar over the patients to run, the running ones' frame progress as postfix, a line per outcome."""

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif not self.quiet:
            print(text, file=sys.stderr)

    def __call__(self, event: dict) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        kind = event["event"]
        patient = event.get("patient")
        if kind == "warning":
            self.write(f"inr-cardiac batch: warning: {event['text']}")
        elif kind == "patient_skipped":
            self.write(f"{patient}: finished before, skipped")
        elif kind == "patient_submitted" and self.bar is None:
            self.bar = tqdm(total=event["queued"], unit="patient", dynamic_ncols=True, file=sys.stderr,
                            desc="patients")
        elif kind == "status" and self.bar is not None:
            self.bar.set_postfix_str("; ".join(f"{p}: {text}" for p, text in event["running"].items())[:200])
        elif kind in ("patient_finished", "patient_failed", "patient_cancelled"):
            tries = f", {event['attempts']} attempts" if event.get("attempts", 1) > 1 else ""
            detail = f": {event['reason']}" if event.get("reason") and kind != "patient_finished" else ""
            self.write(f"{patient}: {kind.removeprefix('patient_')}{detail} ({event.get('seconds', 0):.0f} s{tries})")
            if self.bar is not None:
                self.bar.update(1)
        elif kind.startswith("batch_") and kind != "batch_started":
            self.close()


def run(args: argparse.Namespace) -> int:
    from ..cohort.batch import BatchSettings, CohortBatch
    from ..cohort.manifest import read_manifest, split_options

    common = list(split_options(args.options, "--options"))
    patients = read_manifest(args.manifest, common)
    settings = BatchSettings(executor="dask" if args.scheduler else args.executor, scheduler=args.scheduler,
                             workers=args.workers, gpus_per_task=args.gpus_per_task,
                             threads_per_task=args.threads_per_task, retries=args.retries, lock_wait_s=args.lock_wait,
                             report=not args.no_report)
    cancel = threading.Event()
    progress = BatchProgress(args.quiet)
    batch = CohortBatch(patients, args.out, common, settings, manifest=args.manifest, on_event=progress,
                        cancel=cancel)
    try:
        with cancel_on_signals(cancel):
            result = batch.run()
    finally:
        progress.close()
    print(result.summary, end="")
    print(f"cohort folder: {batch.root} (cohort_metrics.csv, cohort_summary.csv"
          f"{'' if args.no_report else ', cohort_report.png'})")
    if result.status == RunState.CANCELLED:
        print("inr-cardiac batch: cancelled; re-run the same command to continue", file=sys.stderr)
        return ExitCode.CANCELLED
    if result.failed:
        listed = ", ".join(f"{p} ({result.outcomes[p].status})" for p in result.failed)
        print(f"inr-cardiac batch: {len(result.failed)} patient(s) did not finish: {listed} (reasons above and in "
              f"{batch.root}/runs/PATIENT/worker.log); re-run the same command to try them again", file=sys.stderr)
        return ExitCode.FAILED
    return 0
