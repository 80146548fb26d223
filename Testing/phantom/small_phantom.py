"""The small phantom the phantom tests share (2 mm voxels, 8 frames; written once per session by ``conftest.py``)
and the label values they check."""

from __future__ import annotations

from INRCardiacRegistrationLib.phantom.config import LABEL_VALUES, PhantomConfig

SMALL = PhantomConfig(frames=8, spacing_mm=2.0)
MYO, BLOOD, HEART = LABEL_VALUES["myocardium"], LABEL_VALUES["blood_pool"], LABEL_VALUES["heart"]
