"""The phantom's acceptance figures (``phantom.verification``): torsion and shortening measured from the map are as
configured, and ``verify_phantom`` reports acceptance 1-3 from the written files."""

from __future__ import annotations

import pytest
from INRCardiacRegistrationLib.phantom.config import PhantomConfig
from INRCardiacRegistrationLib.phantom.verification import measure_motion, verify_phantom
from small_phantom import SMALL


@pytest.mark.parametrize("torsion, shortening", [(12.0, 0.13), (8.0, 0.10)])
def test_torsion_and_shortening_measured_from_the_map_are_as_configured(torsion, shortening):
    config = PhantomConfig(frames=8, torsion_deg=torsion, longitudinal_shortening=shortening)
    measured = measure_motion(config)
    assert measured["torsion_deg"] == pytest.approx(torsion, abs=0.05)
    assert measured["longitudinal_shortening"] == pytest.approx(shortening, abs=0.002)
    assert measured["apex_rotation_deg"] < -1.0 < 1.0 < measured["base_rotation_deg"]   # opposite senses
    ed = measure_motion(config, frame=0)
    assert ed["torsion_deg"] == 0.0 and ed["longitudinal_shortening"] == 0.0


def test_verify_phantom_reports_the_acceptance_figures(manifest_path):
    """Acceptance 1-3 in one call, measured from the written files (what ``--verify`` prints)."""
    figures = verify_phantom(manifest_path)
    assert 0.50 <= figures["ejection_fraction"] <= 0.65
    assert figures["myocardium_volume_max_deviation"] < 0.05
    assert figures["torsion_deg"] == pytest.approx(SMALL.torsion_deg, abs=0.05)
    assert figures["longitudinal_shortening"] == pytest.approx(SMALL.longitudinal_shortening, abs=0.002)
    assert figures["pushed_myocardium_dice_min"] >= 0.97        # ED myocardium pushed to every frame
    assert figures["pushed_myocardium_dice"][0] > 0.99
    assert figures["trajectories_vs_map_max_mm"] < 0.01
    assert figures["transforms_vs_trajectories_max_mm"] < 0.05
    assert len(figures["blood_pool_ml"]) == len(figures["myocardium_ml"]) == SMALL.frames
