"""Whole-cycle registration end to end on a tiny phantom (real torch optimisation, real files, real processes):
the run folder, SimpleITK reading the written transforms, sequential composition, resume after SIGKILL,
cancel with SIGTERM, and bad input (one line, exit code 2, nothing written)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import register_argv, run_sampling_mask_and_region
from INRCardiacRegistrationLib.cli.main import main
from INRCardiacRegistrationLib.core.metrics import dice
from INRCardiacRegistrationLib.core.surface_distance import surface_distances
from INRCardiacRegistrationLib.core.vocabulary import METRIC_COLUMNS
from INRCardiacRegistrationLib.cycle.driver import processing_order
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder
from INRCardiacRegistrationLib.engine.registration_result import PairRegistration
from INRCardiacRegistrationLib.fileio.displacement_field import read_displacement_field
from INRCardiacRegistrationLib.fileio.landmarks import read_markups_json, read_trajectories_csv


def worker(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "INRCardiacRegistrationLib.cli", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_event(run: RunFolder, process: subprocess.Popen, condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(condition(event) for event in run.read_events()):
            return
        if process.poll() is not None:
            raise AssertionError(f"worker ended early ({process.returncode}): {process.stderr.read()}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError("timed out waiting for a progress event")


@pytest.fixture(scope="session")
def finished_run(tiny_phantom, tmp_path_factory):
    """One uninterrupted non-sequential run, in a separate process like a user's."""
    out = tmp_path_factory.mktemp("runs") / "uninterrupted"
    process = worker(register_argv(tiny_phantom, out, "--quiet"))
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return RunFolder(out)


@pytest.fixture(scope="module")
def paper_penalty_run(tiny_phantom, tmp_path_factory):
    """The same run with the paper's Jacobian penalty in the LV cavity too (``--blood-pool-jacobian identity``) and
    without the fast preset's speed options (every pair runs all its iterations, the penalty on all points), as
    every run made before those existed."""
    out = tmp_path_factory.mktemp("runs") / "paper_penalty"
    assert main(register_argv(tiny_phantom, out, "--quiet", "--no-report", "--blood-pool-jacobian", "identity",
                              "--plateau-window", "0", "--jacobian-points", "0")) == 0
    return RunFolder(out)


def metric_rows_without_time(run: RunFolder) -> list[list[str]]:
    lines = run.metrics_csv.read_text().splitlines()
    column = lines[0].split(",").index("seconds")
    return [[cell for i, cell in enumerate(line.split(",")) if i != column] for line in lines]


def test_processing_order_goes_around_the_cycle():
    assert processing_order(5, 0) == [1, 2, 3, 4]
    assert processing_order(5, 3) == [4, 0, 1, 2]


@pytest.mark.slow
def test_run_folder_is_complete(finished_run, tiny_phantom):
    run = finished_run
    info = run.read_run_info()
    assert info["status"] == "finished" and info["frames"] == 4 and info["mode"] == "non-sequential"
    assert info["config"]["width"] == 64 and info["config"]["warm_start_iterations"] == 30
    assert isinstance(info["torch_threads"], int) and info["torch_threads"] >= 1
    for t in range(4):
        for path in (run.transform_path(t), run.label_path(t), run.landmarks_path(t), run.record_path(t)):
            assert path.is_file(), path
        assert run.checkpoint_path(t).is_file() == (t != 0)
    assert run.report_png.is_file() and run.summary_txt.is_file()
    assert not list(run.root.rglob(".tmp-*")) and not run.cancel_path.exists() and run.lock_path.read_text() == ""
    header = run.metrics_csv.read_text().splitlines()[0].split(",")
    assert header[:9] == ["frame", "dice", "hd95_mm", "hd95_subvoxel_mm", "mean_surface_mm", "tre_mm",
                          "negative_jacobian_pct", "final_loss", "seconds"]
    assert tuple(header) == METRIC_COLUMNS
    events = [e["event"] for e in run.read_events()]
    assert events[0] == "started" and events[-1] == "finished" and events.count("frame_finished") == 3
    assert "iteration" in events


