"""``inr-cardiac pair``: register two 3D frames and write the field, checkpoint, warped image and metrics.

Without FIXED and MOVING it runs on the built-in synthetic pair (known motion) and reports the error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.vocabulary import InputError
from ..cycle.request import add_config_arguments, config_from_arguments

DESCRIPTION = """\
Register MOVING to FIXED with a SIREN: phi maps fixed-frame points (LPS mm) to the moving frame. Writes
displacement.h5 (ITK resampling convention on the fixed grid), checkpoint.pt, moving_warped.nii.gz, the propagated
fixed label and summary.json.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pair", help="register two 3D frames (fixed -> moving)",
        description=DESCRIPTION)
    parser.add_argument("fixed", nargs="?", help="fixed (reference) 3D image; omit both for the synthetic pair")
    parser.add_argument("moving", nargs="?", help="moving 3D image")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--fixed-label", type=Path, help="label image of the fixed frame (myocardium)")
    parser.add_argument("--moving-label", type=Path, help="label image of the moving frame (myocardium)")
    parser.add_argument("--myocardium-label", type=int, default=None,
                        help="myocardium value in the label images (default: any non-zero voxel)")
    parser.add_argument("--heart-label", type=int, nargs="+", metavar="N",
                        help="value(s) of the fixed label image forming the heart mask where training points are "
                             "drawn (dilated by --mask-dilation-voxels), as 'register --heart-label' and the "
                             "benchmarks; default: the fixed myocardium dilated by --myocardium-margin-mm (as "
                             "'register' without it)")
    parser.add_argument("--mask", type=Path, help="a heart mask image of the fixed frame for sampling instead "
                        "(non-zero voxels, dilated by --mask-dilation-voxels)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..core.masks import label_mask, sampling_mask
    from ..core.metrics import dice, hd95_mm, negative_jacobian_percent
    from ..core.surface_distance import surface_distances
    from ..core.volume import Volume
    from ..engine.pair_registration import RegistrationProgress, register_pair

    config = config_from_arguments(args)
    truth = None
    if args.fixed is None and args.moving is None:
        from ..phantom.synthetic_pair import make_synthetic_pair

        truth = make_synthetic_pair()
        fixed, moving, fixed_label, moving_label = truth.fixed, truth.moving, truth.fixed_label, truth.moving_label
        mask = sampling_mask(myocardium=fixed_label, myocardium_margin_mm=config.myocardium_margin_mm)
    elif args.fixed is None or args.moving is None:
        raise InputError("give both FIXED and MOVING images (or neither, for the synthetic pair)")
    else:
        fixed = Volume.read(args.fixed, "fixed image")
        moving = Volume.read(args.moving, "moving image")
        fixed_label = moving_label = mask = None
        if args.heart_label and args.mask:
            raise InputError("give --heart-label or --mask, not both")
        if args.heart_label and not args.fixed_label:
            raise InputError("--heart-label needs --fixed-label (the label image holding those values)")
        if args.fixed_label:
            fixed_labels = Volume.read(args.fixed_label, "fixed label")
            fixed_label = label_mask(fixed_labels, args.myocardium_label)
            if args.heart_label:
                heart = label_mask(fixed_labels, args.heart_label, name=f"heart (labels {args.heart_label})")
                mask = sampling_mask(heart=fixed.require_same_grid(heart) and heart,
                                     dilation_voxels=config.mask_dilation_voxels)
        if args.moving_label:
            moving_label = label_mask(Volume.read(args.moving_label, "moving label"), args.myocardium_label)
        if args.mask:
            heart = label_mask(Volume.read(args.mask, "heart mask"))
            mask = sampling_mask(heart=fixed.require_same_grid(heart) and heart,
                                 dilation_voxels=config.mask_dilation_voxels)

    bar = tqdm(total=config.iterations, unit="it", desc="registering", dynamic_ncols=True)

    def on_progress(event: RegistrationProgress) -> None:
        bar.update(event.iteration - bar.n)
        bar.set_postfix(loss=f"{event.loss:.4f}")

    try:
        result = register_pair(fixed, moving, fixed_label=fixed_label, moving_label=moving_label, mask=mask,
                               config=config, progress=on_progress)
    finally:
        bar.close()

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    result.export_displacement_field(out / "displacement.h5")
    result.save(out / "checkpoint.pt")
    result.warp_moving(moving).write(out / "moving_warped.nii.gz")
    determinants = result.jacobian_determinant_on_grid()
    summary: dict = {
        "final_loss": result.final_loss, "seconds": result.seconds, "device": result.device,
        "alpha_used": result.alpha_used, "negative_jacobian_pct": negative_jacobian_percent(determinants),
        "sampling_region": ("heart labels " + " ".join(map(str, args.heart_label)) if args.heart_label else
                            "heart mask " + str(args.mask) if args.mask else "myocardium with a margin"),
        "config": config.to_dict(),
    }
    if fixed_label is not None:
        propagated = result.propagate_fixed_label(fixed_label, moving.geometry)
        propagated.with_array(propagated.array.astype(np.uint8)).write(out / "fixed_label_propagated.nii.gz")
        if moving_label is not None:
            summary["dice_before"] = dice(fixed_label.array, moving_label.array)
            summary["dice"] = dice(propagated.array, moving_label.array)
            summary["hd95_mm"] = hd95_mm(propagated.array, moving_label.array, moving.geometry)
            surfaces = surface_distances(propagated.array, moving_label.array, moving.geometry)
            summary["hd95_subvoxel_mm"], summary["mean_surface_mm"] = surfaces.hd95_mm, surfaces.mean_mm
    if truth is not None:
        points = fixed.geometry.index_to_physical(np.argwhere(fixed_label.array)[:, ::-1])
        summary["true_error_before_mm"] = float(np.mean(np.linalg.norm(truth.phi(points) - points, axis=1)))
        summary["true_error_mm"] = float(np.mean(np.linalg.norm(truth.phi(points) - result.map_points(points),
                                                                axis=1)))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items() if k != "config"}
    print(json.dumps(shown, indent=2))
    return 0
