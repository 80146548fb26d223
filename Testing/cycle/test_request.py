"""The run request: validation, ``run.json`` and command-line round trips, resume differences, option layering, and
that no other place than the request (and the command line itself) spells the worker's options."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pytest
from helpers import LIB, REPO
from INRCardiacRegistrationLib.cli.main import build_parser
from INRCardiacRegistrationLib.core.vocabulary import InputError
from INRCardiacRegistrationLib.cycle.request import (
    CycleConfig,
    InputFiles,
    RunRequest,
    WorkerOptions,
    add_request_arguments,
    add_worker_arguments,
    request_from_arguments,
    worker_command,
)
from INRCardiacRegistrationLib.engine.config import (
    PRESET_DESCRIPTIONS,
    PRESETS,
    field_names,
    overrides_of,
    preset,
    preset_label,
)


def _request(tmp_path: Path) -> RunRequest:
    files = InputFiles(image=tmp_path / "ct.nii.gz", labels=(f"0={tmp_path / 'ed.nii.gz'}", str(tmp_path / "labs")),
                       myocardium_label=2, heart_label=(1, 2, 3), landmarks=tmp_path / "l.mrk.json",
                       landmarks_annotated=tmp_path / "a.csv")
    settings = CycleConfig.from_preset("fast", mode="sequential", reference_frame=3, field_region="full",
                                       field_margin_mm=12.5, alpha=0.35, learning_rate=3e-5, quantiles=(0.02, 0.98),
                                       device="cpu", omega=20.0, iterations=123)
    return RunRequest(files, settings)


def test_request_round_trips_run_json_and_the_command_line(tmp_path):
    request = _request(tmp_path)
    assert RunRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request
    assert RunRequest.from_argv(request.to_argv()) == request
    assert request.settings.overrides == {"iterations": 123, "omega": 20.0, "learning_rate": 3e-5, "alpha": 0.35,
                                          "device": "cpu", "quantiles": (0.02, 0.98)}
    argv = request.to_argv()
    assert argv[0] == str(tmp_path / "ct.nii.gz") and argv[argv.index("--preset") + 1] == "fast"


def test_the_worker_command_parses_back_to_the_same_request_with_the_command_lines_own_parser(tmp_path):
    """The request writes the argv; ``inr-cardiac register``'s parser (another module) must read it back exactly."""
    request = _request(tmp_path)
    options = WorkerOptions(resume=True, lock_wait_s=30.0, exit_with_parent=4242, cancel_files=("/tmp/stop",))
    argv = worker_command("/opt/Slicer/bin/PythonSlicer", tmp_path / "run", request, options)
    assert argv[:4] == ["/opt/Slicer/bin/PythonSlicer", "-m", "INRCardiacRegistrationLib.cli", "register"]
    args = build_parser().parse_args(argv[3:])
    assert request_from_arguments(args) == request
    assert WorkerOptions.from_arguments(args) == options and args.out == tmp_path / "run"
    resume_only = worker_command("python", "runs/a", None, WorkerOptions(resume=True))
    assert resume_only[4:] == ["--out", "runs/a", "--resume", "--quiet"]
    with pytest.raises(ValueError):
        worker_command("python", "runs/a")  # neither a request nor a resume