@pytest.mark.slow
def test_registration_improves_on_the_identity(finished_run, tiny_phantom):
    """The propagated reference myocardium overlaps each frame's label better than the unmoved one, and the
    tracked landmarks are closer to the truth than the reference positions."""
    rows = {row["frame"]: row for row in finished_run.read_metrics()}
    reference = tiny_phantom.labels[0].array == 1
    truth = tiny_phantom.trajectories
    for t in (1, 2, 3):
        own = tiny_phantom.labels[t].array == 1
        unmoved_tre = np.linalg.norm(truth.points_lps[t] - truth.points_lps[0], axis=1).mean()
        print(f"frame {t}: Dice {dice(reference, own):.3f} -> {rows[t]['dice']:.3f}, "
              f"TRE {unmoved_tre:.2f} -> {rows[t]['tre_mm']:.2f} mm")
        assert rows[t]["dice"] > dice(reference, own)
        assert rows[t]["tre_mm"] < unmoved_tre
        propagated = sitk.GetArrayFromImage(sitk.ReadImage(str(finished_run.label_path(t))))
        assert dice(propagated > 0, own) == pytest.approx(rows[t]["dice"], abs=1e-6)
        measured = surface_distances(propagated > 0, own, tiny_phantom.labels[t].geometry)
        assert (rows[t]["hd95_subvoxel_mm"], rows[t]["mean_surface_mm"]) == pytest.approx(
            (measured.hd95_mm, measured.mean_mm), abs=1e-5)  # metrics.csv keeps 6 significant digits
        assert 0 < rows[t]["mean_surface_mm"] < rows[t]["hd95_subvoxel_mm"]
    assert rows[0]["dice"] == 1.0 and rows[0]["hd95_mm"] == 0.0 and rows[0]["hd95_subvoxel_mm"] == 0.0
    # the voxel HD95 moves in steps of the 3.5 mm voxels; the sub-voxel one does not
    assert len({rows[t]["hd95_subvoxel_mm"] for t in (1, 2, 3)}) == 3


def assert_simpleitk_reproduces_trajectories(run: RunFolder, reference_landmarks: np.ndarray) -> None:
    """Acceptance 2: ReadTransform(frame file).TransformPoint(reference landmark) == trajectory CSV (0.05 mm)."""
    trajectories = read_trajectories_csv(run.trajectories_csv)
    reference = read_markups_json(run.landmarks_path(0)).points_lps
    assert np.allclose(reference, reference_landmarks)
    worst = 0.0
    for index, t in enumerate(trajectories.frames):
        transform = sitk.ReadTransform(str(run.transform_path(t)))
        moved = np.array([transform.TransformPoint(tuple(map(float, p))) for p in reference])
        worst = max(worst, float(np.linalg.norm(moved - trajectories.points_lps[index], axis=1).max()))
    print(f"max |SimpleITK - CSV| = {worst:.5f} mm")
    assert worst <= 0.05


@pytest.mark.slow
def test_simpleitk_transforms_reproduce_the_trajectories(finished_run, tiny_phantom):
    assert_simpleitk_reproduces_trajectories(finished_run, tiny_phantom.landmarks.points_lps)


@pytest.mark.slow
def test_sequential_mode_composes_the_pair_maps(tiny_phantom, tmp_path):
    """The sequential transforms and trajectories equal the pair checkpoints applied one after another.
    (``--resume`` with a new folder simply starts the run.)"""
    out = tmp_path / "sequential"
    assert main(register_argv(tiny_phantom, out, "--mode", "sequential", "--quiet", "--no-report", "--resume")) == 0
    run = RunFolder(out)
    rows = {row["frame"]: row for row in run.read_metrics()}
    assert [rows[t]["pair"] for t in (1, 2, 3)] == ["0->1", "1->2", "2->3"]
    displacement, grid = read_displacement_field(run.transform_path(3))
    region = run_sampling_mask_and_region(run)[1]
    core = region.evaluated_points()  # the maps are composed on the core; the margin extends its values, tapered
    composed = core.copy()
    for t in (1, 2, 3):
        composed = PairRegistration.load(run.checkpoint_path(t)).map_points(composed)
    expected = region.taper(region.extend_evaluated(composed - core))
    assert np.abs(expected - displacement).max() < 1e-4
    assert_simpleitk_reproduces_trajectories(run, tiny_phantom.landmarks.points_lps)


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_uninterrupted_results(finished_run, tiny_phantom, tmp_path):
    """Acceptance 3: kill -9 after the first frame, --resume, and every metric (but time) and every written
    transform equals the uninterrupted run's."""
    out = tmp_path / "killed"
    run = RunFolder(out)
    process = worker(register_argv(tiny_phantom, out, "--quiet", "--no-report"))
    wait_for_event(run, process, lambda e: e["event"] == "frame_finished")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    finished_before = sorted(run.finished_records(4))
    assert 1 in finished_before and finished_before != [0, 1, 2, 3]
    resumed = worker(["register", "--out", str(out), "--resume", "--quiet"])
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert metric_rows_without_time(run) == metric_rows_without_time(finished_run)
    for t in range(4):
        ours, _ = read_displacement_field(run.transform_path(t))
        theirs, _ = read_displacement_field(finished_run.transform_path(t))
        assert np.array_equal(ours, theirs), f"frame {t} transform differs"
    info = run.read_run_info()
    assert info["status"] == "finished" and info["resumed"] == 1


