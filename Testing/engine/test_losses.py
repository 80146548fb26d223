"""NCC and the symmetric Jacobian penalty against hand-computed values."""

import numpy as np
import pytest
import torch
from INRCardiacRegistrationLib.engine.losses import (
    normalized_cross_correlation,
    registration_loss,
    symmetric_jacobian_penalty,
)


def test_ncc_matches_pearson_and_is_affine_invariant(rng):
    a = rng.normal(size=500)
    b = 0.5 * a + rng.normal(size=500)
    expected = np.corrcoef(a, b)[0, 1]
    ours = normalized_cross_correlation(torch.tensor(a), torch.tensor(b)).item()
    assert ours == pytest.approx(expected, abs=1e-9)
    assert normalized_cross_correlation(torch.tensor(a), torch.tensor(3 * a + 7)).item() == pytest.approx(1.0)
    assert normalized_cross_correlation(torch.tensor(a), torch.tensor(-a)).item() == pytest.approx(-1.0)


def test_symmetric_penalty_values():
    det = torch.tensor([1.0, 2.0, 0.5, -1.0, 1e-9, 100.0])
    expected = torch.tensor([0.0, 0.5, 0.5, 4.0, 10.0, 10.0])  # (d-1)^2/|d| clipped at tau = 10
    torch.testing.assert_close(symmetric_jacobian_penalty(det, tau=10.0), expected)


def test_loss_combines_terms_with_alpha(rng):
    f = torch.tensor(rng.normal(size=100))
    m = torch.tensor(rng.normal(size=100))
    s_f = torch.tensor(rng.normal(size=100))
    det = torch.full((100,), 2.0, dtype=torch.float64)
    terms = registration_loss(f, m, s_f, s_f, det, alpha=0.8, regularization_weight=0.05, tau=10.0)
    expected = -0.2 * np.corrcoef(f, m)[0, 1] - 0.8 * 1.0 + 0.05 * 0.5
    assert terms["loss"].item() == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="SDF"):
        registration_loss(f, m, None, None, det, alpha=0.5, regularization_weight=0.0, tau=10.0)


def test_local_ncc_is_the_mean_of_per_group_correlations():
    """Groups of consecutive points: each group's own NCC (an independent per-group computation), averaged; a
    global shift or scale per group does not change it, unlike the global NCC."""
    import numpy as np
    import torch
    from INRCardiacRegistrationLib.engine.losses import local_normalized_cross_correlation, normalized_cross_correlation

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(6, 8, generator=generator, dtype=torch.float64)
    b = a + 0.5 * torch.randn(6, 8, generator=generator, dtype=torch.float64)
    b = b * torch.linspace(0.5, 3.0, 6, dtype=torch.float64)[:, None] + torch.arange(6.0, dtype=torch.float64)[:, None]
    expected = np.mean([np.corrcoef(a[g].numpy(), b[g].numpy())[0, 1] for g in range(6)])
    local = local_normalized_cross_correlation(a.reshape(-1), b.reshape(-1), 8)
    assert float(local) == pytest.approx(expected, abs=1e-10)
    assert float(normalized_cross_correlation(a.reshape(-1), b.reshape(-1))) < float(local) - 0.05
    assert float(local_normalized_cross_correlation(a.reshape(-1), -a.reshape(-1), 8)) == pytest.approx(-1.0)
