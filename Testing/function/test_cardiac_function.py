"""Cardiac function of a run folder (LV volumes, EDV/ESV/SV/EF, ES frame, strain): the definitions on known numbers,
and on a real run of the tiny phantom the carried LV cavity against an independent path (SimpleITK inverts the
written field, resamples the reference cavity and carries the annulus points; numpy fits the plane),
``function.json``/``function.csv``/``strain_segments.csv`` written by ``register``, the ``function`` command and its
one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import register_argv
from INRCardiacRegistrationLib.cli.main import main
from INRCardiacRegistrationLib.core.masks import volume_ml
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder
from INRCardiacRegistrationLib.function.basal_plane import find_basal_annulus
from INRCardiacRegistrationLib.function.cardiac_function import CardiacFunction
from INRCardiacRegistrationLib.function.lv_frame import estimate_lv_frame
from INRCardiacRegistrationLib.function.volumes import capped_cavity


def test_the_definitions_on_known_volumes():
    function = CardiacFunction(frames=(0, 1, 2, 3, 4, 5), frame_count=6, reference_frame=0,
                               lv_volume_ml=(120.0, 100.0, 60.0, 50.0, 90.0, 118.0),
                               myocardium_volume_ml=(130.0,) * 6, es_frame_given=4)
    assert (function.edv_ml, function.esv_ml, function.sv_ml) == (120.0, 50.0, 70.0)
    assert function.ef_pct == pytest.approx(100 * 70 / 120)
    assert (function.ed_frame, function.es_frame, function.es_frame_difference()) == (0, 3, -1)
    wrapped = CardiacFunction((0, 1, 2, 3), 4, 0, (50.0, 80.0, 90.0, 100.0), (1.0,) * 4, es_frame_given=3)
    assert wrapped.es_frame == 0 and wrapped.es_frame_difference() == 1  # 3 -> 0 is one step around the cycle
    assert function.rows()[3] == {"frame": 3, "phase_pct": 50.0, "lv_volume_ml": 50.0, "myocardium_volume_ml": 130.0}
    assert volume_ml(np.ones((10, 10, 10)), (1.0, 1.0, 2.0)) == 2.0


def _independent_lv_volume(run: RunFolder, reference_cavity: np.ndarray, reference: sitk.Image, frame: int,
                           annulus: np.ndarray, open_direction: np.ndarray) -> float:
    """The reference cavity carried to ``frame`` by SimpleITK: the written field inverted with
    InvertDisplacementField, the cavity resampled linearly through it and thresholded at 0.5, then cut at the plane
    (SVD here) through the annulus points carried by the field's TransformPoint."""
    field = sitk.ReadTransform(str(run.transform_path(frame)))
    field = sitk.DisplacementFieldTransform(field).GetDisplacementField()
    inverse = sitk.InvertDisplacementField(field, maximumNumberOfIterations=100, maxErrorToleranceThreshold=1e-3,
                                           meanErrorToleranceThreshold=1e-4, enforceBoundaryCondition=True)
    cavity = sitk.GetImageFromArray(reference_cavity.astype(np.float32))
    cavity.CopyInformation(reference)
    carried = sitk.Resample(cavity, reference, sitk.DisplacementFieldTransform(inverse), sitk.sitkLinear, 0.0)
    forward = sitk.DisplacementFieldTransform(sitk.Image(field))
    moved = np.array([forward.TransformPoint(tuple(map(float, p))) for p in annulus])
    centre = moved.mean(axis=0)
    normal = np.linalg.svd(moved - centre)[2][2]
    normal = normal if normal @ open_direction > 0 else -normal
    kji = np.indices(sitk.GetArrayFromImage(carried).shape).reshape(3, -1)
    direction = np.reshape(reference.GetDirection(), (3, 3))
    points = np.asarray(reference.GetOrigin()) + (direction @ (np.asarray(reference.GetSpacing())[:, None]
                                                               * kji[::-1])).T
    below = ((points - centre) @ normal <= 0).reshape(carried.GetSize()[::-1])
    return volume_ml((sitk.GetArrayFromImage(carried) >= 0.5) & below, reference.GetSpacing())


