"""The function report: peak strain per segment from known per-frame values, and the PNG written with and without
strain (matplotlib for real, off screen)."""

from __future__ import annotations

import numpy as np
from INRCardiacRegistrationLib.function.cardiac_function import CardiacFunction
from INRCardiacRegistrationLib.function.report_figure import peak_segment_strain, write_function_report
from INRCardiacRegistrationLib.function.strain import FrameStrain


def _function(with_strain: bool = True) -> CardiacFunction:
    strain = None
    if with_strain:
        strain = []
        for scale in (0.0, 1.0, 0.5):
            segments = np.tile([30.0, -15.0, -12.0], (17, 1)) * scale
            segments[6] *= 0.25  # segment 7 moves a quarter as much
            strain.append(FrameStrain(40 * scale, -15 * scale, -12 * scale, 8 * scale, 6 * scale, -2 * scale,
                                      segments))
        strain = tuple(strain)
    return CardiacFunction((0, 1, 2), 3, 0, (120.0, 50.0, 90.0), (130.0, 129.0, 130.0), strain=strain,
                           notes=() if with_strain else ("strain not measured: the LV apex touches the image border",))


def test_peaks_per_segment():
    peaks = peak_segment_strain(_function())
    assert peaks.shape == (17, 3)
    assert np.allclose(peaks[0], [30.0, -15.0, -12.0])
    assert np.allclose(peaks[6], [7.5, -3.75, -3.0])


def test_the_report_is_written_with_and_without_strain(tmp_path):
    import matplotlib.image

    for with_strain in (True, False):
        path = write_function_report(_function(with_strain), tmp_path / f"report_{with_strain}.png", "test",
                                     marked=7 if with_strain else None)
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 500 and image.shape[1] > 1000
        assert not list(tmp_path.glob("*.tmp*"))


def test_function_json_has_no_bare_nan(tmp_path):
    """A ring without points gives a NaN twist; function.json must stay valid JSON (null there)."""
    import json

    from INRCardiacRegistrationLib.cycle.run_folder import RunFolder
    from INRCardiacRegistrationLib.function.cardiac_function import write_function

    function = _function()
    broken = tuple(FrameStrain(s.grs_pct, s.gcs_pct, s.gls_pct, float("nan"), float("nan"), s.basal_rotation_deg,
                               s.segments_pct) for s in function.strain)
    run = RunFolder(tmp_path)
    from dataclasses import replace

    write_function(run, replace(function, strain=broken), report=False)
    text = run.function_json.read_text()
    assert "NaN" not in text and json.loads(text)["peak_twist_deg"] is None
