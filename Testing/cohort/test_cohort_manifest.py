"""The cohort manifest and summary without running a cohort: parsing into run requests and their checks, the
per-patient means and the phase curves of the report."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from INRCardiacRegistrationLib.cohort.manifest import read_manifest
from INRCardiacRegistrationLib.cohort.summary import (
    PatientMetrics,
    _phase_curves,
    patient_metrics,
    write_cohort_summary,
)
from INRCardiacRegistrationLib.core.vocabulary import InputError
from INRCardiacRegistrationLib.cycle.request import InputFiles
from INRCardiacRegistrationLib.engine.config import preset


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_rows_become_patients_with_absolute_paths_and_their_options(tmp_path):
    (tmp_path / "cohort").mkdir()
    manifest = write(tmp_path / "cohort" / "m.csv",
                     "patient,image,labels,landmarks,landmarks_annotated,options,age,evaluation_labels\n"
                     "P-01,ct/p1.nii.gz,lab/p1.nii.gz,,,\"--alpha 1 --heart-label 1 2\",63,\n"
                     "# a comment row,,,,,,,\n"
                     "\n"
                     "P.02,/data/p2,0=/data/l0.nii.gz; 5=seg/l5.nii.gz,lm/p2.mrk.json,lm/p2.csv,,70,5=es/p2.nii.gz\n")
    first, second = read_manifest(manifest, ["--preset", "fast", "--alpha", "0.5"])
    base = (tmp_path / "cohort").resolve()
    assert first.patient == "P-01" and first.image == str(base / "ct" / "p1.nii.gz")
    assert first.request.inputs == InputFiles(image=base / "ct" / "p1.nii.gz",
                                              labels=(str(base / "lab" / "p1.nii.gz"),), heart_label=(1, 2))
    assert first.options == ("--alpha", "1", "--heart-label", "1", "2")
    assert first.request.registration == preset("fast", alpha=1.0)  # the row's options win over the common ones
    assert second.request.registration == preset("fast", alpha=0.5)
    assert second.image == "/data/p2"
    assert second.request.inputs.labels == ("0=/data/l0.nii.gz", f"5={base / 'seg' / 'l5.nii.gz'}")
    assert second.request.inputs.landmarks == str(base / "lm" / "p2.mrk.json")
    assert second.request.inputs.landmarks_annotated == str(base / "lm" / "p2.csv")
    assert second.request.inputs.evaluation_labels == (f"5={base / 'es' / 'p2.nii.gz'}",)
    assert first.request.inputs.evaluation_labels == ()
    assert second.row == 5


@pytest.mark.parametrize("text, message", [
    ("name,image\na,b\n", "patient and image"),
    ("patient,image,lables\na,b,c\n", "did you mean 'labels'"),
    ("patient,image\na,b\nA,c\n", "already on line 2"),
    ("patient,image\nx/y,b\n", "names the run folder"),
    ("patient,image\na,\n", "has no image"),
    ("patient,image,options\na,b,--alfa 1\n", "unrecognized arguments: --alfa"),
    ("patient,image,options\na,b,--alpha 2\n", "alpha"),
    ("patient,image,options\na,b,--labels x.nii.gz\n", "labels column"),
    ("patient,image,options\na,b,--evaluation-labels 1=x.nii.gz\n", "evaluation_labels column"),
    ("patient,image,options\na,b,--resume\n", "--resume is set by the batch"),
    ("patient,image,options\na,b,--out elsewhere\n", "--out is set by the batch"),
    ("patient,image,options\na,b,--landmarks x.mrk.json\n", "--landmarks is set by the landmarks column"),
    ("patient,image,options\na,b,--cancel-file stop\n", "set by the batch"),
    ("patient,image,options\na,b,extra.nii.gz\n", "unrecognized arguments"),
    ("patient,image,options\na,b,\"--alpha '1\"\n", "cannot split"),
    ("patient,image\n", "no patients"),
])
def test_bad_manifests_stop_before_anything_runs(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        read_manifest(write(tmp_path / "m.csv", text))


def test_a_cohort_recorded_by_the_earlier_version_is_compared_by_request(tmp_path):
    """cohort.json of the earlier version recorded each patient's image and register options (the worker's own
    --no-report among them); the same patient asked again is recognised, a changed one refused, a damaged record
    named."""
    import json

    from INRCardiacRegistrationLib.cohort.batch import COHORT_FORMAT, CohortBatch

    manifest = write(tmp_path / "m.csv", "patient,image,labels,options\np1,/d/ct.nii.gz,/d/l.nii.gz,--alpha 1\n")
    cohort = tmp_path / "cohort"
    (cohort / "runs" / "p1").mkdir(parents=True)
    (cohort / "runs" / "p1" / "run.json").write_text("{}")  # the patient was started
    old = {"format": COHORT_FORMAT, "patients": {"p1": {"image": "/d/ct.nii.gz", "options": [
        "--labels", "/d/l.nii.gz", "--preset", "fast", "--no-report", "--alpha", "1"]}}}
    (cohort / "cohort.json").write_text(json.dumps(old))
    CohortBatch(read_manifest(manifest, ["--preset", "fast"]), cohort)._check_and_record()
    assert "request" in json.loads((cohort / "cohort.json").read_text())["patients"]["p1"]
    (cohort / "cohort.json").write_text(json.dumps(old))
    with pytest.raises(InputError, match="was run with other inputs or options for p1"):
        CohortBatch(read_manifest(manifest, ["--preset", "paper"]), cohort)._check_and_record()
    (cohort / "cohort.json").write_text('{"format": ')
    with pytest.raises(InputError, match="cohort.json is not a valid JSON file"):
        CohortBatch(read_manifest(manifest), cohort)._check_and_record()


def test_a_manifest_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("patient,image\nMüller,/d/ct.nii.gz\n".encode("latin-1"))
    with pytest.raises(InputError, match="m.csv is not UTF-8 text"):
        read_manifest(path)


def test_common_options_are_checked_too(tmp_path):
    with pytest.raises(ValueError, match="invalid choice"):
        read_manifest(write(tmp_path / "m.csv", "patient,image\na,b\n"), ["--mode", "sideways"])


def test_a_missing_manifest_is_named(tmp_path):
    with pytest.raises(ValueError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv")


@pytest.mark.slow  # the tiny_run fixture registers a phantom (about 25 s on 2 CPU cores)
def test_summary_means_leave_the_reference_frame_out(tiny_run, tmp_path):
    """Per-patient means from a real run folder equal the means of its metrics.csv without the reference row; a
    patient never run, or with a damaged run.json, is listed with its status."""
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "run.json").write_text("{not json")
    patients = [patient_metrics("a", tiny_run.root), patient_metrics("b", tmp_path / "missing", "failed", "why"),
                patient_metrics("c", damaged)]
    means = write_cohort_summary(tmp_path, patients)
    with open(tmp_path / "cohort_summary.csv", newline="") as stream:
        rows = {row["patient"]: row for row in csv.DictReader(stream)}
    own = [r for r in tiny_run.read_metrics() if r["frame"] != 0]
    assert float(rows["a"]["dice_mean"]) == pytest.approx(np.mean([r["dice"] for r in own]), rel=1e-5)
    assert float(rows["a"]["hd95_mm_mean"]) == pytest.approx(np.mean([r["hd95_mm"] for r in own]), rel=1e-5)
    assert rows["a"]["status"] == "finished" and rows["a"]["frames_finished"] == "4"
    assert (rows["b"]["status"], rows["b"]["reason"], rows["b"]["dice_mean"]) == ("failed", "why", "")
    assert rows["c"]["status"] == "unreadable" and "not valid JSON" in rows["c"]["reason"]
    assert means["dice_mean"][2] == 1  # over the one patient with values
    with open(tmp_path / "cohort_metrics.csv", newline="") as stream:
        metric_rows = list(csv.DictReader(stream))
    assert [r["phase_pct"] for r in metric_rows] == ["0", "25", "50", "75"]
    assert [r["is_reference"] for r in metric_rows] == ["1", "0", "0", "0"]
    assert (tmp_path / "cohort_report.png").stat().st_size > 10_000


def _patient(name, frames, values):
    rows = [{"frame": t, "dice": v} for t, v in enumerate(values)]
    return PatientMetrics(name, "finished", frames, 0, rows)


def test_phase_curves_share_frames_or_interpolate_in_phase():
    """Same frame count: the frames themselves (reference left out); different counts: linear in phase %."""
    axis, curves = _phase_curves([_patient("a", 4, [1, 0.9, 0.8, 0.9]), _patient("b", 4, [1, 0.7, 0.6, 0.7])], "dice")
    assert axis.tolist() == [0, 25, 50, 75]
    assert math.isnan(curves[0][0]) and curves[0][1:].tolist() == [0.9, 0.8, 0.9]
    axis, curves = _phase_curves([_patient("a", 4, [1, 0.9, 0.8, 0.9]),
                                  _patient("b", 2, [1, 0.5])], "dice")
    assert axis.tolist() == [0, 25, 50, 75]
    assert curves[1][2] == 0.5 and np.isnan(curves[1][[0, 1, 3]]).all()  # b only has its 50 % frame


def test_local_workers_get_their_share_of_the_visible_gpus():
    """Worker i of the local cluster gets GPUs i*G .. i*G+G-1 of what the batch itself may use."""
    from INRCardiacRegistrationLib.cohort.batch import PatientFailed, gpu_slot

    assert gpu_slot(None, 1, 1) == "1"
    assert gpu_slot(None, 1, 2) == "2,3"
    assert gpu_slot("4,6", 1, 1) == "6"  # the batch was given GPUs 4 and 6: never 0 or 1
    assert gpu_slot("GPU-aa,GPU-bb,GPU-cc,GPU-dd", 1, 2) == "GPU-cc,GPU-dd"
    with pytest.raises(PatientFailed):
        gpu_slot("3", 1, 1)


def test_a_patient_cancelled_by_anything_but_the_batch_counts_as_not_finished():
    from INRCardiacRegistrationLib.cohort.batch import BatchResult, PatientOutcome

    result = BatchResult({"a": PatientOutcome("a", "finished"), "b": PatientOutcome("b", "cancelled"),
                          "c": PatientOutcome("c", "failed", "why")})
    assert result.failed == ["b", "c"]
