"""``inr-cardiac register IMAGE --out RUN_DIR``: track the reference frame's LV myocardium through a whole cycle.

The command line becomes a :class:`~..cycle.request.RunRequest` (``--resume`` without IMAGE: the run folder's
own request); :func:`run_request` reads and checks its inputs before writing anything, runs
:func:`~..cycle.driver.register_cycle` with a terminal progress bar, writes the report and prints a short
summary. SIGINT/SIGTERM, or a file ``RUN_DIR/cancel``, stop the run cleanly after the frames already saved;
``--resume`` continues it. One worker writes a run folder at a time (its ``lock``). Exit codes
(:class:`~..core.vocabulary.ExitCode`): 0 finished, 2 bad input, 130 cancelled, 1 failed (or the folder busy).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from ..core.vocabulary import ExitCode, RunState
from ..cycle.request import (
    RunRequest,
    WorkerOptions,
    add_request_arguments,
    add_worker_arguments,
    request_from_arguments,
)
from .stop_signals import cancel_on_signals, watch_for_stop
from .terminal import TerminalProgress

PROG = "inr-cardiac register"


DESCRIPTION = """\
Track the reference frame's LV myocardium through every frame of a 4D sequence with one SIREN per frame pair. Writes
RUN_DIR: run.json, progress.jsonl, per frame the transform (transforms/frame_NNN.h5: ITK displacement field,
resampling convention, LPS mm: TransformPoint(p) = where reference point p is in frame t), the propagated
myocardium, the checkpoint and the landmark positions; landmark_trajectories.csv, metrics.csv/json, report.png and
summary.txt. Exit codes: 0 finished, 2 bad input, 130 cancelled, 1 failed.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "register", help="register a whole cardiac cycle (4D) and write a run folder",
        description=DESCRIPTION)
    add_request_arguments(parser)
    add_worker_arguments(parser)
    return parser


# The paper preset's seconds per iteration on 2 CPU cores (docs/benchmarks.md, "Iteration speed (cpu)": AMD EPYC,
# analytic Jacobian), scaled by torch's CPU threads for the estimate a CPU user is shown.
PAPER_SECONDS_PER_ITERATION_2_CORES = 1.0


def preset_for_this_machine(args: argparse.Namespace) -> tuple[str | None, str]:
    """``("fast", notice)`` when a new run gives no ``--preset`` and its device is a CPU, where the paper preset
    would take hours; ``(None, "")`` (the parser's default, the paper) when the device is a GPU."""
    import torch

    from ..engine.config import preset
    from ..engine.devices import resolve_device

    device = resolve_device(getattr(args, "config_device", None) or "auto")
    if device.type != "cpu":
        return None, ""
    threads = torch.get_num_threads()
    minutes = preset("paper").warm_start_iterations * PAPER_SECONDS_PER_ITERATION_2_CORES * 2 / threads / 60
    return "fast", (f"no GPU here: using --preset fast (a CPU-friendly network and schedule); the paper preset would "
                    f"take about {minutes:.0f} minutes per frame with {threads} CPU thread(s) (give --preset paper "
                    "to use it anyway)")


def run(args: argparse.Namespace) -> int:
    from ..cycle.run_folder import RunFolder

    options = WorkerOptions.from_arguments(args)
    run_folder = RunFolder(args.out)
    stored = None
    notice = ""
    if options.resume and args.image is None:
        stored = run_folder.read_request()
    elif args.preset is None:
        if options.resume and run_folder.exists():  # IMAGE given again: the run keeps its preset
            args.preset = run_folder.read_request().settings.preset
        else:
            args.preset, notice = preset_for_this_machine(args)
    request = request_from_arguments(args, stored, source=f"{args.out}/run.json")
    return run_request(request, args.out, options, notice)


