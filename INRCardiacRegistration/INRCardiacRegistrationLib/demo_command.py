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

from .config_arguments import add_config_arguments, config_argv

DEFAULT_OUT = Path("out/demo")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo", help="phantom + whole-cycle registration (fast preset) + report, scored against the known motion",
        description="Write the synthetic beating-heart phantom into DIR/phantom, register its whole cycle with the "
                    "fast preset into DIR/run (report.png, summary.txt, metrics.csv ...) and compare the result "
                    "with the phantom's ground-truth motion.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--frames", type=int, default=None, help="frames of the phantom (default 20)")
    parser.add_argument("--mode", choices=("non-sequential", "sequential"), default="non-sequential")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(parser)
    parser.set_defaults(preset="fast")  # minutes on a CPU
    return parser


def _phantom(out: Path, frames: int | None, say) -> Path:
    from .phantom import PhantomConfig, generate_phantom

    config = PhantomConfig() if frames is None else PhantomConfig(frames=frames)
    manifest = out / "manifest.json"
    if manifest.is_file():
        stored = json.loads(manifest.read_text(encoding="utf-8")).get("generator", {}).get("parameters")
        if stored == config.to_dict():
            say(f"demo: reusing the phantom in {out}")
            return manifest
    say(f"demo: writing the phantom ({config.frames} frames) into {out}")
    return generate_phantom(out, config)


def run(args: argparse.Namespace) -> int:
    from .atomic_file import write_text_atomic
    from .cli import build_parser
    from .phantom import load_phantom
    from .phantom_evaluation import evaluate_run_on_phantom, format_phantom_evaluation
    from .register_command import run as run_register
    from .run_folder import RunFolder

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    out: Path = args.out
    manifest = _phantom(out / "phantom", args.frames, say)
    phantom_dir = manifest.parent
    info = json.loads(manifest.read_text(encoding="utf-8"))
    run_dir = out / "run"
    argv = ["register", str(phantom_dir / info["image"]), "--out", str(run_dir),
            "--labels", str(phantom_dir / info["labels"]),
            "--myocardium-label", str(info["label_values"]["myocardium"]),
            "--heart-label", *[str(v) for v in sorted(set(info["label_values"].values()))],
            "--landmarks", str(phantom_dir / info["landmarks"]),
            "--landmarks-annotated", str(phantom_dir / info["trajectories"]),
            "--mode", args.mode, *config_argv(args)]
    if args.quiet:
        argv.append("--quiet")
    if RunFolder(run_dir).exists():
        say(f"demo: continuing the run in {run_dir}")
        argv.append("--resume")
    say(f"demo: registering the cycle ({args.preset} preset)")
    code = run_register(build_parser().parse_args(argv))
    if code != 0:
        return code
    evaluation = evaluate_run_on_phantom(RunFolder(run_dir), load_phantom(manifest))
    write_text_atomic(run_dir / "phantom_evaluation.json", json.dumps(evaluation, indent=2) + "\n")
    print(format_phantom_evaluation(evaluation), end="")
    print(f"report: {RunFolder(run_dir).report_png}")
    return 0
