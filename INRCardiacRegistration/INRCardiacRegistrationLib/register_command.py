"""``inr-cardiac register IMAGE --out RUN_DIR``: track the reference frame's LV myocardium through a whole cycle.

Reads the 4D input and its labels/landmarks, checks everything before writing anything, then runs
:func:`cycle_registration.register_cycle` with a terminal progress bar, writes the report and prints a short
summary. SIGINT/SIGTERM, or a file ``RUN_DIR/cancel``, stop the run cleanly after the frames already saved
(exit code 130); ``--resume`` continues it. One worker writes a run folder at a time (its ``lock``).
Exit codes: 0 finished, 2 bad input, 130 cancelled, 1 failed (or the run folder busy).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

from .config_arguments import add_config_arguments, config_from_arguments, option_name

EXIT_CANCELLED = 130
EXIT_FAILED = 1


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "register", help="register a whole cardiac cycle (4D) and write a run folder",
        description="Track the reference frame's LV myocardium through every frame of a 4D sequence with one SIREN "
                    "per frame pair. Writes RUN_DIR: run.json, progress.jsonl, per frame the transform "
                    "(transforms/frame_NNN.h5: ITK displacement field, resampling convention, LPS mm: "
                    "TransformPoint(p) = where reference point p is in frame t), the propagated myocardium, the "
                    "checkpoint and the landmark positions; landmark_trajectories.csv, metrics.csv/json, "
                    "report.png and summary.txt. Exit codes: 0 finished, 2 bad input, 130 cancelled, 1 failed.")
    parser.add_argument("image", nargs="?", metavar="IMAGE",
                        help="4D NIfTI/NRRD/MHA, a Slicer .seq.nrrd, a folder of 3D frames (natural order) or a DICOM "
                             "folder with all phases (optional with --resume: taken from RUN_DIR/run.json)")
    parser.add_argument("--out", required=True, type=Path, metavar="RUN_DIR", help="run folder (new, or with --resume)")
    inputs = parser.add_argument_group("labels and landmarks")
    inputs.add_argument("--labels", action="append", nargs="+", metavar="SPEC",
                        help="a 4D label image, a folder of per-frame label files, or FRAME=PATH (repeatable) for "
                             "only some frames (0-based); frames without a myocardium label get no SDF term")
    inputs.add_argument("--myocardium-label", type=int, metavar="N",
                        help="LV-myocardium value in the label maps (default: their only non-zero value)")
    inputs.add_argument("--heart-label", type=int, nargs="+", metavar="N",
                        help="label value(s) forming the heart mask of the reference frame, where training points "
                             "are drawn (dilated by --mask-dilation-voxels); default: the reference myocardium "
                             "dilated by --myocardium-margin-mm")
    inputs.add_argument("--landmarks", type=Path, metavar="FILE",
                        help="landmarks on the reference frame: Slicer .mrk.json, .fcsv or CSV landmark,x,y,z "
                             "(LPS mm); a CSV frame,landmark,x,y,z gives its reference-frame rows")
    inputs.add_argument("--landmarks-annotated", type=Path, metavar="CSV",
                        help="annotated positions per frame for TRE: CSV frame,landmark,x,y,z (LPS mm)")
    cycle = parser.add_argument_group("cycle")
    cycle.add_argument("--mode", choices=("non-sequential", "sequential"), default=None,
                       help="non-sequential: reference -> t for every t; sequential: t-1 -> t, composed "
                            "(default: non-sequential)")
    cycle.add_argument("--reference-frame", type=int, default=None, metavar="K",
                       help="the reference frame (0-based, default 0 = ED)")
    cycle.add_argument("--field-region", choices=("heart", "full"), default=None,
                       help="grid of the written transforms: the reference grid cropped to the sampling mask and "
                            "landmarks plus --field-margin-mm (default), or the whole reference grid")
    cycle.add_argument("--field-margin-mm", type=float, default=None, metavar="MM",
                       help="margin of the 'heart' field region (default 10)")
    cycle.add_argument("--resume", action="store_true",
                       help="continue the cancelled or crashed run in RUN_DIR, keeping its finished frames")
    cycle.add_argument("--lock-wait", type=float, default=0.0, metavar="S",
                       help="if another worker is writing RUN_DIR, wait up to S seconds for it to end (default 0: "
                            "fail at once, exit code 1)")
    cycle.add_argument("--exit-with-parent", type=int, nargs="?", const=0, default=None, metavar="PID",
                       help="stop cleanly (as on cancel) when process PID (default: the one that started this one) "
                            "ends; batch runs use it so that killing the batch leaves no orphan")
    cycle.add_argument("--cancel-file", action="append", type=Path, metavar="PATH",
                       help="also stop cleanly when PATH exists (repeatable; unlike RUN_DIR/cancel it is never "
                            "removed); batch runs pass the cohort's cancel file")
    cycle.add_argument("--no-report", action="store_true", help="do not write report.png")
    cycle.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(parser)
    return parser


def _flatten(values: list[list[str]] | None) -> list[str] | None:
    return None if not values else [item for group in values for item in group]


def _absolute(path: str | Path | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _label_spec_text(spec: list[str] | None) -> list[str] | None:
    """Label specs with absolute paths (``FRAME=PATH`` keeps its frame)."""
    if spec is None:
        return None
    out = []
    for item in spec:
        frame, sep, path = item.partition("=")
        out.append(f"{frame}={_absolute(path)}" if sep and frame.strip().isdigit() else _absolute(item))
    return out


def describe_inputs(args: argparse.Namespace) -> dict:
    """The inputs as stored in ``run.json`` (absolute paths), so that ``--resume`` can check or reuse them."""
    return {
        "image": _absolute(args.image),
        "labels": _label_spec_text(_flatten(args.labels)),
        "myocardium_label": args.myocardium_label,
        "heart_label": list(args.heart_label) if args.heart_label else None,
        "landmarks": _absolute(args.landmarks),
        "landmarks_annotated": _absolute(args.landmarks_annotated),
    }


_CYCLE_OPTIONS = ("mode", "reference_frame", "field_region", "field_margin_mm")
_INPUT_OPTIONS = ("labels", "myocardium_label", "heart_label", "landmarks", "landmarks_annotated")


def _settings_from_run(args: argparse.Namespace) -> None:
    """``--resume`` without IMAGE: take the inputs and every setting from ``RUN_DIR/run.json``; options given on
    the command line must agree with them (only ``--device`` may change)."""
    from .run_folder import RunFolder

    info = RunFolder(args.out).read_run_info()
    given = [option_name(key) for key in _INPUT_OPTIONS if getattr(args, key)]
    if given:
        raise ValueError(f"--resume without IMAGE takes the inputs from {args.out}/run.json: drop {', '.join(given)} "
                         "or give IMAGE and all inputs again")
    stored = info.get("inputs", {})
    args.image = stored.get("image")
    args.labels = [stored["labels"]] if stored.get("labels") else None
    for key in _INPUT_OPTIONS[1:]:
        setattr(args, key, stored.get(key))
    cycle = info.get("cycle", {})
    for key in _CYCLE_OPTIONS:
        value = getattr(args, key)
        if value is not None and key in cycle and value != cycle[key]:
            raise ValueError(f"{option_name(key)} {value} differs from the run's {cycle[key]!r} ({args.out}/run.json)")
        setattr(args, key, cycle.get(key, value))
    registration = info.get("config") or {}
    changed = [option_name(name) for name in registration if name not in ("device", "extra")
               and getattr(args, f"config_{name}", None) is not None
               and getattr(args, f"config_{name}") != registration[name]]
    if changed:
        raise ValueError(f"{', '.join(changed)} differ from the run's settings ({args.out}/run.json); a resumed run "
                         "keeps its settings (only --device may change)")
    args.preset = cycle.get("preset", args.preset)
    args.stored_registration = registration


def apply_cycle_defaults(args: argparse.Namespace) -> None:
    """Options not given take :class:`CycleConfig`'s defaults."""
    from .cycle_registration import CycleConfig

    defaults = CycleConfig()
    for key in _CYCLE_OPTIONS:
        if getattr(args, key) is None:
            setattr(args, key, getattr(defaults, key))


