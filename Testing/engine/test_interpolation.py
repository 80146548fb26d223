"""grid_sample-based sampling at physical points against SimpleITK's linear interpolation."""

import numpy as np
import SimpleITK as sitk
import torch
from helpers import oblique_direction
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.engine.interpolation import VolumeSampler
from INRCardiacRegistrationLib.engine.sampling import MaskPointSampler


def test_trilinear_sampling_matches_simpleitk(rng):
    geometry = Geometry((12, 10, 8), (1.2, 0.8, 2.0), (5.0, -3.0, 7.0), oblique_direction())
    array = rng.normal(size=geometry.array_shape).astype(np.float32)
    image = Volume(array, geometry).to_sitk()
    ijk = rng.uniform(0, 1, size=(200, 3)) * (np.array(geometry.size) - 1)
    points = geometry.index_to_physical(ijk)
    ours = VolumeSampler([array], geometry)(torch.as_tensor(points, dtype=torch.float32))[:, 0].numpy()
    theirs = np.array([image.EvaluateAtPhysicalPoint(p.tolist(), sitk.sitkLinear) for p in points])
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_voxel_centres_are_exact_and_channels_stack(rng):
    geometry = Geometry((6, 5, 4), (1.0, 1.0, 3.0), (0.0, 0.0, 0.0), oblique_direction())
    a = rng.normal(size=geometry.array_shape).astype(np.float32)
    b = rng.normal(size=geometry.array_shape).astype(np.float32)
    centres = torch.as_tensor(geometry.voxel_centres_physical().reshape(-1, 3), dtype=torch.float32)
    values = VolumeSampler([a, b], geometry)(centres)
    np.testing.assert_allclose(values[:, 0].numpy(), a.ravel(), atol=1e-5)
    np.testing.assert_allclose(values[:, 1].numpy(), b.ravel(), atol=1e-5)


def test_mask_points_stay_in_mask_voxels():
    geometry = Geometry((10, 10, 10), (1.5, 1.5, 1.5), (0.0, 0.0, 0.0), oblique_direction())
    mask = np.zeros(geometry.array_shape, bool)
    mask[2:5, 3:7, 4:6] = True
    sampler = MaskPointSampler(Volume(mask, geometry))
    generator = torch.Generator().manual_seed(0)
    points = sampler.sample(5000, generator).double().numpy()
    ijk = np.rint(geometry.physical_to_index(points)).astype(int)
    assert mask[ijk[:, 2], ijk[:, 1], ijk[:, 0]].all()
    first = sampler.sample(10, torch.Generator().manual_seed(7))
    again = sampler.sample(10, torch.Generator().manual_seed(7))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
