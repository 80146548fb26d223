"""``inr-cardiac demo [--out DIR]``: the whole pipeline on the built-in beating-heart phantom, scored against its
known motion.

1. writes the phantom into ``DIR/phantom/`` (4D CT, labels, landmarks, ground-truth transforms, manifest);
   an existing phantom with the same settings is reused;
2. runs ``inr-cardiac register`` on it with the fast preset into ``DIR/run/`` (resuming an unfinished run);
3. writes the report and summary, and compares the written transforms with the ground truth
   (``DIR/run/phantom_evaluation.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cycle.request import CHAINS, MODES, add_config_arguments

DEFAULT_OUT = Path("out/demo")


DESCRIPTION = """\
Write the synthetic beating-heart phantom into DIR/phantom, register its whole cycle with the fast preset into
DIR/run (report.png, summary.txt, metrics.csv ...) and compare the result with the phantom's ground-truth motion.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo", help="phantom + whole-cycle registration (fast preset) + report, scored against the known motion",
        description=DESCRIPTION)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--frames", type=int, default=None, help="frames of the phantom (default 20)")
    parser.add_argument("--hypokinetic-segment", type=int, default=None, metavar="N",
                        help="give the phantom regional dysfunction: AHA segment N (1-16) keeps about a fifth of its "
                             "radial wall motion (see it in function_report.png's bull's-eyes)")
    parser.add_argument("--mode", choices=MODES, default="non-sequential",
                        help="non-sequential: reference -> t for every t; sequential: t-1 -> t, composed (default: "
                             "non-sequential)")
    parser.add_argument("--chains", type=int, choices=CHAINS, default=1,
                        help="1 (default): one chain of warm-started pairs around the cycle; 2: two at once")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(parser, default_preset="fast")  # minutes on a CPU
    return parser


def _phantom(out: Path, frames: int | None, say, hypokinetic_segment: int | None = None) -> Path:
    from ..phantom.config import PhantomConfig
    from ..phantom.files import generate_phantom

    settings = {} if frames is None else {"frames": frames}
    if hypokinetic_segment is not None:
        settings["hypokinetic_segment"] = hypokinetic_segment
    config = PhantomConfig(**settings)
    manifest = out / "manifest.json"
    if manifest.is_file():
        stored = json.loads(manifest.read_text(encoding="utf-8")).get("generator", {}).get("parameters")
        if stored == config.to_dict():
            say(f"demo: reusing the phantom in {out}")
            return manifest
    say(f"demo: writing the phantom ({config.frames} frames) into {out}")
    return generate_phantom(out, config)


def run(args: argparse.Namespace) -> int:
    from ..core.atomic_file import write_text_atomic
    from ..cycle.request import CycleConfig, WorkerOptions, config_from_arguments
    from ..cycle.run_folder import RunFolder
    from ..phantom.evaluation import evaluate_run_on_phantom, format_phantom_evaluation
    from ..phantom.files import load_phantom, phantom_request
    from .register import run_request

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    out: Path = args.out
    manifest = _phantom(out / "phantom", args.frames, say, args.hypokinetic_segment)
    preset_name = args.preset or args.default_preset
    settings = CycleConfig(config_from_arguments(args), mode=args.mode, preset=preset_name, chains=args.chains)
    request = phantom_request(manifest, settings)
    run_dir = out / "run"
    resume = RunFolder(run_dir).exists()
    if resume:
        say(f"demo: continuing the run in {run_dir}")
    say(f"demo: registering the cycle ({preset_name} preset)")
    code = run_request(request, run_dir, WorkerOptions(resume=resume, quiet=args.quiet))
    if code != 0:
        return code
    evaluation = evaluate_run_on_phantom(RunFolder(run_dir), load_phantom(manifest))
    write_text_atomic(run_dir / "phantom_evaluation.json", json.dumps(evaluation, indent=2) + "\n")
    print(format_phantom_evaluation(evaluation), end="")
    print(f"report: {RunFolder(run_dir).report_png}")
    return 0
