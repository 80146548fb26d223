"""``inr-cardiac phantom OUT_DIR``: write a synthetic beating-heart CT phantom with known motion.

Writes the 4D CT, 4D labels, reference landmarks (Slicer markups, LPS), landmark trajectories (CSV, LPS mm),
ground-truth displacement-field transforms (frame 0 -> t, resampling convention) and ``manifest.json``;
see :func:`..phantom.files.generate_phantom`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..core.vocabulary import InputError
from ..cycle.request import WORKER_MODULE
from ..phantom.config import PhantomConfig

DESCRIPTION = """\
Write one synthetic patient: 4D contrast CT (HU), per-frame labels (LV myocardium, LV blood pool, heart), reference
landmarks (Slicer markups JSON, LPS), their ground-truth trajectories (CSV, LPS mm), ground-truth displacement-field
transforms from frame 0 to every frame (ITK .h5, resampling convention) and manifest.json.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    defaults = PhantomConfig()
    parser = subparsers.add_parser(
        "phantom",
        help="write a synthetic beating-heart CT phantom with known motion",
        description=DESCRIPTION,
    )
    parser.add_argument("out_dir", metavar="OUT_DIR",
                        help="output folder (created; existing phantom files are replaced)")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"frames in the cycle (default {defaults.frames}; ED is frame 0)")
    parser.add_argument("--spacing", type=float, nargs="+", metavar="MM", default=None,
                        help="voxel spacing in mm, one value or three (x y z) (default "
                             f"{defaults.spacing_mm[0]:g})")
    parser.add_argument("--size", type=int, nargs="+", metavar="N", default=None,
                        help="grid size in voxels, one value or three (x y z) (default: a "
                             f"{'x'.join(f'{f:g}' for f in defaults.fov_mm)} mm field of view)")
    parser.add_argument("--seed", type=int, default=None, help=f"random seed (default {defaults.seed})")
    parser.add_argument("--noise", type=float, default=None, metavar="HU",
                        help=f"Gaussian noise standard deviation in HU (default {defaults.noise_hu:g})")
    parser.add_argument("--ejection-fraction", type=float, default=None, metavar="F",
                        help=f"LV ejection fraction at ES, 0-0.8 (default {defaults.ejection_fraction:g})")
    parser.add_argument("--shortening", type=float, default=None, metavar="F",
                        help="longitudinal shortening at ES, fraction of the LV length (default "
                             f"{defaults.longitudinal_shortening:g})")
    parser.add_argument("--torsion", type=float, default=None, metavar="DEG",
                        help=f"net LV torsion at ES in degrees (default {defaults.torsion_deg:g})")
    parser.add_argument("--hypokinetic-segment", type=int, default=None, metavar="N",
                        help="AHA segment (1-16) with regional dysfunction: its cavity's cross-section area change "
                             "reduced to the share --hypokinetic-motion (default: none)")
    parser.add_argument("--hypokinetic-motion", type=float, default=None, metavar="F",
                        help="share of the normal area change kept in the hypokinetic segment, 0-1 (default "
                             f"{defaults.hypokinetic_motion:g}: about a fifth of the radial wall motion)")
    parser.add_argument("--paper-like", action="store_true",
                        help="the paper's acquisition: 0.5 x 0.5 x 2 mm voxels and 20 frames (slow; explicit "
                             "--spacing/--frames still win)")
    parser.add_argument("--montage", action="store_true",
                        help="also write montage.png (ED and ES slices with label contours)")
    parser.add_argument("--verify", action="store_true",
                        help="measure the phantom from its files afterwards (EF, myocardial volume, torsion, "
                             "shortening, Dice of the pushed ED myocardium, landmark and transform errors)")
    parser.add_argument("--texture-ct", metavar="CT", default=None,
                        help="a real 3D CT (HU) to use as the reference frame's intensities, deformed with the "
                             "phantom's motion (labels and landmarks stay the phantom's anatomy)")
    parser.add_argument("--quiet", action="store_true", help="print only the manifest path")
    return parser


def phantom_command(python: str | Path, out_dir: str | Path, frames: int | None = None,
                    spacing_mm: float | None = None) -> list[str]:
    """The argv that writes a phantom of ``frames`` frames and ``spacing_mm`` voxels into ``out_dir`` in a separate
    process (the Slicer module's sample data)."""
    argv = [str(python), "-m", WORKER_MODULE, "phantom", str(out_dir), "--quiet"]
    if frames is not None:
        argv += ["--frames", str(int(frames))]
    if spacing_mm is not None:
        argv += ["--spacing", repr(float(spacing_mm))]
    return argv


def config_from_args(args: argparse.Namespace) -> PhantomConfig:
    """The :class:`PhantomConfig` the command line asks for (ValueError names a bad option)."""
    settings: dict = {}
    for option, name in (("frames", "frames"), ("seed", "seed"), ("noise", "noise_hu"), ("texture_ct", "texture_ct"),
                         ("ejection_fraction", "ejection_fraction"),
                         ("shortening", "longitudinal_shortening"), ("torsion", "torsion_deg"),
                         ("hypokinetic_segment", "hypokinetic_segment"), ("hypokinetic_motion", "hypokinetic_motion")):
        value = getattr(args, option)
        if value is not None:
            settings[name] = value
    for option, name in (("spacing", "spacing_mm"), ("size", "size")):
        values = getattr(args, option)
        if values is not None:
            if len(values) not in (1, 3):
                raise InputError(f"--{option} takes one value or three, got {len(values)}: {values}")
            settings[name] = tuple(values)
    return PhantomConfig.paper_like(**settings) if args.paper_like else PhantomConfig(**settings)


def run(args: argparse.Namespace) -> int:
    from ..phantom.files import generate_phantom  # scipy and the renderer: only when a phantom is written
    from ..phantom.verification import measure_motion, verify_phantom

    config = config_from_args(args)
    geometry = config.geometry
    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    say(f"phantom: {config.frames} frames of {geometry.describe()}, ES at frame {config.es_frame}")
    manifest = generate_phantom(args.out_dir, config, montage=args.montage, progress=say)
    if not args.quiet:
        volumes = json.loads(Path(manifest).read_text(encoding="utf-8"))["label_volumes_ml"]
        blood, myocardium = volumes["blood_pool"], volumes["myocardium"]
        es = config.es_frame
        motion = measure_motion(config)
        ejection = 100.0 * (1.0 - blood[es] / blood[0])
        say(f"LV blood pool {blood[0]:.1f} -> {blood[es]:.1f} mL (EF {ejection:.1f} %), myocardium "
            f"{myocardium[0]:.1f} -> {myocardium[es]:.1f} mL, torsion {motion['torsion_deg']:.1f} deg, "
            f"longitudinal shortening {100 * motion['longitudinal_shortening']:.1f} %")
    if args.verify:
        figures = verify_phantom(manifest)
        for key, value in figures.items():
            if not isinstance(value, list):
                say(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")
    print(manifest)
    return 0
