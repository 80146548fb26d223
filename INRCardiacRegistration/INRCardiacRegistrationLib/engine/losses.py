"""Loss terms as plain functions on point samples (tensors of shape (N,) or (N, C))."""

from __future__ import annotations

import torch

from ..core.vocabulary import InputError


def normalized_cross_correlation(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Global NCC (Pearson correlation) over the sampled points, per channel.

    ``a``, ``b``: (N,) or (N, C). Returns a scalar (or (C,)) in [-1, 1]; 1 = perfectly correlated.
    """
    a_centred = a - a.mean(dim=0)
    b_centred = b - b.mean(dim=0)
    covariance = (a_centred * b_centred).mean(dim=0)
    variance = (a_centred.square().mean(dim=0) * b_centred.square().mean(dim=0)).clamp_min(eps * eps)
    return covariance / torch.sqrt(variance)


def local_normalized_cross_correlation(a: torch.Tensor, b: torch.Tensor, group: int) -> torch.Tensor:
    """Mean of the NCCs of consecutive groups of ``group`` points (``a``, ``b``: (M * group,)): a local NCC when
    each group lies in a small neighbourhood. Groups without contrast (constant values) count as 0."""
    a_groups = a.reshape(-1, group).t()
    b_groups = b.reshape(-1, group).t()
    return normalized_cross_correlation(a_groups, b_groups).mean()


def symmetric_jacobian_penalty(determinant: torch.Tensor, tau: float = 10.0, eps: float = 1e-6) -> torch.Tensor:
    """Point-wise ``min{(det - 1)^2 / |det|, tau}`` (van Harten et al.), shape of ``determinant``.

    Penalises expansion and compression symmetrically; clipped at ``tau`` so folded points (det <= 0,
    where the ratio explodes) cannot dominate the loss. ``eps`` guards the division at det = 0.
    """
    ratio = (determinant - 1.0).square() / determinant.abs().clamp_min(eps)
    return torch.clamp(ratio, max=tau)


def registration_loss(fixed_image: torch.Tensor, moving_image: torch.Tensor,
                      fixed_sdf: torch.Tensor | None, moving_sdf: torch.Tensor | None,
                      determinant: torch.Tensor | None, alpha: float, regularization_weight: float,
                      tau: float, local_group: int = 0) -> dict[str, torch.Tensor]:
    """The paper's Eq. (4): ``(1 - alpha) (-NCC(image)) + alpha (-NCC(SDF)) + lambda mean(L_sjac)``.

    Returns the total under ``"loss"`` and its parts (``"image_ncc"``, ``"sdf_ncc"``, ``"jacobian"``).
    ``alpha`` must be 0 when no SDF is given; the Jacobian term is skipped when ``determinant`` is None.
    ``local_group`` > 0: the image NCC is the mean over consecutive groups of that many points (local NCC); the SDF
    term stays global.
    """
    terms: dict[str, torch.Tensor] = {}
    total = torch.zeros((), dtype=fixed_image.dtype, device=fixed_image.device)
    if alpha < 1.0:
        terms["image_ncc"] = (local_normalized_cross_correlation(fixed_image, moving_image, local_group)
                              if local_group else normalized_cross_correlation(fixed_image, moving_image))
        total = total - (1.0 - alpha) * terms["image_ncc"]
    if alpha > 0.0:
        if fixed_sdf is None or moving_sdf is None:
            raise InputError(f"alpha = {alpha} needs the SDF of both frames")
        terms["sdf_ncc"] = normalized_cross_correlation(fixed_sdf, moving_sdf)
        total = total - alpha * terms["sdf_ncc"]
    if determinant is not None and regularization_weight > 0.0:
        terms["jacobian"] = symmetric_jacobian_penalty(determinant, tau).mean()
        total = total + regularization_weight * terms["jacobian"]
    terms["loss"] = total
    return terms