def run_request(request: RunRequest, run_dir: str | Path, options: WorkerOptions | None = None,
                notice: str = "") -> int:
    """Run ``request`` into ``run_dir`` in this process, as the worker does (``options``: default with a progress
    bar; ``notice``: a line for stderr once the inputs are read); returns the exit code."""
    from ..core.file_lock import LockBusy
    from ..cycle.driver import CycleFailed, register_cycle
    from ..cycle.inputs import read_cycle_inputs
    from ..cycle.run_folder import RunFolder

    options = options if options is not None else WorkerOptions(quiet=False)
    event = threading.Event()
    if options.exit_with_parent is not None or options.cancel_files:
        watch_for_stop(event, options.exit_with_parent, [Path(p) for p in options.cancel_files], who=PROG)
    with cancel_on_signals(event):  # a stop while the frames load ends here, before anything is written
        inputs, texts = read_cycle_inputs(request.inputs, request.settings.reference_frame)
    for text in texts:
        print(f"{PROG}: warning: {text}", file=sys.stderr)
    if notice:
        print(f"{PROG}: {notice}", file=sys.stderr)
    if event.is_set():
        print(f"{PROG}: cancelled before the run started (nothing written)", file=sys.stderr)
        return ExitCode.CANCELLED
    progress = TerminalProgress(options.quiet)
    run_folder = RunFolder(run_dir)

    def say_waiting(holder: str) -> None:
        print(f"{PROG}: {run_dir} is in use ({holder}); waiting up to {options.lock_wait_s:g} s", file=sys.stderr)

    reference = None
    if inputs.blood_pool is not None:  # the cavity and AHA segments go along the myocardium's inverse map
        from ..function.cardiac_function import function_reference

        reference = function_reference(inputs.blood_pool, inputs.myocardium[inputs.reference_frame],
                                       inputs.right_ventricle)
    try:
        with cancel_on_signals(event):
            result = register_cycle(inputs, request, run_dir, resume=options.resume, warnings_text=texts,
                                    progress=progress, cancel=event, lock_wait_s=options.lock_wait_s,
                                    lock_waiting=say_waiting,
                                    carried_labels=None if reference is None else reference.carried_labels())
    except LockBusy as busy:
        if event.is_set():
            print(f"{PROG}: cancelled while waiting for the run folder (nothing written)", file=sys.stderr)
            return ExitCode.CANCELLED
        print(f"{PROG}: error: {busy}; it stops by itself after its current iteration once cancelled (touch "
              f"{run_folder.cancel_path})", file=sys.stderr)
        return ExitCode.FAILED
    except CycleFailed as failure:
        progress.close()
        finish_run_outputs(run_folder, inputs, report=False, reference=reference)
        print(f"{PROG}: run failed: {failure} (finished frames are kept; see {run_folder.run_json}; continue with "
              "--resume)", file=sys.stderr)
        return ExitCode.FAILED
    finally:
        progress.close()
    cancelled = result.status == RunState.CANCELLED
    if cancelled:  # it stops at once: its summary only (report.png and the function come at the resumed run's end);
        with cancel_on_signals(event):  # a second signal meanwhile does not kill it half-way
            finish_run_outputs(run_folder, inputs, report=False, function=False)
    else:  # a finished run: Ctrl-C or SIGTERM while its outputs are written ends it (the run stays finished)
        finish_run_outputs(run_folder, inputs, report=options.report, reference=reference)
    print(run_folder.summary_txt.read_text(encoding="utf-8"), end="")
    if cancelled:
        print(f"{PROG}: cancelled; continue with: {PROG} --resume --out {run_dir}", file=sys.stderr)
        return ExitCode.CANCELLED
    return ExitCode.FINISHED


def finish_run_outputs(run_folder, inputs, report: bool = True, function: bool = True, reference=None) -> None:
    """``summary.txt``, (unless ``report`` is False) ``report.png`` and, when ``function`` is True, the LV blood pool
    is known and every frame is finished, the cardiac function (``function.json``, ``function.csv``,
    ``strain_segments.csv``) of a run, from its folder and inputs. ``reference``: the inputs'
    :func:`..function.cardiac_function.function_reference` when the caller has it (not computed again)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..cycle.report_figure import write_report
    from ..cycle.report_summary import run_summary, write_summary
    from ..function.cardiac_function import measure_function, write_function

    # report.png is drawn (matplotlib: mostly Python) while the function is measured (torch and numpy: mostly
    # outside the GIL); function_report.png is drawn after both, so only one figure is drawn at a time
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="report") as pool:
        drawn = pool.submit(write_report, run_folder, inputs.frames, inputs.scored_myocardium, inputs.annotated) \
            if report else None
        measured = None
        if function and inputs.blood_pool is not None and \
                len(run_folder.finished_records(inputs.frame_count)) == inputs.frame_count:
            measured = measure_function(run_folder, inputs.blood_pool, inputs.myocardium[inputs.reference_frame],
                                        inputs.reference_frame, right_ventricle=inputs.right_ventricle,
                                        reference=reference)
        if drawn is not None:
            drawn.result()
    summary = run_summary(run_folder, inputs.annotated)
    if measured is not None:
        write_function(run_folder, measured, report=report)
        summary = f"{summary.rstrip()}\n{measured.text()}\n"
    write_summary(run_folder, summary)