def stopped_while_frame_2_trains(phantom, out: Path, signal_number: int) -> RunFolder:
    """Start the worker on the tiny phantom, send ``signal_number`` once frame 2 trains; it must end cancelled
    (exit 130)."""
    run = RunFolder(out)
    process = worker(register_argv(phantom, out, "--quiet", "--no-report"))
    wait_for_event(run, process, lambda e: e["event"] == "iteration" and e["frame"] == 2)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    return run


@pytest.mark.slow
def test_sigterm_cancels_cleanly(tiny_phantom, tmp_path):
    """Acceptance 3: SIGTERM mid-frame ends with exit 130, a 'cancelled' event and only complete frames."""
    out = tmp_path / "cancelled"
    run = stopped_while_frame_2_trains(tiny_phantom, out, signal.SIGTERM)
    events = run.read_events()
    assert events[-1]["event"] == "cancelled"
    assert run.read_run_info()["status"] == "cancelled"
    finished = sorted(run.finished_records(4))
    assert finished == [0, 1]
    written = sorted(p.name for p in (out / "transforms").iterdir())
    assert written == ["frame_000.h5", "frame_001.h5"]
    assert not list(out.rglob(".tmp-*"))
    assert [row["frame"] for row in run.read_metrics()] == [0, 1]


@pytest.mark.slow
def test_cancel_file_stops_the_run(tiny_phantom, tmp_path):
    out = tmp_path / "cancel_file"
    run = RunFolder(out)
    process = worker(register_argv(tiny_phantom, out, "--quiet", "--no-report"))
    wait_for_event(run, process, lambda e: e["event"] == "iteration")
    run.request_cancel()
    process.communicate(timeout=60)
    assert process.returncode == 130
    assert run.read_events()[-1]["event"] == "cancelled"
    assert not run.cancel_path.exists() and run.lock_path.read_text() == ""  # no stale cancel, no holder named


def _one_line_error(argv: list[str], out: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "INRCardiacRegistrationLib.cli", *argv], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("inr-cardiac register: error: "), result.stderr
    assert not out.exists(), "bad input must not create the run folder"
    return lines[0]


def _write_frames(volumes, path: Path) -> Path:
    sitk.WriteImage(sitk.JoinSeries([v.to_sitk() for v in volumes]), str(path))
    return path


@pytest.mark.slow
def test_bad_input_one_line_exit_2_nothing_written(tiny_phantom, tmp_path):
    """Acceptance 4: each bad input gives one clear line, exit code 2 and no run folder."""
    root = tiny_phantom.manifest_path.parent
    out = tmp_path / "run"
    image, labels = str(root / "ct_4d.nii.gz"), str(root / "labels_4d.nii.gz")
    base = ["--out", str(out), "--myocardium-label", "1", "--device", "cpu"]

    # a 3D image where 4D is needed
    three_d = tmp_path / "frame0.nii.gz"
    tiny_phantom.images[0].write(three_d)
    assert "4D" in _one_line_error(["register", str(three_d), "--labels", labels, *base], out)
    # frames of different size, no overlap to resample from
    folder = tmp_path / "frames"
    folder.mkdir()
    tiny_phantom.images[0].write(folder / "f0.nii.gz")
    far = tiny_phantom.images[1].to_sitk()
    far.SetOrigin(tuple(o + 1000.0 for o in far.GetOrigin()))
    sitk.WriteImage(far[:-3, :, :], str(folder / "f1.nii.gz"))
    assert "frame 1" in _one_line_error(["register", str(folder), "--labels", labels, *base], out)
    # a label file whose grid does not match
    shifted = [v.to_sitk()[:-2, :, :] for v in tiny_phantom.labels]
    sitk.WriteImage(sitk.JoinSeries(shifted), str(tmp_path / "bad_labels.nii.gz"))
    assert "grid" in _one_line_error(["register", image, "--labels", str(tmp_path / "bad_labels.nii.gz"), *base], out)
    # a myocardium label value that does not occur
    message = _one_line_error(["register", image, "--labels", labels, "--out", str(out), "--myocardium-label", "7"],
                              out)
    assert "7" in message
    # landmarks outside the image
    x, y, z = tiny_phantom.landmarks.points_lps[0]
    (tmp_path / "far.csv").write_text(f"landmark,x,y,z\nA,{x},{y},{z}\nB,9000,0,0\n")
    message = _one_line_error(["register", image, "--labels", labels, "--landmarks", str(tmp_path / "far.csv"),
                               *base], out)
    assert "'B'" in message and "outside" in message
    # an unreadable file
    (tmp_path / "broken.nii.gz").write_bytes(b"not an image at all")
    assert "broken.nii.gz" in _one_line_error(["register", str(tmp_path / "broken.nii.gz"), *base], out)
    # a missing file
    assert "missing.nii.gz" in _one_line_error(["register", str(tmp_path / "missing.nii.gz"), *base], out)


