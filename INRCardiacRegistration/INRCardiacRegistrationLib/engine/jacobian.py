"""Jacobians and their determinants. The autograd implementation is the test oracle for the analytic
(forward-mode) Jacobian in :class:`siren.Siren`; it is also what the paper's code does."""

from __future__ import annotations

from collections.abc import Callable

import torch


def jacobian_autograd(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                      create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f(x), J)`` with ``J[n, i, j] = d f_i / d x_j`` by three reverse-mode passes (one per output).

    ``function`` maps (N, 3) -> (N, 3) point-wise. With ``create_graph`` the result can be differentiated
    again (needed when J enters a training loss).
    """
    x = x.detach().requires_grad_(True)
    y = function(x)
    rows = []
    for i in range(y.shape[1]):
        (grad,) = torch.autograd.grad(y[:, i].sum(), x, create_graph=create_graph, retain_graph=True)
        rows.append(grad)
    return y, torch.stack(rows, dim=1)


def determinant_of_identity_plus(jacobian_u: torch.Tensor) -> torch.Tensor:
    """``det(I + J)`` for displacement Jacobians ``J`` (..., 3, 3): the Jacobian determinant of
    ``phi(x) = x + u(x)``. Written out (cofactor expansion) to avoid a batched LU on small matrices."""
    a = jacobian_u + torch.eye(3, dtype=jacobian_u.dtype, device=jacobian_u.device)
    return (
        a[..., 0, 0] * (a[..., 1, 1] * a[..., 2, 2] - a[..., 1, 2] * a[..., 2, 1])
        - a[..., 0, 1] * (a[..., 1, 0] * a[..., 2, 2] - a[..., 1, 2] * a[..., 2, 0])
        + a[..., 0, 2] * (a[..., 1, 0] * a[..., 2, 1] - a[..., 1, 1] * a[..., 2, 0])
    )
