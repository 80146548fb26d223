"""``inr-cardiac function RUN_DIR``: the cardiac function of a registered cycle (LV volume per frame, EDV, ESV, SV,
EF, the ES frame), written into the run folder as ``function.json`` and ``function.csv``
(:mod:`..function.volumes`)."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Measure the cardiac function of a run folder: the reference frame's LV cavity (its label value: --blood-pool-label,
default the run's own) carried through every finished frame's transform gives the LV volume per frame, and from it
EDV, ESV, SV, EF and the ES frame. Writes RUN_DIR/function.json and RUN_DIR/function.csv. Exit codes: 0 done,
2 bad input.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("function", help="LV volumes and ejection fraction of a run folder",
                                   description=DESCRIPTION)
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder of 'inr-cardiac register'")
    parser.add_argument("--blood-pool-label", type=int, metavar="N",
                        help="LV-cavity value in the reference frame's label map (default: the run's own)")
    parser.add_argument("--es-frame", type=int, metavar="T",
                        help="the known end-systolic frame (0-based), compared with the one found")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..function.volumes import run_function

    function = run_function(args.run_dir, args.blood_pool_label, args.es_frame)
    print(function.text())
    print(f"written: {args.run_dir / 'function.json'}, {args.run_dir / 'function.csv'}")
    return 0