@pytest.mark.slow
def test_existing_runs_are_never_overwritten(finished_run, tiny_phantom, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in finished_run.root.rglob("*") if p.is_file()}
    assert main(register_argv(tiny_phantom, finished_run.root, "--quiet")) == 2
    assert main(register_argv(tiny_phantom, finished_run.root, "--quiet", "--resume", "--alpha", "0.5")) == 2
    after = {p: p.stat().st_mtime_ns for p in finished_run.root.rglob("*") if p.is_file()}
    assert before == after
    stray = tmp_path / "not_a_run"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    assert main(register_argv(tiny_phantom, stray, "--quiet")) == 2
    assert sorted(os.listdir(stray)) == ["notes.txt"]


@pytest.mark.slow
def test_demo_summary_mentions_ground_truth(tmp_path, capsys):
    """The demo on a 3-frame phantom with a tiny network: report, summary and the ground-truth comparison."""
    assert main(["demo", "--out", str(tmp_path / "demo"), "--frames", "3", "--device", "cpu", "--quiet",
                 "--iterations", "40", "--iterations-others", "20", "--points", "1500", "--width", "48",
                 "--depth", "2"]) == 0
    printed = capsys.readouterr().out
    assert "against the phantom's ground truth" in printed and "dense error" in printed
    evaluation = json.loads((tmp_path / "demo" / "run" / "phantom_evaluation.json").read_text())
    assert [row["frame"] for row in evaluation["frames"]] == [0, 1, 2]
    assert (tmp_path / "demo" / "run" / "report.png").is_file()


def _api_inputs(phantom, reference: int):
    from INRCardiacRegistrationLib.cycle.inputs import build_cycle_inputs

    return build_cycle_inputs(phantom.images, dict(enumerate(phantom.labels)), reference, myocardium_label=1,
                              heart_labels=[1, 2, 3], landmarks=phantom.trajectories.at_frame(reference),
                              annotated=phantom.trajectories)


def _api_config(mode: str, reference: int):
    from INRCardiacRegistrationLib.cycle.driver import CycleConfig
    from INRCardiacRegistrationLib.engine.config import preset

    registration = preset("fast", device="cpu", width=64, depth=3, points=2000, iterations=60,
                          warm_start_iterations=30, omega=20.0)
    return CycleConfig(registration, mode=mode, reference_frame=reference, preset="fast")


