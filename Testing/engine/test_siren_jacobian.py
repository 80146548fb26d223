"""The analytic (forward-mode) Jacobian against the autograd oracle; SIREN initialisation."""

import pytest
import torch
from INRCardiacRegistrationLib.engine.jacobian import determinant_of_identity_plus, jacobian_autograd
from INRCardiacRegistrationLib.engine.pair_registration import register_pair
from INRCardiacRegistrationLib.engine.siren import Siren


def _max_difference(network: Siren, points: torch.Tensor) -> float:
    u_analytic, j_analytic = network.forward_with_jacobian(points)
    u_autograd, j_autograd = jacobian_autograd(network, points, create_graph=False)
    assert torch.allclose(u_analytic, u_autograd, atol=1e-5)
    return float((j_analytic - j_autograd).detach().abs().max())


def test_starts_at_identity():
    network = Siren()
    points = torch.rand(100, 3) * 2 - 1
    u, jacobian = network.forward_with_jacobian(points)
    assert torch.count_nonzero(u) == 0 and torch.count_nonzero(jacobian) == 0


def test_analytic_jacobian_matches_autograd_fresh_network():
    """Paper-size network (5 x 256, omega 30) with a random (non-zero) output layer: 10,000 points."""
    torch.manual_seed(0)
    network = Siren(256, 5, 30.0, zero_output=False)
    points = torch.rand(10_000, 3) * 2 - 1
    assert _max_difference(network, points) <= 1e-4


@pytest.mark.slow
def test_analytic_jacobian_matches_autograd_after_training(pair, pair_mask):
    """Paper-size network trained 200 iterations (fewer points per iteration to stay fast on CPU)."""
    from helpers import SMALL

    config = SMALL.replace(width=256, depth=5, omega=30.0, points=1500, iterations=200, learning_rate=1e-5,
                           alpha=0.0)
    result = register_pair(pair.fixed, pair.moving, mask=pair_mask, config=config)
    torch.manual_seed(1)
    points = torch.rand(10_000, 3) * 2 - 1
    difference = _max_difference(result.network, points)
    assert difference <= 1e-4
    _, jacobian = result.network.forward_with_jacobian(points)
    assert float(jacobian.detach().abs().max()) > 1e-3, "the trained network should not be the identity any more"


def test_determinant_formula_matches_torch():
    jacobian = torch.randn(1000, 3, 3, dtype=torch.float64)
    expected = torch.linalg.det(jacobian + torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(determinant_of_identity_plus(jacobian), expected)
