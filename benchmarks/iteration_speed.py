"""Seconds per training iteration at the paper configuration, analytic vs autograd Jacobian.

10,000 points, 5 x 256 SIREN, omega 30, alpha 0.8 with SDFs, Jacobian term on, on a synthetic pair; all
variants measured in the same run: exact analytic, autograd (the paper's way), and analytic with the penalty
estimated on a random eighth of the points (``jacobian_points``, not the default).
Prints one JSON line; ``--write-docs`` also updates docs/benchmarks.md.

    python benchmarks/iteration_speed.py --iterations 20 --device cpu --write-docs
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from benchmark_report import machine_description, update_section
from INRCardiacRegistrationLib.core.masks import sampling_mask
from INRCardiacRegistrationLib.engine.config import RegistrationConfig
from INRCardiacRegistrationLib.engine.devices import resolve_device
from INRCardiacRegistrationLib.engine.pair_registration import register_pair
from INRCardiacRegistrationLib.phantom.synthetic_pair import make_synthetic_pair


def seconds_per_iteration(pair, mask, config: RegistrationConfig, warmup: int, iterations: int) -> float:
    """Wall time per iteration after ``warmup`` iterations (synchronised on CUDA at each report)."""
    stamps: dict[int, float] = {}

    def on_progress(event) -> None:
        if event.iteration in (warmup, warmup + iterations):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            stamps[event.iteration] = time.perf_counter()

    register_pair(pair.fixed, pair.moving, fixed_label=pair.fixed_label, moving_label=pair.moving_label,
                  mask=mask, config=config.replace(iterations=warmup + iterations, progress_every=1),
                  progress=on_progress)
    return (stamps[warmup + iterations] - stamps[warmup]) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the best is reported")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()

    device = resolve_device(args.device)
    pair = make_synthetic_pair(size=64, spacing_mm=1.5, max_displacement_mm=5.0, seed=0)
    mask = sampling_mask(myocardium=pair.fixed_label, myocardium_margin_mm=10.0)
    config = RegistrationConfig(points=args.points, alpha=0.8, device=str(device))  # paper defaults otherwise
    subset = config.points // 8
    variants = {
        "analytic_s_per_it": config.replace(jacobian="analytic"),
        "autograd_s_per_it": config.replace(jacobian="autograd"),
        "analytic_subset_s_per_it": config.replace(jacobian="analytic", jacobian_points=subset),
    }
    # Interleaved repeats, best of each: robust against other load on a shared machine.
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, variant in variants.items():
            timings[name].append(seconds_per_iteration(pair, mask, variant, args.warmup, args.iterations))
    results = {name: min(values) for name, values in timings.items()}
    record = {
        **results,
        "speedup": results["autograd_s_per_it"] / results["analytic_s_per_it"],
        "subset_speedup": results["autograd_s_per_it"] / results["analytic_subset_s_per_it"],
        "jacobian_subset_points": subset,
        "device": str(device),
        "machine": machine_description(device),
        "points": config.points, "width": config.width, "depth": config.depth, "alpha": config.alpha,
        "iterations": args.iterations, "repeats": args.repeats,
    }
    print(json.dumps(record))
    if args.write_docs:
        body = (
            f"`python benchmarks/iteration_speed.py --iterations {args.iterations} --repeats {args.repeats} "
            f"--device {device.type} --write-docs` (best of {args.repeats} interleaved repeats)\n\n"
            f"Machine: {record['machine']}.\n\n"
            "Paper configuration: 10,000 points, 5 x 256 SIREN, omega 30, alpha 0.8 with SDFs, Jacobian term "
            "on.\n\n| Jacobian | s / iteration |\n|---|---|\n"
            f"| analytic (forward mode) | {results['analytic_s_per_it']:.4f} |\n"
            f"| autograd (3 passes, create_graph) | {results['autograd_s_per_it']:.4f} |\n"
            f"| speed-up, exact analytic vs autograd | {record['speedup']:.2f}x |\n"
            f"| analytic, penalty on a random {subset:,} of the {config.points:,} points "
            f"(`--jacobian-points {subset}`) | {results['analytic_subset_s_per_it']:.4f} |\n"
            f"| speed-up, subset analytic vs autograd | {record['subset_speedup']:.2f}x |\n"
        )
        update_section(f"Iteration speed ({device.type})", body)


if __name__ == "__main__":
    main()