@pytest.mark.slow
def test_sequential_run_that_failed_resumes_to_the_uninterrupted_result(tiny_phantom, tmp_path):
    """Sequential mode with reference frame 2 (order 3, 0, 1): an error in the middle of frame 0 is recorded
    ('failed', finished frames kept, CycleFailed raised); resuming replays the finished step and ends with the
    metrics and transforms of an uninterrupted run."""
    from INRCardiacRegistrationLib.cycle.driver import CycleFailed, register_cycle

    inputs, config = _api_inputs(tiny_phantom, 2), _api_config("sequential", 2)
    whole = register_cycle(inputs, config, tmp_path / "whole")
    assert whole.status == "finished"
    assert [whole.records[t].pair for t in (3, 0, 1)] == ["2->3", "3->0", "0->1"]

    def crash(event: dict) -> None:
        if event["event"] == "iteration" and event["frame"] == 0:
            raise RuntimeError("simulated crash")

    with pytest.raises(CycleFailed, match="simulated crash"):
        register_cycle(inputs, config, tmp_path / "broken", progress=crash)
    broken = RunFolder(tmp_path / "broken")
    assert broken.read_run_info()["status"] == "failed" and broken.read_events()[-1]["event"] == "failed"
    assert sorted(broken.finished_records(4)) == [2, 3]
    resumed = register_cycle(inputs, config, tmp_path / "broken", resume=True)
    assert resumed.status == "finished"
    assert metric_rows_without_time(broken) == metric_rows_without_time(whole.run)
    for t in range(4):
        ours, _ = read_displacement_field(broken.transform_path(t))
        theirs, _ = read_displacement_field(whole.run.transform_path(t))
        assert np.array_equal(ours, theirs), f"frame {t} transform differs"


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "frame", "stop_at"), [("non-sequential", 3, 40), ("sequential", 0, 10)])
def test_a_frame_stopped_part_way_goes_on_from_its_saved_state(tiny_phantom, tmp_path, mode, frame, stop_at):
    """Acceptance 2 (issue 18): a cancel in the middle of a pair saves its training state; the resumed run goes on
    from that iteration (no iteration before it is trained again) and ends with the uninterrupted run's metrics and
    transforms. Reference 2: the first pair (3, from scratch, 60 iterations) and a warm-started one (sequential
    step 3 -> 0, 30 iterations)."""
    import threading

    from INRCardiacRegistrationLib.cycle.driver import register_cycle

    inputs, config = _api_inputs(tiny_phantom, 2), _api_config(mode, 2)
    whole = register_cycle(inputs, config, tmp_path / "whole")
    cancel = threading.Event()

    def stop(event: dict) -> None:
        if event["event"] == "iteration" and event["frame"] == frame and event["iteration"] >= stop_at:
            cancel.set()

    stopped = register_cycle(inputs, config, tmp_path / "stopped", progress=stop, cancel=cancel)
    assert stopped.status == "cancelled"
    run = stopped.run
    # (a pair that trained longer than 30 s on a busy machine may also have saved its state on the way)
    saved = [e["iteration"] for e in run.read_events() if e["event"] == "state_saved" and e["frame"] == frame]
    assert saved[-1] == stop_at
    assert [p.name for p in (run.root / "checkpoints").glob("*.partial.pt")] == [f"frame_{frame:03d}.partial.pt"]
    assert frame not in run.finished_records(4)
    events = []
    resumed = register_cycle(inputs, config, run.root, resume=True, progress=events.append)
    assert resumed.status == "finished"
    assert [(e["frame"], e["iteration"]) for e in events if e["event"] == "frame_resumed"] == [(frame, stop_at)]
    trained = [e["iteration"] for e in events if e["event"] == "iteration" and e["frame"] == frame]
    assert trained and min(trained) > stop_at  # nothing before the stop is trained again
    assert metric_rows_without_time(run) == metric_rows_without_time(whole.run)
    for t in range(4):
        ours, _ = read_displacement_field(run.transform_path(t))
        theirs, _ = read_displacement_field(whole.run.transform_path(t))
        assert np.array_equal(ours, theirs), f"frame {t} transform differs"
    assert not list((run.root / "checkpoints").glob("*.partial.pt"))  # finished frames keep no training state


@pytest.mark.slow
def test_sigint_mid_frame_then_resume_trains_only_what_was_left(finished_run, tiny_phantom, tmp_path):
    """Acceptance 2 (issue 18) from the command line: SIGINT while frame 2 trains (exit 130) saves its state;
    ``--resume`` goes on from it and ends with every metric (but time) of the uninterrupted run."""
    out = tmp_path / "interrupted"
    run = stopped_while_frame_2_trains(tiny_phantom, out, signal.SIGINT)
    saved = [e["iteration"] for e in run.read_events() if e["event"] == "state_saved" and e["frame"] == 2]
    assert saved and [p.name for p in (out / "checkpoints").glob("*.partial.pt")] == ["frame_002.partial.pt"]
    first = len(run.read_events())
    resumed = worker(["register", "--out", str(out), "--resume", "--quiet", "--no-report"])
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    after = run.read_events()[first:]
    assert [(e["frame"], e["iteration"]) for e in after if e["event"] == "frame_resumed"] == [(2, saved[-1])]
    assert min(e["iteration"] for e in after if e["event"] == "iteration" and e["frame"] == 2) > saved[-1]
    assert metric_rows_without_time(run) == metric_rows_without_time(finished_run)