@pytest.mark.slow
def test_register_writes_the_function_and_the_volumes_agree_with_simpleitk(tiny_run, tiny_phantom):
    """The phantom's request names its LV blood pool, so ``register`` writes function.json/csv and
    strain_segments.csv. The reference volume is the label's below the annulus plane; the carried volumes agree with
    SimpleITK's own inversion, resampling and point transform (2 %)."""
    summary = json.loads(tiny_run.function_json.read_text())
    rows = tiny_run.function_csv.read_text().splitlines()
    assert rows[0] == "frame,phase_pct,lv_volume_ml,myocardium_volume_ml,gls_pct,gcs_pct,grs_pct,twist_deg"
    assert len(rows) == 5
    volumes = [float(line.split(",")[2]) for line in rows[1:]]
    labels = tiny_phantom.labels[0]
    values = np.asarray(labels.array)
    cavity = values == 2
    annulus = find_basal_annulus(cavity, values == 1, labels.geometry)
    reference_volume = volume_ml(capped_cavity(cavity, labels.geometry, annulus), labels.geometry.spacing)
    assert volumes[0] == pytest.approx(reference_volume, rel=1e-5)  # 6 digits in the CSV
    assert reference_volume > 0.95 * volume_ml(cavity, labels.geometry.spacing)
    reference = sitk.ReadImage(str(tiny_run.label_path(0)))
    ours_vs_sitk = []
    for t in (1, 2, 3):
        theirs = _independent_lv_volume(tiny_run, cavity, reference, t, annulus.points_mm, annulus.open_direction)
        ours_vs_sitk.append(abs(volumes[t] - theirs) / theirs)
    print(f"LV volume per frame {volumes} mL; relative difference to SimpleITK's inversion "
          f"{', '.join(f'{d:.2%}' for d in ours_vs_sitk)}; EF {summary['ef_pct']:.1f} %")
    assert max(ours_vs_sitk) <= 0.02
    assert summary["edv_ml"] == pytest.approx(max(volumes), rel=1e-5)
    assert summary["esv_ml"] == pytest.approx(min(volumes), rel=1e-5)
    assert summary["ef_pct"] == pytest.approx(100 * (max(volumes) - min(volumes)) / max(volumes), rel=1e-4)
    assert "LV function: EDV" in tiny_run.summary_txt.read_text()
    assert "Peak strain: GLS" in tiny_run.summary_txt.read_text()
    segments = tiny_run.strain_segments_csv.read_text().splitlines()
    assert segments[0] == "frame,segment,radial_pct,circumferential_pct,longitudinal_pct"
    assert len(segments) == 1 + 4 * 17
    assert summary["peak_gls_pct"] < 0 and summary["details"]["deformation_gradient_from"] == ["network (exact)"]


@pytest.mark.slow
def test_the_function_command_and_its_errors(tiny_run, tiny_phantom, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run.root, copy)
    (copy / "function.json").unlink()
    assert main(["function", str(copy), "--es-frame", "2"]) == 0
    out = capsys.readouterr().out
    assert "EF" in out and "given 2" in out and json.loads((copy / "function.json").read_text())["es_frame_given"] == 2
    errors = {
        ("--blood-pool-label", "7"):
            "LV blood pool label value(s) 7 do not occur in the reference frame 0 (values present: 1, 2, 3)",
        ("--es-frame", "9"): "ES frame 9 is outside the run's frames 0..3",
        ("--rv-label", "9"): "RV cavity label value(s) 9 do not occur in the reference frame 0",
    }
    for options, message in errors.items():
        assert main(["function", str(copy), *options]) == 2
        assert message in capsys.readouterr().err
    empty = tmp_path / "empty"
    shutil.copytree(tiny_run.root, empty)
    for record in (empty / "frames").glob("frame_*.json"):
        record.unlink()
    assert main(["function", str(empty)]) == 2
    assert "has no finished frame" in capsys.readouterr().err
    no_label = tmp_path / "no_label"
    out = no_label / "run"
    assert main([*register_argv(tiny_phantom, out, "--quiet", "--no-report", "--iterations", "5",
                                "--iterations-others", "5")]) == 0
    info = json.loads((out / "run.json").read_text())
    info["inputs"]["blood_pool_label"] = None
    (out / "run.json").write_text(json.dumps(info))
    assert main(["function", str(out)]) == 2
    assert "no LV blood-pool label" in capsys.readouterr().err


