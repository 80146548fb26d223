"""``inr-cardiac phantom`` (``cli.phantom``): writes a phantom; bad arguments give one line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from INRCardiacRegistrationLib.cli.main import main


@pytest.mark.slow
def test_cli_writes_a_phantom(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["phantom", str(out), "--frames", "4", "--spacing", "3", "--size", "40", "40", "32",
                 "--seed", "2", "--noise", "5", "--verify"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    printed = capsys.readouterr()
    assert printed.out.strip() == str(out / "manifest.json")
    assert "EF " in printed.err and "pushed_myocardium_dice_min" in printed.err
    assert manifest["size"] == [40, 40, 32] and manifest["spacing"] == [3.0, 3.0, 3.0]
    assert manifest["generator"]["parameters"]["seed"] == 2
    assert manifest["generator"]["parameters"]["noise_hu"] == 5.0
    assert len(manifest["ground_truth_transforms"]) == 4 and manifest["es_frame"] == 2
    assert main(["phantom", str(tmp_path / "quiet"), "--frames", "3", "--spacing", "4", "--quiet"]) == 0
    assert capsys.readouterr() == (str(tmp_path / "quiet" / "manifest.json") + "\n", "")


@pytest.mark.parametrize("arguments, message", [
    (["--frames", "1"], "PhantomConfig 'frames' must be an integer in [2, 200], got 1"),
    (["--spacing", "1", "2"], "--spacing takes one value or three, got 2: [1.0, 2.0]"),
    (["--noise", "-5"], "PhantomConfig 'noise_hu' must be a number in [0, 500] HU, got -5.0"),
    (["--ejection-fraction", "0.9"],
     "PhantomConfig 'ejection_fraction' must be a number in [0, 0.8], got 0.9"),
])
def test_cli_bad_arguments_give_one_line_and_exit_code_2(tmp_path, capsys, arguments, message):
    assert main(["phantom", str(tmp_path / "out"), *arguments]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"inr-cardiac phantom: error: {message}"]
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_cli_error_as_a_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "INRCardiacRegistrationLib.cli", "phantom",
                             str(tmp_path / "out"), "--size", "10", "20"], capture_output=True, text=True)
    assert result.returncode == 2
    expected = "inr-cardiac phantom: error: --size takes one value or three, got 2: [10, 20]"
    assert result.stderr.strip().splitlines() == [expected]
