"""``inr-cardiac function RUN_DIR``: the cardiac function of a registered cycle (LV volume per frame, EDV, ESV, SV,
EF, the ES frame, global and per-segment strain, twist), written into the run folder as ``function.json``,
``function.csv`` and ``strain_segments.csv`` (:mod:`..function.cardiac_function`)."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Measure the cardiac function of a run folder: the reference frame's LV cavity (its label value: --blood-pool-label,
default the run's own) carried through every finished frame's transform and closed at the carried mitral annulus
plane gives the LV volume per frame, and from it EDV, ESV, SV, EF and the ES frame; the deformation gradient at the
reference myocardium gives Green-Lagrange strain (radial, circumferential, longitudinal; global and per AHA segment)
and the twist. The AHA segments start at the anterior RV insertion: from --anterior-insertion, else the RV label
(--rv-label, default the run's own), else the septum is taken towards the patient's right-anterior. Writes
RUN_DIR/function.json, RUN_DIR/function.csv and RUN_DIR/strain_segments.csv. Exit codes: 0 done, 2 bad input.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("function", help="LV volumes, ejection fraction and strain of a run folder",
                                   description=DESCRIPTION)
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder of 'inr-cardiac register'")
    parser.add_argument("--blood-pool-label", type=int, metavar="N",
                        help="LV-cavity value in the reference frame's label map (default: the run's own)")
    parser.add_argument("--rv-label", type=int, metavar="N",
                        help="RV-cavity value in the reference frame's label map (default: the run's own, if any)")
    parser.add_argument("--anterior-insertion", type=float, nargs=3, metavar=("L", "P", "S"),
                        help="a point on the anterior RV insertion in the reference frame (LPS mm)")
    parser.add_argument("--es-frame", type=int, metavar="T",
                        help="the known end-systolic frame (0-based), compared with the one found")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..function.cardiac_function import run_function

    function = run_function(args.run_dir, args.blood_pool_label, args.es_frame, args.rv_label,
                            args.anterior_insertion)
    print(function.text())
    names = ("function.json", "function.csv", "strain_segments.csv", "function_report.png")
    print("written: " + ", ".join(str(args.run_dir / name) for name in names if (args.run_dir / name).exists()))
    return 0