@pytest.mark.slow
def test_evaluation_labels_score_the_run_and_change_nothing_else(tiny_phantom, tmp_path):
    """Issue 17: only the reference frame's label registers (image tracking); the other frames' labels given as
    evaluation labels are scored in metrics.csv (Dice and HD95 against them, as a reader of the label files finds)
    and change nothing the run computes: every transform is bit for bit the run's without them."""
    from INRCardiacRegistrationLib.cycle.driver import register_cycle
    from INRCardiacRegistrationLib.cycle.inputs import build_cycle_inputs
    from INRCardiacRegistrationLib.engine.threads import torch_threads

    phantom, config = tiny_phantom, _api_config("non-sequential", 0)
    common = {"myocardium_label": 1, "heart_labels": [1, 2, 3]}
    plain = build_cycle_inputs(phantom.images, {0: phantom.labels[0]}, 0, **common)
    scored = build_cycle_inputs(phantom.images, {0: phantom.labels[0]}, 0, **common,
                                evaluation_labels=dict(enumerate(phantom.labels)))
    with torch_threads(1):
        without = register_cycle(plain, config, tmp_path / "without")
        with_scores = register_cycle(scored, config, tmp_path / "with")
    for t in (1, 2, 3):
        assert np.isnan(without.records[t].dice)
        propagated = sitk.GetArrayFromImage(sitk.ReadImage(str(with_scores.run.label_path(t)))) > 0
        assert with_scores.records[t].dice == pytest.approx(dice(propagated, phantom.labels[t].array == 1), abs=1e-12)
        assert with_scores.records[t].dice > 0.8 and np.isfinite(with_scores.records[t].hd95_subvoxel_mm)
        ours, _ = read_displacement_field(with_scores.run.transform_path(t))
        theirs, _ = read_displacement_field(without.run.transform_path(t))
        assert np.array_equal(ours, theirs), f"frame {t}: the evaluation labels changed the registration"
        assert with_scores.records[t].alpha_used == 0.0  # no SDF term: the frame has no registration label


def test_evaluation_labels_on_the_command_line(tiny_phantom, tmp_path):
    """``--evaluation-labels FRAME=PATH`` round-trips the request and run.json's inputs; a map without the
    myocardium value is one clear line naming it (exit 2, nothing written)."""
    from INRCardiacRegistrationLib.cycle.request import RunRequest

    label_file = tmp_path / "frame2.nii.gz"
    tiny_phantom.labels[2].write(label_file)
    request = RunRequest.from_argv([*register_argv(tiny_phantom, tmp_path / "x")[1:-2], "--evaluation-labels",
                                    f"2={label_file}"])
    assert request.inputs.evaluation_labels == (f"2={label_file.resolve()}",)
    assert RunRequest.from_dict(request.to_dict()) == request and RunRequest.from_argv(request.to_argv()) == request
    assert RunRequest.from_dict({"inputs": {"image": "a.nii.gz"}}).inputs.evaluation_labels == ()  # older run.json
    empty = tmp_path / "empty.nii.gz"
    tiny_phantom.labels[2].with_array(np.zeros_like(tiny_phantom.labels[2].array)).write(empty)
    line = _one_line_error(register_argv(tiny_phantom, tmp_path / "bad", "--evaluation-labels", f"1={empty}"),
                           tmp_path / "bad")
    assert "evaluation labels frame 1 does not contain label value 1" in line


@pytest.mark.slow
def test_resume_without_image_keeps_the_run_settings(finished_run):
    """--resume with only --out reuses run.json; options that contradict it are refused (exit 2)."""
    out = str(finished_run.root)
    assert main(["register", "--out", out, "--resume", "--quiet", "--alpha", "0.5"]) == 2
    assert main(["register", "--out", out, "--resume", "--quiet", "--mode", "sequential"]) == 2
    assert main(["register", "--out", out, "--resume", "--quiet", "--labels", "x.nii.gz"]) == 2
    assert main(["register", "--out", out, "--resume", "--quiet", "--no-report", "--device", "cpu"]) == 0
    assert finished_run.read_run_info()["status"] == "finished"


