"""Volume's content digest (what a run records for each label it carries into the frames)."""

from __future__ import annotations

import numpy as np
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.volume import Volume


def test_digest_follows_content_not_name():
    """The same grid, type and voxels give the same text whatever the name; a voxel, the spacing or the data type
    changed give another."""
    grid = Geometry((5, 4, 3), (1.0, 1.5, 2.0), (0.0, 0.0, 0.0))
    array = np.zeros(grid.array_shape, np.uint8)
    array[1, 2, 3] = 1
    base = Volume(array, grid, "a")
    assert base.digest() == Volume(array.copy(), grid, "b").digest()
    changed = array.copy()
    changed[0, 0, 0] = 1
    assert Volume(changed, grid, "a").digest() != base.digest()
    assert Volume(array, Geometry((5, 4, 3), (1.0, 1.5, 2.5), (0.0, 0.0, 0.0)), "a").digest() != base.digest()
    assert Volume(array.astype(np.int16), grid, "a").digest() != base.digest()
