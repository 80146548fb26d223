"""``inr-cardiac`` itself: the user's bad input ends with one line and exit code 2, naming the option; any other
error is a defect and is not dressed up as bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
import SimpleITK as sitk
from INRCardiacRegistrationLib.cli.main import main
from INRCardiacRegistrationLib.core.vocabulary import ExitCode


def test_an_unreadable_landmark_file_is_bad_input(tmp_path, capsys):
    """A Latin-1 .fcsv (not UTF-8) is named with what to do about it, exit code 2, before anything is written."""
    image = sitk.JoinSeries([sitk.Image([8, 8, 8], sitk.sitkInt16)] * 2)  # a 4D image of 2 frames
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    landmarks = tmp_path / "points.fcsv"
    landmarks.write_bytes("# Markups fiducial file version = 4.11\n# CoordinateSystem = LPS\n"
                          "1,1.0,2.0,3.0,0,0,0,1,1,1,0,Ventricule gauche \xe9,,\n".encode("latin-1"))
    code = main(["register", str(tmp_path / "ct.nii.gz"), "--landmarks", str(landmarks), "--out",
                 str(tmp_path / "run")])
    assert code == ExitCode.BAD_INPUT
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "is not UTF-8 text" in error[0] and str(landmarks) in error[0]
    assert not (tmp_path / "run").exists()


def test_a_bad_option_value_names_the_option(tmp_path, capsys):
    assert main(["register", str(tmp_path / "ct.nii.gz"), "--alpha", "1.5", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == ("inr-cardiac register: error: 'alpha' must be in [0, 1], got 1.5 "
                                               "(--alpha)")


def test_a_defect_is_not_reported_as_bad_input(monkeypatch):
    """A plain ValueError (what numpy raises on a programming error) propagates: a traceback and exit code 1, never
    the one-line 'bad input' of exit code 2 (which a cohort would not retry)."""
    from INRCardiacRegistrationLib.cli import pair

    def defect(args):
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    monkeypatch.setattr(pair, "run", defect)
    with pytest.raises(ValueError, match="broadcast"):
        main(["pair", "--out", "o"])
    planted = ("import sys; from INRCardiacRegistrationLib.cli import main as m, pair; "
               "pair.run = lambda args: (_ for _ in ()).throw(ValueError('shapes (3,) (4,)')); "
               "sys.exit(m.main(['pair', '--out', 'o']))")
    result = subprocess.run([sys.executable, "-c", planted], capture_output=True, text=True)
    assert result.returncode == ExitCode.FAILED and "Traceback" in result.stderr


@pytest.mark.slow
def test_a_cpu_run_without_a_preset_takes_the_fast_preset_and_says_so(tiny_phantom, tmp_path, capsys):
    """No ``--preset`` on a CPU: the fast preset, and one line saying so with the paper preset's time per frame;
    ``--preset paper`` is kept as asked (the tiny overrides keep both runs short)."""
    from helpers import phantom_request
    from INRCardiacRegistrationLib.cycle.run_folder import RunFolder

    argv = phantom_request(tiny_phantom).to_argv()
    at = argv.index("--preset")
    without = argv[:at] + argv[at + 2:]
    assert main(["register", *without, "--out", str(tmp_path / "auto"), "--quiet", "--no-report"]) == 0
    notice = [line for line in capsys.readouterr().err.splitlines() if "no GPU here" in line]
    assert len(notice) == 1 and "--preset paper" in notice[0] and "minutes per frame" in notice[0]
    assert RunFolder(tmp_path / "auto").read_request().settings.preset == "fast"
    assert main(["register", *without, "--preset", "paper", "--out", str(tmp_path / "paper"), "--quiet",
                 "--no-report"]) == 0
    assert "no GPU here" not in capsys.readouterr().err
    assert RunFolder(tmp_path / "paper").read_request().settings.preset == "paper"
