"""Cohort runs (``inr-cardiac batch``) on real Dask: an embedded LocalCluster, and a scheduler and workers started as
separate processes on localhost. Every patient is a real (tiny) whole-cycle registration by the real worker.

The cohort: three 4-frame phantoms of different seeds; patient ``bad``'s CT is cut short on purpose (a truncated
``.nii.gz``, which ITK alone would read as zeros without a word).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="inr-cardiac batch needs Dask ([test] installs it)")

from helpers import TINY  # noqa: E402
from INRCardiacRegistrationLib.cli.main import main  # noqa: E402
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder  # noqa: E402
from INRCardiacRegistrationLib.phantom.config import PhantomConfig  # noqa: E402
from INRCardiacRegistrationLib.phantom.files import generate_phantom  # noqa: E402

FRAMES = 4
COMMON = " ".join(["--myocardium-label", "1", "--heart-label", "1", "2", "3", "--blood-pool-label", "2", *TINY])
GOOD = ("p1", "p3")
TIMING_COLUMNS = {"seconds", "seconds_total"}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Three tiny phantoms (seeds 1, 2, 3); the second one's CT truncated; p3 with its own options (more
    iterations per warm-started pair, which also leaves time to interrupt it between frames)."""
    root = tmp_path_factory.mktemp("cohort_inputs")
    for name, seed in (("p1", 1), ("bad", 2), ("p3", 3)):
        generate_phantom(root / name, PhantomConfig(frames=FRAMES, spacing_mm=(3.5, 3.5, 3.5), seed=seed))
    ct = root / "bad" / "ct_4d.nii.gz"
    ct.write_bytes(ct.read_bytes()[:20_000])
    rows = ["patient,image,labels,landmarks,landmarks_annotated,options"]
    for name, options in (("p1", ""), ("bad", ""), ("p3", "--iterations-others 100")):
        rows.append(f"{name},{name}/ct_4d.nii.gz,{name}/labels_4d.nii.gz,{name}/landmarks_reference.mrk.json,"
                    f"{name}/landmark_trajectories.csv,{options}")
    path = root / "manifest.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def batch_argv(manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["batch", str(manifest), "--out", str(out), "--threads-per-task", "1", "--options", COMMON, "--quiet",
            *extra]


def read_csv(path: Path, drop: set[str] = TIMING_COLUMNS) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as stream:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(stream)]