@pytest.mark.slow
def test_a_run_from_before_a_new_config_field_still_resumes(finished_run, tmp_path):
    """run.json written before ``local_ncc_mm`` existed: the run used the field's default, so resume accepts it."""
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(finished_run.root, old)
    info = json.loads((old / "run.json").read_text())
    for name in ("local_ncc_mm", "local_ncc_points"):
        del info["config"][name]
    (old / "run.json").write_text(json.dumps(info))
    assert main(["register", "--out", str(old), "--resume", "--quiet", "--no-report", "--device", "cpu"]) == 0


@pytest.mark.slow
def test_a_run_folder_of_the_version_before_the_run_request_resumes(paper_penalty_run, tiny_phantom, tmp_path):
    """A run folder written before the run request existed (its run.json as version 0.1.0 wrote it, captured in
    Testing/data; paths and the phantom's grids filled in) resumes after a cancel and ends with the metrics of an
    uninterrupted run (every column but the time). That version knew no LV blood-pool label, so its frames are
    those of the paper's penalty everywhere."""
    import json
    import shutil

    finished_run = paper_penalty_run
    old = tmp_path / "old"
    shutil.copytree(finished_run.root, old)
    new_info = json.loads((old / "run.json").read_text())
    template = (Path(__file__).resolve().parents[1] / "data" / "run_json_0.1.0_before_run_request.json").read_text()
    info = json.loads(template.replace("{phantom}", str(tiny_phantom.manifest_path.parent)))
    for key in ("frames", "order", "geometry", "field_geometry"):
        info[key] = new_info[key]
    (old / "run.json").write_text(json.dumps(info))
    for frame in (2, 3):  # cancelled after frame 1: the later frames have no record
        RunFolder(old).record_path(frame).unlink()
    assert main(["register", "--out", str(old), "--resume", "--quiet", "--no-report"]) == 0
    assert metric_rows_without_time(RunFolder(old)) == metric_rows_without_time(finished_run)
    assert RunFolder(old).read_run_info()["resumed"] == 1


def test_a_stop_asked_before_the_run_starts_writes_nothing(tiny_phantom, tmp_path):
    """What a batch task passes to its worker: a cohort cancel file that exists, or a parent that is already gone,
    stop the worker before it writes anything (exit 130); the file is never removed by the worker."""
    stop = tmp_path / "cancel"
    stop.write_text("cancel\n")
    out = tmp_path / "run"
    assert main(register_argv(tiny_phantom, out, "--quiet", "--cancel-file", str(stop))) == 130
    assert stop.exists() and not out.exists()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert main(register_argv(tiny_phantom, out, "--quiet", "--exit-with-parent", str(gone.pid))) == 130
    assert not out.exists()


@pytest.mark.slow
def test_writing_frames_while_the_next_trains_gives_the_serial_files(tiny_phantom, tmp_path):
    """Speed option 'overlap' (non-sequential: frames' files written on a writer thread while the next frames train,
    here two chains at once) is exact: with the same torch thread count for training (1; overlap gives the writer 1
    more) every transform, label, landmark file and metric but time equals the run that writes each frame inline,
    and each chain's frames are recorded in its order. A cancel while frames train keeps the frames handed to the
    writer (test_sigterm_cancels_cleanly)."""
    from INRCardiacRegistrationLib.cycle.driver import register_cycle
    from INRCardiacRegistrationLib.engine.threads import torch_threads

    inputs, config = _api_inputs(tiny_phantom, 1), _api_config("non-sequential", 1).with_changes(chains=2)
    events = []
    with torch_threads(1):
        serial = register_cycle(inputs, config, tmp_path / "serial", overlap=False)
        overlapped = register_cycle(inputs, config, tmp_path / "overlapped", progress=events.append)
    assert serial.status == overlapped.status == "finished"
    assert metric_rows_without_time(overlapped.run) == metric_rows_without_time(serial.run)
    for t in range(4):
        ours, _ = read_displacement_field(overlapped.run.transform_path(t))
        theirs, _ = read_displacement_field(serial.run.transform_path(t))
        assert np.array_equal(ours, theirs), f"frame {t} transform differs"
        assert (overlapped.run.label_path(t).read_bytes() == serial.run.label_path(t).read_bytes())
        assert (read_markups_json(overlapped.run.landmarks_path(t)).points_lps
                == read_markups_json(serial.run.landmarks_path(t)).points_lps).all()
    finished = [e["frame"] for e in events if e["event"] == "frame_finished"]
    assert sorted(finished) == [0, 2, 3] and finished.index(2) < finished.index(3)  # chains [2, 3] and [0]
    info, serial_info = overlapped.run.read_run_info(), serial.run.read_run_info()
    assert info["chain_order"] == [[2, 3], [0]]
    assert (info["torch_threads"], info["warm_start_threads"], info["writer_threads"]) == (1, 1, 1)
    assert "writer_threads" not in serial_info and serial_info["torch_threads"] == 1


