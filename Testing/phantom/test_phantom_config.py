"""The phantom's configuration (``phantom.config``): validation names the parameter, dict round trip, presets."""

from __future__ import annotations

import json

import pytest
from INRCardiacRegistrationLib.phantom.config import PhantomConfig


@pytest.mark.parametrize("kwargs, name", [
    ({"frames": 1}, "frames"), ({"frames": 2.5}, "frames"), ({"spacing_mm": -1.0}, "spacing_mm"),
    ({"spacing_mm": (1.0, 2.0)}, "spacing_mm"), ({"size": (10, 10)}, "size"),
    ({"noise_hu": -1.0}, "noise_hu"),
    ({"ejection_fraction": 0.95}, "ejection_fraction"), ({"torsion_deg": 45.0}, "torsion_deg"),
    ({"longitudinal_shortening": 0.5}, "longitudinal_shortening"), ({"seed": -1}, "seed"),
    ({"translation_mm": (20.0, 0.0, 0.0)}, "translation_mm"), ({"size": 2000}, "size"),
])
def test_bad_configuration_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PhantomConfig(**kwargs)


def test_configuration_round_trip_and_presets():
    config = PhantomConfig(frames=10, spacing_mm=2.0, size=(40, 41, 42), seed=3)
    assert config.spacing_mm == (2.0, 2.0, 2.0) and config.grid_size == (40, 41, 42)
    assert PhantomConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown"):
        PhantomConfig.from_dict({"frames": 4, "colour": "red"})
    paper = PhantomConfig.paper_like()
    assert paper.spacing_mm == (0.5, 0.5, 2.0) and paper.frames == 20 and 7 <= paper.es_frame <= 8
    assert paper.ground_truth_geometry.spacing == (1.75, 1.75, 1.75)
    assert PhantomConfig.paper_like(frames=10).frames == 10
    default = PhantomConfig()
    assert 1.5 <= default.spacing_mm[0] <= 2.0 and 0.35 <= default.es_frame / default.frames <= 0.40