def read_events(cohort: Path) -> list[dict]:
    return [json.loads(line) for line in (cohort / "cohort_events.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def local_cohort(manifest, tmp_path_factory) -> Path:
    """Acceptance 1's run: the local Dask cluster with 2 workers."""
    out = tmp_path_factory.mktemp("cohort_local") / "cohort"
    assert main(batch_argv(manifest, out, "--workers", "2")) == 1  # 1: some patient failed
    return out


@pytest.mark.slow
def test_local_cluster_runs_the_good_patients_and_reports_the_corrupted_one(local_cohort):
    """Acceptance 1: the two good patients finish, the truncated image fails with its reason (not retried: bad
    input), and the summary holds the two, with per-patient means recomputed here from their own run folders."""
    summary = {row["patient"]: row for row in read_csv(local_cohort / "cohort_summary.csv", drop=set())}
    assert [summary[p]["status"] for p in ("p1", "bad", "p3")] == ["finished", "failed", "finished"]
    assert "truncated" in summary["bad"]["reason"] and "ct_4d.nii.gz" in summary["bad"]["reason"]
    failed = [e for e in read_events(local_cohort) if e["event"] == "patient_failed"]
    assert [(e["patient"], e["attempts"]) for e in failed] == [("bad", 1)]
    rows = read_csv(local_cohort / "cohort_metrics.csv")
    assert sorted({row["patient"] for row in rows}) == ["p1", "p3"]
    assert len(rows) == 2 * FRAMES
    for patient in GOOD:
        run = RunFolder(local_cohort / "runs" / patient)
        assert run.is_finished()
        own = [r for r in run.read_metrics() if r["frame"] != 0]
        for column, mean_column in (("dice", "dice_mean"), ("tre_mm", "tre_mm_mean")):
            expected = sum(r[column] for r in own) / len(own)
            assert float(summary[patient][mean_column]) == pytest.approx(expected, rel=1e-5)
        assert float(summary[patient]["dice_mean"]) > 0.8  # a real registration, not the identity
        assert float(summary[patient]["tre_mm_mean"]) < 2.5
        function = json.loads(run.function_json.read_text())
        for column in ("ef_pct", "peak_gls_pct"):
            assert float(summary[patient][column]) == pytest.approx(function[column], rel=1e-5)
    assert summary["bad"]["ef_pct"] == ""
    png = (local_cohort / "cohort_report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_rerunning_a_finished_cohort_with_other_options_is_refused(local_cohort, manifest):
    """Finished patients are kept as they are, so a re-run that would give them other settings stops (exit 2)."""
    before = (local_cohort / "cohort.json").read_text()
    argv = batch_argv(manifest, local_cohort)
    argv[argv.index("--options") + 1] = COMMON.replace("--omega 20", "--omega 25")
    assert main(argv) == 2
    assert (local_cohort / "cohort.json").read_text() == before


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.slow
def test_existing_scheduler_gives_the_same_summary(manifest, local_cohort, tmp_path):
    """Acceptance 2: `dask scheduler` and `dask worker` as separate processes on localhost; the batch connects to
    the scheduler's address and produces the local run's summary (every column but the timings). The worker
    advertises GPU=1 and the batch asks --gpus-per-task 1, as on a GPU cluster: one patient at a time on it."""
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = _start([sys.executable, "-m", "dask", "scheduler", "--scheduler-file", str(scheduler_file),
                        "--host", "127.0.0.1", "--port", "0", "--no-dashboard"], tmp_path / "scheduler.log")
    workers = None
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            assert scheduler.poll() is None, (tmp_path / "scheduler.log").read_text()
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        workers = _start([sys.executable, "-m", "dask", "worker", address, "--nworkers", "1", "--nthreads", "2",
                          "--resources", "GPU=1", "--no-dashboard"], tmp_path / "workers.log")
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=120)
        out = tmp_path / "cohort"
        # "GPU" is only a Dask resource here (the registrations run on the CPU): one patient at a time on the worker,
        # although it has 2 threads
        assert main(batch_argv(manifest, out, "--scheduler", address, "--gpus-per-task", "1")) == 1
    finally:
        for process in (workers, scheduler):
            if process is not None:
                _stop(process)
    events = read_events(out)
    assert events[0]["scheduler"] == address and not [e for e in events if e["event"] == "warning"]
    assert _most_at_once(out) == 1  # GPU=1 per task on a worker with GPU=1 and 2 threads
    assert read_csv(out / "cohort_metrics.csv") == read_csv(local_cohort / "cohort_metrics.csv")
    assert read_csv(out / "cohort_summary.csv") == read_csv(local_cohort / "cohort_summary.csv")


def _most_at_once(cohort: Path) -> int:
    """The most registrations that ran at the same time, from their 'started' and last events' times."""
    spans = []
    for folder in (cohort / "runs").iterdir():
        events = RunFolder(folder).read_events()
        if events:
            spans.append((events[0]["time"], events[-1]["time"]))
    return max(sum(start <= t < end for start, end in spans) for t, _ in spans)


def _frame_files(run: RunFolder) -> dict[str, int]:
    folders = [run.root / name for name in ("frames", "transforms") if (run.root / name).is_dir()]
    return {str(p.relative_to(run.root)): p.stat().st_mtime_ns for folder in folders for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_killed_batch_resumes_only_the_remaining_work(manifest, local_cohort, tmp_path):
    """Acceptance 3: kill -9 the batch once one patient has finished and another is half-way; its orphaned worker
    stops by itself (it watches its parent), and re-running the same command skips the finished patient, resumes
    the half-finished one from its saved frames (their files untouched) and ends with the local run's summary."""
    out = tmp_path / "cohort"
    argv = [sys.executable, "-m", "INRCardiacRegistrationLib.cli", *batch_argv(manifest, out, "--workers", "1")]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    runs = {p: RunFolder(out / "runs" / p) for p in GOOD}
    done = partial = None
    deadline = time.monotonic() + 300
    while done is None and time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode()
        finished = [p for p in GOOD if runs[p].is_finished()]
        # exactly frames 0 and 1 saved: two frames left, so the orphan is still busy when it notices the kill
        halfway = [p for p in GOOD if len(runs[p].finished_records(FRAMES)) == 2]
        if finished and halfway:
            done, partial = finished[0], halfway[0]
            break
        time.sleep(0.02)
    assert done is not None, "never saw one patient finished and the other half-way"
    process.kill()
    process.wait(timeout=30)
    deadline = time.monotonic() + 60  # the orphaned worker notices and stops after its saved frames
    while runs[partial].read_run_info()["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert runs[partial].read_run_info()["status"] == "cancelled"
    kept = {p: _frame_files(runs[p]) for p in GOOD}
    frames_before = sorted(runs[partial].finished_records(FRAMES))
    assert main(batch_argv(manifest, out, "--workers", "1")) == 1

    second = [e for e in read_events(out) if e["batch"] == read_events(out)[-1]["batch"]]
    assert [e["patient"] for e in second if e["event"] == "patient_skipped"] == [done]
    submitted = {e["patient"]: e["resume"] for e in second if e["event"] == "patient_submitted"}
    assert submitted == {partial: True, "bad": False}
    assert _frame_files(runs[done]) == kept[done]
    after = _frame_files(runs[partial])
    assert {name: after[name] for name in kept[partial]} == kept[partial]  # saved frames not redone
    assert len(after) == 2 * FRAMES  # every frame: its record and its transform
    starts = [e for e in runs[partial].read_events() if e["event"] == "started"]
    assert len(starts) == 2 and starts[-1]["finished"] == frames_before
    assert read_csv(out / "cohort_metrics.csv") == read_csv(local_cohort / "cohort_metrics.csv")
    assert read_csv(out / "cohort_summary.csv") == read_csv(local_cohort / "cohort_summary.csv")


@pytest.mark.slow
def test_a_worker_that_dies_is_retried_and_resumes(manifest, local_cohort, tmp_path):
    """A patient whose worker is killed (as by the out-of-memory killer) is tried again by Dask (--retries 1); the
    second attempt resumes the run folder and gives the uninterrupted results."""
    single = tmp_path / "manifest.csv"
    lines = manifest.read_text().splitlines()
    base = manifest.parent
    single.write_text(lines[0] + "\n" + lines[1].replace("p1/", f"{base}/p1/") + "\n")
    out = tmp_path / "cohort"
    argv = [sys.executable, "-m", "INRCardiacRegistrationLib.cli", *batch_argv(single, out, "--retries", "1")]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    run = RunFolder(out / "runs" / "p1")
    deadline = time.monotonic() + 300
    while len(run.finished_records(FRAMES)) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode()
        time.sleep(0.02)
    holder = run.lock_path.read_text().split()
    assert holder[0] == "pid"
    os.kill(int(holder[1]), signal.SIGKILL)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output.decode()
    finished = [e for e in read_events(out) if e["event"] == "patient_finished"]
    assert [(e["patient"], e["attempts"]) for e in finished] == [("p1", 2)]
    assert "killed by SIGKILL" not in output.decode()  # retried, so not reported as a failure
    assert read_csv(out / "cohort_metrics.csv") == [r for r in read_csv(local_cohort / "cohort_metrics.csv")
                                                    if r["patient"] == "p1"]


@pytest.mark.slow
def test_ctrl_c_stops_running_patients_after_their_saved_frames(manifest, tmp_path):
    """SIGINT to the whole terminal process group (what Ctrl-C does): the batch asks the running worker to stop,
    which keeps its saved frames, and ends with exit code 130 and the patient listed as cancelled."""
    single = tmp_path / "manifest.csv"
    lines = manifest.read_text().splitlines()
    single.write_text(lines[0] + "\n" + lines[3].replace("p3/", f"{manifest.parent}/p3/") + "\n")
    out = tmp_path / "cohort"
    argv = [sys.executable, "-m", "INRCardiacRegistrationLib.cli", *batch_argv(single, out)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    run = RunFolder(out / "runs" / "p3")
    deadline = time.monotonic() + 300
    while len(run.finished_records(FRAMES)) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode()
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 130, output.decode()
    assert "Traceback" not in output.decode()  # the local Dask workers ignore the terminal's SIGINT
    assert run.read_run_info()["status"] == "cancelled"
    assert 2 <= len(run.finished_records(FRAMES)) < FRAMES
    events = read_events(out)
    assert [e["event"] for e in events if e["event"].startswith("patient_")] == ["patient_submitted",
                                                                                 "patient_cancelled"]
    assert events[-1]["event"] == "batch_cancelled"
    assert "the same batch command continues it" in events[-2]["reason"]
    summary = read_csv(out / "cohort_summary.csv")
    assert summary[0]["status"] == "cancelled"


def test_cpu_workers_one_per_core_within_memory(monkeypatch):
    """Without CUDA the local batch runs one patient per CPU core (each with one thread), but no more than one per
    3 GiB of memory."""
    import os

    from INRCardiacRegistrationLib.cohort.batch import cpu_workers

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 128 * 2**30 // 4096}
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    assert cpu_workers() == 16
    pages["SC_PHYS_PAGES"] = 8 * 2**30 // 4096  # 8 GiB: two workers of 3 GiB
    assert cpu_workers() == 2
    pages["SC_PHYS_PAGES"] = 2**30 // 4096
    assert cpu_workers() == 1
