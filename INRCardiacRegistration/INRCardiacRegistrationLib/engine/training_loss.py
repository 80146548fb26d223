"""The loss of one training iteration of a pair, as one function of the network and the iteration's points: what
:func:`.pair_registration.register_pair` differentiates, eagerly or compiled (:mod:`.compiled_loss`).

Convention as in :mod:`.pair_registration`: points ``x`` (LPS mm) lie in the fixed frame; the network's ``u_n``
(normalised units) times the coordinates' scale gives ``u`` in mm, and the moving image is sampled at ``x + u``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .config import RegistrationConfig
from .interpolation import VolumeSampler
from .jacobian import determinant_of_identity_plus, jacobian_autograd
from .losses import registration_loss
from .siren import Siren

if TYPE_CHECKING:
    from .batched_siren import BatchedSiren


@dataclass(frozen=True)
class LossSettings:
    """What shapes the loss besides its inputs (constant over a pair; a compiled loss is specialised to them)."""

    alpha: float                  # weight of the SDF term (0 when a frame has no label)
    regularization_weight: float  # lambda of the Jacobian penalty (0: no Jacobian is computed)
    tau: float                    # clip of the penalty
    local_group: int              # > 0: points per local-NCC cube (the points come in such groups)
    jacobian_points: int          # the first this many points carry the penalty
    analytic_jacobian: bool       # forward-mode Jacobian (else autograd, the paper's way)

    @classmethod
    def of(cls, config: RegistrationConfig, alpha: float) -> LossSettings:
        group = config.local_ncc_points if config.local_ncc_mm > 0 else 0
        return cls(alpha=alpha, regularization_weight=config.regularization_weight, tau=config.tau,
                   local_group=group, jacobian_points=min(config.jacobian_points or config.points, config.points),
                   analytic_jacobian=config.jacobian == "analytic")


def displacement_and_determinant(network: Siren | BatchedSiren, x_n: torch.Tensor,
                                 settings: LossSettings) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The network's ``u_n`` at normalised points ``x_n`` ((N, 3), or (K, N, 3) for a batched network) and, with a
    penalty, ``det(I + du_n/dx_n)`` at the first ``settings.jacobian_points`` points (else None)."""
    if settings.regularization_weight <= 0:
        return network(x_n), None
    count = settings.jacobian_points
    with_jacobian = x_n[..., :count, :]
    if settings.analytic_jacobian:
        u_n, jacobian_u = network.forward_with_jacobian(with_jacobian)
    else:
        u_n, jacobian_u = jacobian_autograd(network, with_jacobian, create_graph=True)
    if count < x_n.shape[-2]:  # the rest of the points only need the plain forward pass
        u_n = torch.cat([u_n, network(x_n[..., count:, :])], dim=-2)
    return u_n, determinant_of_identity_plus(jacobian_u)


def loss_of_outputs(x_mm: torch.Tensor, u_n: torch.Tensor, determinant: torch.Tensor | None, scale: torch.Tensor,
                    fixed_sampler: VolumeSampler, moving_sampler: VolumeSampler, pool_sampler: VolumeSampler | None,
                    settings: LossSettings) -> torch.Tensor:
    """The paper's Eq. (4) given the network's outputs at ``x_mm`` (N, 3) LPS mm: ``u_n`` (N, 3, normalised units,
    ``scale`` mm each) and the determinants of the first points (or None). ``pool_sampler``: the fixed frame's LV blood
    pool (1 inside), whose points' determinants are taken relative to their mean."""
    fixed_values = fixed_sampler(x_mm)
    moving_values = moving_sampler(x_mm + scale * u_n)
    sdf = settings.alpha > 0
    blood_pool = None
    if pool_sampler is not None and determinant is not None:
        blood_pool = pool_sampler(x_mm[:settings.jacobian_points])[:, 0] > 0.5
    terms = registration_loss(fixed_values[:, 0], moving_values[:, 0],
                              fixed_values[:, 1] if sdf else None, moving_values[:, 1] if sdf else None,
                              determinant, settings.alpha, settings.regularization_weight, settings.tau,
                              local_group=settings.local_group, blood_pool=blood_pool)
    return terms["loss"]


def training_loss(network: Siren, x_mm: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor,
                  fixed_sampler: VolumeSampler, moving_sampler: VolumeSampler, pool_sampler: VolumeSampler | None,
                  settings: LossSettings) -> torch.Tensor:
    """The loss at fixed-frame points ``x_mm`` (N, 3) LPS mm: a scalar to minimise. ``centre`` (3,) and ``scale`` ()
    are the normalised coordinates' (:class:`.coordinates.NormalizedCoordinates`, as tensors: a compiled loss then
    serves every coordinate frame). With a penalty, it is a mean over the first ``settings.jacobian_points`` points
    (random, so an unbiased estimate when fewer than all)."""
    u_n, determinant = displacement_and_determinant(network, (x_mm - centre) / scale, settings)
    return loss_of_outputs(x_mm, u_n, determinant, scale, fixed_sampler, moving_sampler, pool_sampler, settings)


def batched_training_losses(network: BatchedSiren, points: list[torch.Tensor], centres: list[torch.Tensor],
                            scales: list[torch.Tensor], fixed_samplers: list[VolumeSampler],
                            moving_samplers: list[VolumeSampler], pool_samplers: list[VolumeSampler | None],
                            settings: list[LossSettings]) -> torch.Tensor:
    """The losses (K,) of K pairs whose networks are ``network``'s, each at its own points (``points[k]`` (N, 3) LPS
    mm) with its own coordinates, images and settings (the same number of points and Jacobian points for all)."""
    x_n = torch.stack([(x - centre) / scale for x, centre, scale in zip(points, centres, scales, strict=True)])
    u_n, determinants = displacement_and_determinant(network, x_n, settings[0])
    return torch.stack([
        loss_of_outputs(points[k], u_n[k], None if determinants is None else determinants[k], scales[k],
                        fixed_samplers[k], moving_samplers[k], pool_samplers[k], settings[k])
        for k in range(len(points))])
