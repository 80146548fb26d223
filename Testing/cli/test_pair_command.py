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


@pytest.mark.slow
def test_pair_samples_the_heart_labels_as_register_does(tmp_path, pair):
    """``--heart-label`` draws the training points from those values of the fixed label image, dilated (what
    ``register --heart-label`` and the benchmarks do); summary.json names the region. Both a heart mask file and heart
    labels, or heart labels without a label image, are one-line errors."""
    from INRCardiacRegistrationLib.core.masks import label_mask, sampling_mask
    from INRCardiacRegistrationLib.engine.sampling import MaskPointSampler
    from scipy import ndimage

    myocardium = pair.fixed_label.array.astype(bool)
    labels = np.where(myocardium, 2, np.where(ndimage.binary_dilation(myocardium, iterations=3), 1, 0))
    pair.fixed.write(tmp_path / "fixed.nrrd")
    pair.moving.write(tmp_path / "moving.nrrd")
    pair.fixed_label.with_array(labels.astype(np.uint8)).write(tmp_path / "fixed_label.nrrd")
    seen = {}
    original = MaskPointSampler.__init__

    def spy(self, mask, *args, **kwargs):  # records the sampling mask the registration really uses
        seen["voxels"] = int(np.count_nonzero(np.asarray(mask.array)))
        original(self, mask, *args, **kwargs)

    MaskPointSampler.__init__ = spy
    try:
        out = tmp_path / "out"
        assert main(["pair", str(tmp_path / "fixed.nrrd"), str(tmp_path / "moving.nrrd"), "--out", str(out),
                     "--fixed-label", str(tmp_path / "fixed_label.nrrd"), "--myocardium-label", "2",
                     "--heart-label", "1", "2", "--preset", "fast", "--iterations", "5", "--device", "cpu"]) == 0
    finally:
        MaskPointSampler.__init__ = original
    expected = sampling_mask(heart=label_mask(pair.fixed_label.with_array(labels), [1, 2]), dilation_voxels=2)
    assert seen["voxels"] == int(np.count_nonzero(expected.array)) > int(myocardium.sum())
    assert json.loads((out / "summary.json").read_text())["sampling_region"] == "heart labels 1 2"
    assert main(["pair", str(tmp_path / "fixed.nrrd"), str(tmp_path / "moving.nrrd"), "--out", str(tmp_path / "x"),
                 "--heart-label", "1"]) == 2
    assert main(["pair", str(tmp_path / "fixed.nrrd"), str(tmp_path / "moving.nrrd"), "--out", str(tmp_path / "x"),
                 "--fixed-label", str(tmp_path / "fixed_label.nrrd"), "--heart-label", "7"]) == 2
