"""Shared helpers of the benchmark scripts: machine description and docs/benchmarks.md sections."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

import torch
from INRCardiacRegistrationLib.cli.main import main as cli_main
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
# where the scripts write their runs by default: the repository's ignored out/, whatever the working folder
OUT = ROOT / "out"


def shown_path(path: Path) -> Path:
    """``path`` as a command in docs/benchmarks.md shows it: relative to the repository when inside it."""
    path = Path(path)
    return path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
HEADER = "# Benchmarks\n\nEvery section is written by the script it names; re-run the command to refresh it.\n"


def machine_description(device: torch.device) -> str:
    """CPU model and core count, or the GPU name, plus the torch version."""
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        model = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        what = f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return f"{what}; torch {torch.__version__}"


def register_or_reuse(argv: list[str], run_dir: Path) -> float:
    """Run ``inr-cardiac`` with ``argv`` (a ``register ... --out run_dir`` command line) unless ``run_dir`` holds a
    finished run; an unfinished one is resumed. Returns the run's seconds: measured now, or the ones its
    ``run.json`` stored when it is reused."""
    run = RunFolder(run_dir)
    if run.is_finished():
        return float(run.read_run_info().get("seconds", float("nan")))
    started = time.perf_counter()
    if cli_main([*argv, "--resume"] if run.exists() else argv) != 0:
        raise SystemExit(f"register failed for {run_dir}")
    return time.perf_counter() - started


def publish(title: str, text: str, write_docs: bool) -> None:
    """Print a benchmark's ``text`` and, with ``write_docs``, make it the ``## title`` section of docs/benchmarks.md."""
    print(text)
    if write_docs:
        update_section(title, text)


def update_section(title: str, body: str, path: Path = DOCS) -> Path:
    """Replace (or append) the ``## title`` section of docs/benchmarks.md with ``body``."""
    text = path.read_text() if path.exists() else HEADER
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip() + "\n")
    return path