@pytest.mark.slow
def test_the_segments_carried_into_each_frame_agree_with_simpleitk(tiny_run, tiny_phantom):
    """segments/frame_NNN.nii.gz: frame 0 holds the AHA segment of every reference myocardium voxel; frame t the
    same label map carried through the written field, against SimpleITK's inversion and nearest-neighbour resampling
    (the same segment at >= 95 % of the voxels either marks)."""
    labels = tiny_phantom.labels[0]
    values = np.asarray(labels.array)
    frame = estimate_lv_frame(values == 1, labels.geometry, values == 2)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny_run.segments_path(0))))
    wall = values == 1
    assert np.array_equal(reference > 0, wall)
    centres = labels.geometry.index_to_physical(np.argwhere(wall)[:, ::-1])
    assert np.array_equal(reference[wall], frame.segments(centres))
    image = sitk.ReadImage(str(tiny_run.segments_path(0)))
    for t in (1, 2, 3):
        field = sitk.DisplacementFieldTransform(sitk.ReadTransform(str(tiny_run.transform_path(t))))
        inverse = sitk.InvertDisplacementField(field.GetDisplacementField(), maximumNumberOfIterations=100,
                                               maxErrorToleranceThreshold=1e-3, meanErrorToleranceThreshold=1e-4,
                                               enforceBoundaryCondition=True)
        theirs = sitk.GetArrayFromImage(sitk.Resample(image, image, sitk.DisplacementFieldTransform(inverse),
                                                      sitk.sitkNearestNeighbor, 0))
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny_run.segments_path(t))))
        either = (ours > 0) | (theirs > 0)
        agreement = float(np.mean(ours[either] == theirs[either]))
        print(f"frame {t}: carried segments agree with SimpleITK at {agreement:.1%} of {int(either.sum())} voxels")
        assert agreement >= 0.95


@pytest.mark.slow
def test_the_run_carries_the_cavity_and_segments_and_the_function_is_the_same_without_them(tiny_run, tmp_path):
    """``register`` with an LV blood pool carries the cavity and the AHA segments with the myocardium (one inverse
    map per frame; cavity/ and segments/ per frame, their digests in each record). The function measured from them
    equals the function measured by inverting every written field again (records without the digests, carried
    cavities deleted): the same volumes, strain and segment files."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run.root, copy)
    run = RunFolder(copy)
    for t in range(4):
        record = run.read_frame_record(t)
        assert set(record.carried) == {"cavity", "segments"} and run.carried_path("cavity", t).is_file()
    segments_before = {t: sitk.GetArrayFromImage(sitk.ReadImage(str(run.segments_path(t)))) for t in range(4)}
    carried_json = json.loads(run.function_json.read_text())
    assert main(["function", str(copy)]) == 0  # measured again from the carried labels
    assert json.loads(run.function_json.read_text()) == carried_json
    for t in range(4):
        record = run.read_frame_record(t)
        record.carried = {}
        record.files = {key: path for key, path in record.files.items() if key not in ("cavity", "segments")}
        run.write_frame_record(record)
        run.carried_path("cavity", t).unlink()
        run.segments_path(t).unlink()
    assert main(["function", str(copy)]) == 0  # every field inverted here
    recomputed = json.loads(run.function_json.read_text())
    assert recomputed == carried_json
    for t in range(4):
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(run.segments_path(t)))), segments_before[t])