@pytest.mark.slow
def test_two_chains_batched_in_lockstep_equal_two_chains_on_two_threads(tiny_phantom, tmp_path):
    """The GPU path of two chains (each round's pairs trained as one batched network, engine/pair_batch.py), forced
    on the CPU: every frame's transform equals that of the chains trained on their own threads within float rounding
    (0.01 mm; a batched matrix product sums in another order), and run.json says it was batched."""
    from INRCardiacRegistrationLib.cycle.driver import register_cycle
    from INRCardiacRegistrationLib.engine.threads import torch_threads

    inputs, config = _api_inputs(tiny_phantom, 0), _api_config("non-sequential", 0).with_changes(chains=2)
    with torch_threads(1):
        batched = register_cycle(inputs, config, tmp_path / "batched", batch_chains=True)
        threaded = register_cycle(inputs, config, tmp_path / "threaded", batch_chains=False)
    assert batched.status == threaded.status == "finished"
    assert batched.run.read_run_info()["batched_chains"] and not threaded.run.read_run_info()["batched_chains"]
    for t in range(4):
        ours, _ = read_displacement_field(batched.run.transform_path(t))
        theirs, _ = read_displacement_field(threaded.run.transform_path(t))
        assert np.abs(ours - theirs).max() < 0.01, f"frame {t}"
        assert batched.records[t].iterations == threaded.records[t].iterations
    assert np.abs(ours).max() > 1.0  # the frames moved: the comparison is not between two identities


def test_two_chains_split_the_cycle_and_stay_close_to_one_chain(tiny_phantom, tmp_path):
    """Speed option 'chains 2': after the first pair, frames after the reference and those before it
    are registered by two chains at once, the second warm-started from the first pair. On the tiny phantom (reference
    0, frames 1-3: chains [1, 2] and [3]) it changes only the warm start of frame 3: no worse than one chain's by
    more than 0.02 Dice or 0.25 mm landmark TRE against the phantom's labels and trajectories (measured: better,
    0.951 / 0.42 mm against 0.931 / 1.23 mm: frame 3 starts from frame 1, its neighbour, instead of the end-systolic
    frame 2), and the run records its chains. (On the 20-frame demo two chains were slightly less accurate: landmark
    TRE 0.51 against 0.48 mm; docs/benchmarks.md.)"""
    from INRCardiacRegistrationLib.cycle.driver import chains_of, register_cycle

    assert chains_of([1, 2, 3, 4, 5, 6, 7], 2, "non-sequential") == [[1, 2, 3, 4], [7, 6, 5]]
    assert chains_of([1, 2, 3, 4, 5, 6, 7], 2, "sequential") == [[1, 2, 3, 4, 5, 6, 7]]
    assert chains_of([1, 2], 2, "non-sequential") == [[1, 2]]
    from INRCardiacRegistrationLib.engine.threads import torch_threads

    inputs = _api_inputs(tiny_phantom, 0)
    with torch_threads(1):  # the same thread counts in both (with more cores they differ: one chain, one writer)
        two = register_cycle(inputs, _api_config("non-sequential", 0).with_changes(chains=2), tmp_path / "two")
        one = register_cycle(inputs, _api_config("non-sequential", 0), tmp_path / "one")
    assert two.run.read_run_info()["chain_order"] == [[1, 2], [3]]
    assert one.run.read_run_info()["chain_order"] == [[1, 2, 3]]
    for t in (1, 2):  # the same pairs, the same warm starts: the same results
        assert two.records[t].dice == one.records[t].dice and two.records[t].tre_mm == one.records[t].tre_mm
    assert two.records[3].dice > one.records[3].dice - 0.02
    assert two.records[3].tre_mm < one.records[3].tre_mm + 0.25
    assert two.records[3].dice > 0.85