def test_paths_become_absolute_and_labels_keep_their_frame(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = InputFiles(image="ct.nii.gz", labels=("4=es.nii.gz", "labels"), heart_label=("1", 2))
    assert files.image == str(tmp_path / "ct.nii.gz")
    assert files.labels == (f"4={tmp_path / 'es.nii.gz'}", str(tmp_path / "labels"))
    assert files.heart_label == (1, 2)
    for bad in ({"labels": ("-1=x.nii.gz",)}, {"labels": ("3=",)}, {"myocardium_label": 0},
                {"heart_label": (1, "two")}):
        with pytest.raises(InputError):
            InputFiles(**bad)


def test_a_run_json_of_an_earlier_version_gives_its_request(tmp_path):
    """run.json written before this change (no 'field_region' in cycle, no local-NCC fields in config) still reads."""
    stored = {"format": "inr-cardiac-run/1", "status": "cancelled",
              "config": {key: value for key, value in preset("fast").to_dict().items()
                         if key not in ("local_ncc_mm", "local_ncc_points")},
              "cycle": {"mode": "non-sequential", "reference_frame": 0, "preset": "fast"},
              "inputs": {"image": "/data/ct.nii.gz", "labels": ["/data/l.nii.gz"], "myocardium_label": 1,
                         "heart_label": [1, 2, 3], "landmarks": None, "landmarks_annotated": None}}
    request = RunRequest.from_dict(stored)
    assert request.registration == preset("fast") and request.settings.field_region == "heart"
    assert request.inputs.heart_label == (1, 2, 3) and request.inputs.labels == ("/data/l.nii.gz",)


def test_differences_name_what_changed_and_ignore_the_device(tmp_path):
    request = _request(tmp_path)
    assert request.differences(request.with_changes(device="cuda", progress_every=5)) == []
    changed = request.differences(request.with_changes(alpha=0.5, mode="non-sequential", myocardium_label=1))
    assert changed == ["myocardium_label: 2 in the run, 1 now", "mode: 'sequential' in the run, 'non-sequential' now",
                       "alpha: 0.35 in the run, 0.5 now"]
    # the preset is a name: the same settings reached from another preset are no difference
    same = RunRequest(request.inputs, CycleConfig(request.registration, mode="sequential", reference_frame=3,
                                                  field_region="full", field_margin_mm=12.5, preset="paper"))
    assert request.differences(same) == []


def test_a_new_preset_keeps_the_overrides_made_so_far():
    settings = CycleConfig.from_preset("paper", alpha=0.1)
    fast = settings.with_changes(preset="fast")
    assert fast.registration == preset("fast", alpha=0.1) and fast.preset == "fast"
    assert fast.with_changes(preset="fast", points=500).registration == preset("fast", alpha=0.1, points=500)


def test_options_layer_on_a_request_later_ones_win_and_reserved_ones_are_refused(tmp_path):
    base = RunRequest(InputFiles(image=tmp_path / "ct.nii.gz"))
    request = base.with_options(["--preset", "fast", "--alpha", "1", "--heart-label", "1", "2", "--alpha", "0.5"])
    assert request.registration == preset("fast", alpha=0.5) and request.inputs.heart_label == (1, 2)
    assert request.inputs.image == base.inputs.image
    with pytest.raises(InputError, match="row 3: --labels is set by the labels column"):
        base.with_options(["--labels", "x.nii.gz"], "row 3", {"labels": "the labels column"})
    for worker_only in (["--resume"], ["--out", "elsewhere"], ["--lock-wait", "3"], ["--cancel-file", "x"],
                        ["--lock-wait", "0"], ["--exit-with-parent"], ["--exit-with-parent", "0"], ["--quiet"]):
        with pytest.raises(InputError, match=f"{worker_only[0]} is set by whoever starts the worker"):
            base.with_options(worker_only)
    with pytest.raises(InputError, match="unrecognized arguments: --speed"):
        base.with_options(["--speed", "3"])
    with pytest.raises(InputError, match="row 3: 'alpha' must be in"):
        base.with_options(["--alpha", "2"], "row 3")


def test_resume_without_image_takes_the_stored_request_and_refuses_contradictions(tmp_path):
    stored = _request(tmp_path)
    parser = argparse.ArgumentParser()
    add_request_arguments(parser)
    add_worker_arguments(parser)

    def resumed(*argv):
        return request_from_arguments(parser.parse_args(["--out", "o", "--resume", *argv]), stored)

    assert resumed("--device", "cpu") == stored
    assert resumed() == stored.with_changes(device="auto")  # the device is where it runs now, as in a new run
    assert resumed("--device", "cuda").registration.device == "cuda"
    assert resumed("--alpha", "0.35", "--mode", "sequential", "--device", "cpu") == stored  # agreeing options
    with pytest.raises(InputError, match="alpha: 0.35 in the run, 0.5 now"):
        resumed("--alpha", "0.5")
    with pytest.raises(InputError, match="drop --labels"):
        resumed("--labels", "x.nii.gz")
    with pytest.raises(InputError, match="IMAGE is required"):
        request_from_arguments(parser.parse_args(["--out", "o"]))


def _option_strings() -> set[str]:
    """Every option of every ``inr-cardiac`` command (the worker's and the batch's, the phantom's ...)."""
    commands = build_parser()._subparsers._group_actions[0].choices
    options = {option for command in commands.values() for action in command._actions
               for option in action.option_strings}
    return options - {"-h", "--help"}


def test_only_the_request_and_the_command_line_spell_the_workers_options():
    """Acceptance: no Lib file outside cli/ and cycle/request.py, and not the Slicer module, writes one of the
    options of ``inr-cardiac`` (``--reference-frame``, ``--myocardium-label``, ``--gpus-per-task`` ...), docstrings
    included: settings travel as typed values, and errors name fields that the command line turns into options."""
    options = _option_strings()
    assert {"--reference-frame", "--myocardium-label", "--labels", "--alpha", "--resume", "--out", "--scheduler",
            "--gpus-per-task", "--frames"} <= options
    pattern = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
    offenders = []
    files = [*LIB.rglob("*.py"), REPO / "INRCardiacRegistration" / "INRCardiacRegistration.py"]
    for path in files:
        relative = path.relative_to(LIB).as_posix() if LIB in path.parents else path.name
        if relative.startswith("cli/") or relative == "cycle/request.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found = set(pattern.findall(line)) & options
            if found:
                offenders.append(f"{relative}:{number}: {sorted(found)}")
    assert offenders == []


def test_the_spelling_check_finds_a_planted_flag(tmp_path):
    """The check above can fail: a line that builds a worker option outside the request is found."""
    planted = 'argv += ["--reference-frame", str(frame)]'
    pattern = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
    assert set(pattern.findall(planted)) & _option_strings() == {"--reference-frame"}


@pytest.mark.skipif(sys.platform == "win32", reason="paths in the expected argv are POSIX")
def test_phantom_request_names_every_input(tiny_phantom):
    request = tiny_phantom.run_request()
    root = tiny_phantom.manifest_path.parent
    assert request.inputs == InputFiles(image=root / "ct_4d.nii.gz", labels=(str(root / "labels_4d.nii.gz"),),
                                        myocardium_label=1, heart_label=(1, 2, 3),
                                        landmarks=root / "landmarks_reference.mrk.json",
                                        landmarks_annotated=root / "landmark_trajectories.csv",
                                        blood_pool_label=2)
    assert request.settings == CycleConfig()


def test_short_and_paper_style_option_names():
    """``--lr``, ``--lambda``, ``--iterations-first``/``--iterations-others`` are the field options' aliases."""
    request = RunRequest.from_argv(["ct.nii.gz", "--preset", "fast", "--lr", "3e-4", "--lambda", "0.1",
                                    "--iterations-first", "500", "--iterations-others", "250", "--quantiles", "0.02",
                                    "0.98"])
    assert request.registration == preset("fast", learning_rate=3e-4, regularization_weight=0.1, iterations=500,
                                          warm_start_iterations=250, quantiles=(0.02, 0.98))
    assert RunRequest.from_argv(request.to_argv()) == request


def test_a_command_line_recorded_with_worker_options_reads_when_asked():
    """Cohorts of the earlier version recorded each patient's options, ``--no-report`` and ``--quiet`` among them."""
    argv = ["/d/ct.nii.gz", "--labels", "/d/l.nii.gz", "--no-report", "--quiet", "--alpha", "1"]
    with pytest.raises(InputError, match="unrecognized arguments: --no-report --quiet"):
        RunRequest.from_argv(argv)
    request = RunRequest.from_argv(argv, ignore_worker_options=True)
    assert request.inputs.labels == ("/d/l.nii.gz",) and request.registration.alpha == 1.0


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_reached_from_the_command_line_and_described(name):
    """``--preset NAME`` gives exactly the preset (no override recorded), and every preset has a menu description."""
    request = RunRequest.from_argv(["ct.nii.gz", "--preset", name])
    assert request.registration == preset(name) and overrides_of(request.registration, name) == {}
    assert PRESET_DESCRIPTIONS[name] and name in preset_label(name)


@pytest.mark.parametrize("name", ["ct", "cine-mri"])
def test_the_modality_presets_keep_the_fast_schedule_and_network(name):
    """ct and cine-mri change what the loss sees (NCC neighbourhoods) and the network's bandwidth, not the cost: the
    same iteration ceilings, stopping rule, points and network size as fast, so a cycle takes the time of a fast
    one."""
    modality, fast = preset(name), preset("fast")
    changed = {field for field in field_names() if getattr(modality, field) != getattr(fast, field)}
    assert changed == {"omega", "local_ncc_mm"} and modality.omega < fast.omega and modality.local_ncc_mm > 0
