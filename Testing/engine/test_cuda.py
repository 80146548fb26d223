"""The CUDA path (skipped without CUDA; CI has none, run on a GPU machine): accuracy, reproducibility on the
same device, and a CUDA checkpoint that loads on the CPU."""

import numpy as np
import pytest
import torch
from helpers import SMALL
from INRCardiacRegistrationLib.engine.pair_registration import register_pair
from INRCardiacRegistrationLib.engine.registration_result import PairRegistration

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_cuda_registration_is_accurate_and_reproducible(tmp_path, pair, pair_mask):
    config = SMALL.replace(alpha=0.0, device="cuda")
    first = register_pair(pair.fixed, pair.moving, mask=pair_mask, config=config)
    second = register_pair(pair.fixed, pair.moving, mask=pair_mask, config=config)
    points = pair.fixed.geometry.index_to_physical(np.argwhere(pair_mask.array)[:, ::-1])
    truth = pair.phi(points)
    initial = np.linalg.norm(truth - points, axis=1).mean()
    error = np.linalg.norm(truth - first.map_points(points), axis=1).mean()
    print(f"CUDA: mean error {initial:.3f} -> {error:.3f} mm; {first.seconds:.1f} s")
    assert error <= 0.3 * initial
    np.testing.assert_allclose(first.map_points(points), second.map_points(points), atol=1e-5)
    on_cpu = PairRegistration.load(first.save(tmp_path / "cuda.pt"), device="cpu")
    np.testing.assert_allclose(on_cpu.map_points(points), first.map_points(points), atol=1e-4)