def watch_for_stop(event: threading.Event, parent: int | None = None, files: list[Path] | None = None,
                   poll_s: float = 0.5) -> threading.Thread:
    """Set ``event`` once process ``parent`` has ended (0: this process's parent now; POSIX: a process whose
    parent ends is re-parented, so its parent pid changes) or one of ``files`` exists; a daemon thread that polls
    every ``poll_s`` seconds (and once before it returns)."""
    watched = os.getppid() if parent == 0 else parent
    files = list(files or [])

    def reason() -> str | None:
        if watched is not None and os.getppid() != watched:
            return f"the parent process {watched} ended"
        found = next((path for path in files if path.exists()), None)
        return None if found is None else f"{found} exists"

    def check() -> bool:
        why = reason()
        if why is not None:
            print(f"inr-cardiac register: {why}; stopping after the saved frames", file=sys.stderr)
            event.set()
        return event.is_set()

    def watch() -> None:
        while not event.wait(poll_s) and not check():
            pass

    check()  # the first time before returning, so that a stop already due is seen by the caller
    thread = threading.Thread(target=watch, name="watch-for-stop", daemon=True)
    thread.start()
    return thread


@contextmanager
def cancel_on_signals(event: threading.Event):
    """While inside, SIGINT and SIGTERM set ``event`` (the run stops cleanly) instead of killing the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):  # noqa: ARG001
        event.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def load_cycle_inputs(args: argparse.Namespace):
    """Read and check everything ``register`` needs; returns ``(inputs, warnings_text)``. Writes nothing."""
    from .cycle_inputs import build_cycle_inputs
    from .frame_sequence_io import read_frame_labels, read_frame_sequence
    from .landmarks_io import read_landmarks, read_trajectories_csv

    if args.image is None:
        raise ValueError("IMAGE is required (or use --resume with a run folder that has run.json)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sequence = read_frame_sequence(args.image, args.reference_frame)
        labels = read_frame_labels(_flatten(args.labels), sequence)
    texts = list(sequence.warnings) + [str(w.message) for w in caught if str(w.message) not in sequence.warnings]
    landmarks = read_landmarks(args.landmarks, args.reference_frame) if args.landmarks else None
    annotated = read_trajectories_csv(args.landmarks_annotated) if args.landmarks_annotated else None
    inputs = build_cycle_inputs(sequence.frames, labels, args.reference_frame,
                                myocardium_label=args.myocardium_label, heart_labels=args.heart_label,
                                landmarks=landmarks, annotated=annotated)
    return inputs, texts


def cycle_config_from_arguments(args: argparse.Namespace):
    from .cycle_registration import CycleConfig
    from .registration_config import RegistrationConfig

    registration = config_from_arguments(args)
    stored = getattr(args, "stored_registration", None)
    if stored is not None:  # --resume without IMAGE: the run's own settings, device and progress from now
        registration = RegistrationConfig.from_dict(stored).replace(device=registration.device)
    return CycleConfig(registration=registration, mode=args.mode, reference_frame=args.reference_frame,
                       field_region=args.field_region, field_margin_mm=args.field_margin_mm, preset=args.preset)


class TerminalBar:
    """A progress callback that draws one tqdm bar on stderr (nothing when ``quiet``); subclasses handle events."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None

    def __call__(self, event: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TerminalProgress(TerminalBar):
    """A tqdm bar over all iterations of the run, with the frame, loss and ETA; finished frames are printed."""

    def __init__(self, quiet: bool) -> None:
        super().__init__(quiet)
        self.offset = 0

    def __call__(self, event: dict) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        kind = event["event"]
        if kind == "started":
            self.bar = tqdm(total=event["iterations_total"], unit="it", dynamic_ncols=True, file=sys.stderr,
                            desc=f"{len(event['todo'])} frames")
        elif kind == "iteration" and self.bar is not None:
            self.bar.set_description(f"frame {event['frame']}")
            self.bar.update(self.offset + event["iteration"] - self.bar.n)
            self.bar.set_postfix(loss=f"{event['loss']:.4f}")
            if event["iteration"] == event["iterations"]:
                self.offset += event["iterations"]
        elif kind == "frame_finished" and self.bar is not None:
            parts = [f"frame {event['frame']} done ({event['done']}/{event['frames']})"]
            for key, label, form in (("dice", "Dice", ".3f"), ("hd95_mm", "HD95", ".2f"), ("tre_mm", "TRE", ".2f"),
                                     ("seconds", "s", ".1f")):
                if event.get(key) is not None:
                    parts.append(f"{label} {event[key]:{form}}")
            self.bar.write(", ".join(parts), file=sys.stderr)
        elif kind in ("finished", "cancelled", "failed"):
            self.close()


def run(args: argparse.Namespace) -> int:
    from .cycle_registration import CycleFailed, register_cycle
    from .file_lock import LockBusy
    from .run_folder import RunFolder

    event = threading.Event()
    if args.exit_with_parent is not None or args.cancel_file:
        watch_for_stop(event, args.exit_with_parent, args.cancel_file)
    if args.resume and args.image is None:
        _settings_from_run(args)
    apply_cycle_defaults(args)
    config = cycle_config_from_arguments(args)
    with cancel_on_signals(event):  # a stop while the frames load ends here, before anything is written
        inputs, texts = load_cycle_inputs(args)
    for text in texts:
        print(f"inr-cardiac register: warning: {text}", file=sys.stderr)
    if event.is_set():
        print("inr-cardiac register: cancelled before the run started (nothing written)", file=sys.stderr)
        return EXIT_CANCELLED
    progress = TerminalProgress(args.quiet)
    run_folder = RunFolder(args.out)

    def say_waiting(holder: str) -> None:
        print(f"inr-cardiac register: {args.out} is in use ({holder}); waiting up to {args.lock_wait:g} s",
              file=sys.stderr)

    try:
        with cancel_on_signals(event):
            result = register_cycle(inputs, config, args.out, resume=args.resume, description=describe_inputs(args),
                                    warnings_text=texts, progress=progress, cancel=event,
                                    lock_wait_s=args.lock_wait, lock_waiting=say_waiting)
    except LockBusy as busy:
        if event.is_set():
            print("inr-cardiac register: cancelled while waiting for the run folder (nothing written)",
                  file=sys.stderr)
            return EXIT_CANCELLED
        print(f"inr-cardiac register: error: {busy}; it stops by itself after its current iteration once "
              f"cancelled (touch {run_folder.cancel_path})", file=sys.stderr)
        return EXIT_FAILED
    except CycleFailed as failure:
        progress.close()
        finish_run_outputs(run_folder, inputs, report=False)
        print(f"inr-cardiac register: run failed: {failure} (finished frames are kept; see {run_folder.run_json}; "
              f"continue with --resume)", file=sys.stderr)
        return EXIT_FAILED
    finally:
        progress.close()
    finish_run_outputs(run_folder, inputs, report=not args.no_report)
    print(run_folder.summary_txt.read_text(encoding="utf-8"), end="")
    if result.status == "cancelled":
        print(f"inr-cardiac register: cancelled; continue with: inr-cardiac register --resume --out {args.out}",
              file=sys.stderr)
        return EXIT_CANCELLED
    return 0


def finish_run_outputs(run_folder, inputs, report: bool = True) -> None:
    """``summary.txt`` and (unless ``report`` is False) ``report.png`` of a run, from its folder and inputs."""
    from .run_report import run_summary, write_report, write_summary

    if report:
        write_report(run_folder, inputs.frames, inputs.myocardium, inputs.annotated)
    write_summary(run_folder, run_summary(run_folder, inputs.annotated))
