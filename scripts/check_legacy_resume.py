"""Check that a run folder written by an earlier version of the package resumes with this one and ends with the
metrics of an uninterrupted run.

    python scripts/check_legacy_resume.py [--revision 3b055cc] [--frames 6] [--work /tmp/legacy-resume]

1. exports REVISION of this repository (``git archive``) and, with that code first on ``PYTHONPATH``, writes a
   phantom and starts a tiny-network run on it, cancelled (``RUN_DIR/cancel``) once two frames are saved;
2. with the current code, resumes copies of that folder twice: ``register --resume --out`` (the inputs and settings
   from the old ``run.json``) and ``register IMAGE ... --resume`` (all options given again);
3. runs the same request uninterrupted with the current code, and compares every ``metrics.csv`` column but the time.

Exit code 0 when both resumed runs equal the uninterrupted one. Needs the package's dependencies in this Python.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "fast", "--width", "64", "--depth", "3", "--points", "2000", "--iterations", "60",
        "--iterations-others", "30", "--device", "cpu", "--omega", "20"]


def cli(*argv: str, code: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code / "INRCardiacRegistration"), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-m", "INRCardiacRegistrationLib.cli", *argv], env=env,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:2])} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return result


def metrics_without_time(run: Path) -> list[dict]:
    with open(run / "metrics.csv", encoding="utf-8", newline="") as stream:
        return [{key: value for key, value in row.items() if key != "seconds"} for row in csv.DictReader(stream)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revision", default="3b055cc", help="the earlier version (a git revision)")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--work", type=Path, default=Path("/tmp/legacy-resume"))
    args = parser.parse_args()
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    old_code = work / "old_code"
    old_code.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.revision], check=True, capture_output=True)
    (work / "old.tar").write_bytes(archive.stdout)
    with tarfile.open(work / "old.tar") as tar:
        tar.extractall(old_code)

    phantom = work / "phantom"
    cli("phantom", str(phantom), "--frames", str(args.frames), "--spacing", "3.5", "--quiet", code=old_code)
    inputs = [str(phantom / "ct_4d.nii.gz"), "--labels", str(phantom / "labels_4d.nii.gz"), "--myocardium-label", "1",
              "--heart-label", "1", "2", "3", "--landmarks", str(phantom / "landmarks_reference.mrk.json"),
              "--landmarks-annotated", str(phantom / "landmark_trajectories.csv"), *TINY]
    old_run = work / "old_run"
    env = dict(os.environ, PYTHONPATH=str(old_code / "INRCardiacRegistration"))
    worker = subprocess.Popen([sys.executable, "-m", "INRCardiacRegistrationLib.cli", "register", *inputs, "--out",
                               str(old_run), "--quiet", "--no-report"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    while worker.poll() is None and len(list((old_run / "frames").glob("*.json"))) < 3:
        time.sleep(0.2)
    (old_run / "cancel").touch()
    print(f"old code ({args.revision}): exit {worker.wait()}, frames saved "
          f"{sorted(p.stem for p in (old_run / 'frames').glob('*.json'))}")

    fresh = work / "fresh"
    cli("register", *inputs, "--out", str(fresh), "--quiet", "--no-report")
    expected = metrics_without_time(fresh)
    same = True
    for name, extra in (("resumed_from_run_json", []), ("resumed_with_all_options", inputs)):
        copy = work / name
        shutil.copytree(old_run, copy)
        cli("register", *extra, "--out", str(copy), "--resume", "--quiet", "--no-report")
        got = metrics_without_time(copy)
        equal = got == expected
        same &= equal
        print(f"{name}: {len(got)} frames, metrics {'equal to' if equal else 'DIFFERENT from'} the uninterrupted run")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
