"""Fixtures of the phantom tests: the small phantom (``small_phantom.SMALL``) written once per session with its
montage, read back, and ED and ES of the default phantom (1.75 mm voxels) rendered in memory for the checks that
must hold at the default resolution."""

from __future__ import annotations

import pytest
from INRCardiacRegistrationLib.phantom.config import PhantomConfig
from INRCardiacRegistrationLib.phantom.files import generate_phantom, load_phantom
from INRCardiacRegistrationLib.phantom.rendering import phantom_frames
from small_phantom import SMALL


@pytest.fixture(scope="session")
def manifest_path(tmp_path_factory):
    return generate_phantom(tmp_path_factory.mktemp("phantom"), SMALL, montage=True)


@pytest.fixture(scope="session")
def phantom(manifest_path):
    return load_phantom(manifest_path)


@pytest.fixture(scope="session")
def default_frames():
    """ED and ES of the default phantom (1.75 mm voxels), in memory."""
    return phantom_frames(PhantomConfig())
