"""The ``inr-cardiac pair`` command end to end (real registration, tiny configuration) and its errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from INRCardiacRegistrationLib.cli.main import main


@pytest.mark.slow
def test_pair_command_writes_all_outputs(tmp_path, pair):
    pair.fixed.write(tmp_path / "fixed.nrrd")
    pair.moving.write(tmp_path / "moving.nrrd")
    pair.fixed_label.with_array(pair.fixed_label.array.astype(np.uint8) * 2).write(tmp_path / "fixed_label.nrrd")
    pair.moving_label.with_array(pair.moving_label.array.astype(np.uint8) * 2).write(tmp_path / "moving_label.nrrd")
    out = tmp_path / "out"
    code = main(["pair", str(tmp_path / "fixed.nrrd"), str(tmp_path / "moving.nrrd"), "--out", str(out),
                 "--fixed-label", str(tmp_path / "fixed_label.nrrd"), "--moving-label",
                 str(tmp_path / "moving_label.nrrd"), "--myocardium-label", "2", "--preset", "fast",
                 "--iterations", "60", "--omega", "10", "--device", "cpu", "--alpha", "1.0"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dice"] > summary["dice_before"]
    assert summary["config"]["iterations"] == 60 and summary["config"]["width"] == 128
    transform = sitk.ReadTransform(str(out / "displacement.h5"))
    assert transform.GetName() in ("DisplacementFieldTransform", "CompositeTransform")
    for name in ("checkpoint.pt", "moving_warped.nii.gz", "fixed_label_propagated.nii.gz"):
        assert (out / name).exists()


@pytest.mark.slow
def test_bad_input_gives_one_line_and_exit_code_2(tmp_path, pair):
    pair.fixed.write(tmp_path / "fixed.nrrd")
    result = subprocess.run(
        [sys.executable, "-m", "INRCardiacRegistrationLib.cli", "pair", str(tmp_path / "fixed.nrrd"),
         str(tmp_path / "missing.nrrd"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"inr-cardiac pair: error: moving image: file not found: "
                                                  f"{tmp_path / 'missing.nrrd'}"]
    assert main(["pair", "--out", str(tmp_path / "o"), "--alpha", "3"]) == 2
