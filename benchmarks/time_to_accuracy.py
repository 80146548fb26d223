"""Time to accuracy: dense error against the phantom's known motion versus wall-clock seconds, per preset and speed
option, for the phantom's ED -> ES pair and for its whole cycle.

Speed options (switched off and on over the preset; the ``fast`` preset has both on, ``paper`` neither):

- ``plateau``: ``--plateau-window 25`` (each pair stops once its loss has levelled off, engine/plateau.py);
- ``jacobian subset``: ``--jacobian-points points/4`` (the Jacobian penalty's mean estimated on a random quarter of
  each iteration's points);
- both together;
- cycle only: both together with ``--tail-average 25`` (an accuracy option: a levelled pair returns the mean of its
  last 25 iterates), then also with ``--chains 2`` (two chains of warm-started pairs at once), and with
  ``--compile on`` (the training loss under ``torch.compile``: once with an empty compiler cache, once more in the
  same process, where the compiled loss is reused).

Pair: the default phantom's ED (reference) -> ES pair as a cycle trains it, warm-started from the ED -> ES-1 network,
for a quarter, half, one and two times the preset's warm-start iteration count (a plateau may end a budget early;
a pair trained from scratch never stops at a plateau); per budget the wall seconds of the training and the dense
error of the network's map over the reference myocardium (mean, mm). Cycle: the whole cycle registered by the
worker (``inr-cardiac register`` through ``phantom_table.register``, non-sequential, alpha 0.8, as the demo) and
scored by ``phantom.evaluation.evaluate_run_on_phantom`` (Dice, landmark TRE, dense error); its seconds are the
run's wall time. One JSON line per setting in ``OUT/results.jsonl``
(``{"setting", "device", "seconds", "dense_error_mm", "dice", "tre_mm", ...}``), a plot ``docs/time_to_accuracy.png``
and, with ``--write-docs``, a table in ``docs/benchmarks.md``. Runs already in OUT are reused (delete OUT to measure
again).

    python benchmarks/time_to_accuracy.py --device cpu --presets fast --write-docs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from benchmark_report import OUT, machine_description, update_section
from INRCardiacRegistrationLib.core.masks import sampling_mask
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder
from INRCardiacRegistrationLib.engine import compiled_loss
from INRCardiacRegistrationLib.engine.config import preset
from INRCardiacRegistrationLib.engine.devices import resolve_device
from INRCardiacRegistrationLib.engine.pair_registration import register_pair
from INRCardiacRegistrationLib.phantom.config import LABEL_VALUES, PhantomConfig
from INRCardiacRegistrationLib.phantom.evaluation import evaluate_run_on_phantom
from INRCardiacRegistrationLib.phantom.files import generate_phantom, load_phantom
from INRCardiacRegistrationLib.phantom.motion import ground_truth_map
from phantom_table import register

BUDGETS = (0.25, 0.5, 1.0, 2.0)
PLOT = Path(__file__).resolve().parents[1] / "docs" / "time_to_accuracy.png"


def settings(preset_name: str) -> dict[str, dict]:
    """Setting name -> registration overrides: the preset without any speed option, with each, with both (none with
    the tail average, an accuracy option: see :func:`cycle_points`)."""
    quarter = max(1, preset(preset_name).points // 4)
    plain = {"tail_average": 0, "compile": "off"}  # compile "auto" would compile on a GPU
    return {"no speed option": {"plateau_window": 0, "jacobian_points": 0, **plain},
            "plateau": {"plateau_window": 25, "jacobian_points": 0, **plain},
            "jacobian subset": {"plateau_window": 0, "jacobian_points": quarter, **plain},
            "plateau + jacobian subset": {"plateau_window": 25, "jacobian_points": quarter, **plain}}


def option_text(overrides: dict) -> list[str]:
    return [text for name, value in overrides.items() for text in (f"--{name.replace('_', '-')}", str(value))]


def pair_points(phantom, preset_name: str, device: str) -> list[dict]:
    """The ED -> ES pair as a cycle trains it, warm-started from the ED -> ES-1 network (trained once, with the
    preset's first-pair count and no speed option), at each budget of each setting: seconds of training and dense
    error (mm)."""
    reference, es = phantom.ed_frame, phantom.es_frame
    labels = phantom.labels[reference]
    myocardium = {t: lab.with_array(np.asarray(lab.array) == LABEL_VALUES["myocardium"], name=f"myocardium {t}")
                  for t, lab in enumerate(phantom.labels) if t in (reference, es - 1, es)}
    heart = labels.with_array(np.isin(labels.array, list(LABEL_VALUES.values())), name="heart")
    mask = sampling_mask(heart=heart, dilation_voxels=preset(preset_name).mask_dilation_voxels)
    points = labels.geometry.index_to_physical(np.argwhere(myocardium[reference].array)[:, ::-1])
    truth = ground_truth_map(points, es, phantom.config)
    neighbour = register_pair(phantom.images[reference], phantom.images[es - 1], fixed_label=myocardium[reference],
                              moving_label=myocardium[es - 1], mask=mask,
                              config=preset(preset_name, device=device, **settings(preset_name)["no speed option"]))
    rows = []
    for name, overrides in settings(preset_name).items():
        base = preset(preset_name, device=device, **overrides)
        for budget in BUDGETS:
            config = base.replace(iterations=max(1, round(base.warm_start_iterations * budget)))
            started = time.perf_counter()
            result = register_pair(phantom.images[reference], phantom.images[es], fixed_label=myocardium[reference],
                                   moving_label=myocardium[es], mask=mask, config=config, initial=neighbour,
                                   coordinates=neighbour.coordinates)
            seconds = time.perf_counter() - started
            error = float(np.linalg.norm(result.map_points(points) - truth, axis=1).mean())
            rows.append({"setting": f"{preset_name} {name}", "task": "pair ED->ES", "device": device,
                         "budget_iterations": config.iterations, "iterations": len(result.loss_history),
                         "seconds": round(seconds, 2), "dense_error_mm": round(error, 4)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def cycle_points(phantom_dir: Path, phantom, out: Path, preset_name: str, device: str) -> list[dict]:
    """The whole cycle per setting: the run's wall seconds and its ground-truth scores."""
    rows = []
    cycles = {name: option_text(overrides) for name, overrides in settings(preset_name).items()}
    both = settings(preset_name)["plateau + jacobian subset"]
    averaged = option_text({**both, "tail_average": 25})  # over one plateau window (the fast preset's setting)
    cycles["plateau + jacobian subset + tail average"] = averaged
    cycles["plateau + jacobian subset + tail average + 2 chains"] = [*averaged, "--chains", "2"]
    # compiled: first with an empty compiler cache (the compile is timed with the run), then again in this process,
    # where the compiled loss is reused (a second run in one Python session); never reused from OUT
    compiled = {"plateau + jacobian subset + tail average + compile (cold cache)",
                "plateau + jacobian subset + tail average + compile (compiled before)"}
    for name in sorted(compiled):
        cycles[name] = [*averaged, "--compile", "on"]
    cache = tempfile.TemporaryDirectory(prefix="inductor_cache_")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name
    for name, options in cycles.items():
        run_dir = out / f"cycle_{preset_name}_{name.replace(' + ', '_').replace(' ', '_')}"
        if name in compiled:
            shutil.rmtree(run_dir, ignore_errors=True)
        seconds = register(phantom_dir, run_dir, "non-sequential", 0.8, preset_name, device,
                           ["--blood-pool-label", "2", *options])
        if name in compiled and compiled_loss._failure is not None:
            raise SystemExit(f"{name}: compiling failed ({compiled_loss._failure}); the row would be eager")
        run = RunFolder(run_dir)
        mean = evaluate_run_on_phantom(run, phantom)["mean"]
        iterations = sum(row["iterations"] for row in run.read_metrics())
        rows.append({"setting": f"{preset_name} {name}", "task": "cycle", "device": device,
                     "seconds": round(seconds, 1), "iterations": int(iterations),
                     "dense_error_mm": round(mean["dense_error_mm"], 4), "dice": round(mean["dice"], 4),
                     "dice_min": round(mean["dice_min"], 4), "tre_mm": round(mean["landmark_tre_mm"], 4)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def plot(rows: list[dict], path: Path, machine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12.0, 4.8), layout="constrained")
    for column, task in enumerate(("pair ED->ES", "cycle")):
        ax = figure.add_subplot(1, 2, column + 1)
        for setting in dict.fromkeys(r["setting"] for r in rows):
            mine = [r for r in rows if r["setting"] == setting and r["task"] == task]
            if mine:
                ax.plot([r["seconds"] for r in mine], [r["dense_error_mm"] for r in mine], "o-", label=setting)
        ax.set(xlabel="wall-clock seconds", ylabel="dense error in the myocardium (mm)",
               title=f"{task} ({'warm-started, 1/4 to 2x the iterations' if task != 'cycle' else 'whole cycle'})")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    figure.suptitle(f"Time to accuracy on the phantom ({machine})", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def table(rows: list[dict], machine: str, command: str) -> str:
    lines = [f"Machine: {machine}. Reproduce: `{command}`.", "",
             "Whole cycle (20 frames, non-sequential, alpha 0.8; means over the 19 frames besides the reference):", "",
             "| setting | seconds | iterations | dense error (mm) | Dice (min) | landmark TRE (mm) |",
             "|---|---|---|---|---|---|"]
    for r in (r for r in rows if r["task"] == "cycle"):
        lines.append(f"| {r['setting']} | {r['seconds']:.0f} | {r['iterations']} | {r['dense_error_mm']:.3f} | "
                     f"{r['dice']:.3f} ({r['dice_min']:.3f}) | {r['tre_mm']:.3f} |")
    lines += ["", "ED -> ES pair warm-started from ED -> ES-1, by iteration budget (a plateau may stop a budget "
              "early):", "",
              "| setting | budget | iterations used | seconds | dense error (mm) |", "|---|---|---|---|---|"]
    for r in (r for r in rows if r["task"] != "cycle"):
        lines.append(f"| {r['setting']} | {r['budget_iterations']} | {r['iterations']} | {r['seconds']:.1f} | "
                     f"{r['dense_error_mm']:.3f} |")
    lines += ["", "![time to accuracy](time_to_accuracy.png)"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT / "time_to_accuracy")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--presets", nargs="+", default=["fast"], choices=["fast", "paper"])
    parser.add_argument("--tasks", nargs="+", default=["pair", "cycle"], choices=["pair", "cycle"])
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md and its plot")
    args = parser.parse_args()
    device = resolve_device(args.device)
    phantom_dir = args.out / "phantom"
    if not (phantom_dir / "manifest.json").is_file():
        generate_phantom(phantom_dir, PhantomConfig())
    phantom = load_phantom(phantom_dir)
    rows = []
    for preset_name in args.presets:
        if "pair" in args.tasks:
            rows += pair_points(phantom, preset_name, str(device))
        if "cycle" in args.tasks:
            rows += cycle_points(phantom_dir, phantom, args.out, preset_name, str(device))
    with open(args.out / "results.jsonl", "w", encoding="utf-8") as stream:
        stream.writelines(json.dumps(row) + "\n" for row in rows)
    machine = machine_description(device)
    command = (f"python benchmarks/time_to_accuracy.py --device {device.type} --presets {' '.join(args.presets)} "
               f"--write-docs")
    print(table(rows, machine, command))
    if args.write_docs:
        plot(rows, PLOT, machine)
        update_section(f"Time to accuracy ({device.type})", table(rows, machine, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
