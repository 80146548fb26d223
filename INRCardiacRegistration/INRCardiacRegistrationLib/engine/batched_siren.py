"""K SIREN displacement networks of one shape evaluated as one batched network (for training several pairs at once).

Each layer's K weight matrices are stacked, (K, out, in), and applied with one batched matrix product
(``torch.baddbmm``) instead of K: on a GPU, K pairs then cost about the kernel launches of one. Network k's output
for its points ``x[k]`` is what :class:`.siren.Siren` k computes (within float rounding: a batched product may sum
in another order). Parameters are ordered as a Siren's (``hidden.0.weight``, ``hidden.0.bias``, ...,
``output.weight``, ``output.bias``), each with a leading K axis, so Adam's per-element state for network k is slice
k of the batched state.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..core.vocabulary import InputError
from .siren import Siren


class BatchedSiren(nn.Module):
    """K Sirens of the same width, depth and omega; inputs and outputs carry a leading K axis."""

    def __init__(self, networks: list[Siren]) -> None:
        super().__init__()
        if not networks:
            raise InputError("BatchedSiren needs at least one network")
        shapes = {tuple(sorted(network.hyperparameters().items())) for network in networks}
        if len(shapes) != 1:
            raise InputError(f"BatchedSiren needs networks of one shape, got {sorted(shapes)}")
        first = networks[0]
        self.width, self.depth, self.omega = first.width, first.depth, first.omega
        # what network() copies (no random draw); kept out of the module's parameters
        self.__dict__["_template"] = copy.deepcopy(first).requires_grad_(False)
        self.names = [name for name, _ in first.named_parameters()]
        self.stacked = nn.ParameterList(
            nn.Parameter(torch.stack([dict(network.named_parameters())[name].detach() for network in networks]))
            for name in self.names)

    @property
    def count(self) -> int:
        return int(self.stacked[0].shape[0])

    def _layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.stacked[2 * index], self.stacked[2 * index + 1]  # (K, out, in), (K, out)

    def _scaled_pre_activation(self, index: int, h: torch.Tensor) -> torch.Tensor:
        weight, bias = self._layer(index)
        return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2), beta=self.omega, alpha=self.omega)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Displacements (K, N, 3) of network k at its normalised points ``x[k]`` (K, N, 3)."""
        h = x
        for index in range(self.depth):
            h = torch.sin(self._scaled_pre_activation(index, h))
        weight, bias = self._layer(self.depth)
        return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))

    def forward_with_jacobian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Displacements (K, N, 3) and Jacobians (K, N, 3, 3), ``J[k, n, i, j] = d u_i / d x_j`` (forward mode, as
        :meth:`.siren.Siren.forward_with_jacobian`)."""
        count, points = x.shape[0], x.shape[1]
        weight, _ = self._layer(0)
        scaled = self._scaled_pre_activation(0, x)
        # tangents (K, N, 3 [d/dx_j], width)
        tangents = (self.omega * torch.cos(scaled)).unsqueeze(2) * weight.transpose(1, 2).unsqueeze(1)
        h = torch.sin(scaled)
        for index in range(1, self.depth):
            weight, _ = self._layer(index)
            scaled = self._scaled_pre_activation(index, h)
            pushed = torch.bmm(tangents.reshape(count, points * 3, -1), weight.transpose(1, 2))
            tangents = (self.omega * torch.cos(scaled)).unsqueeze(2) * pushed.reshape(count, points, 3, -1)
            h = torch.sin(scaled)
        weight, bias = self._layer(self.depth)
        u = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        jacobian_t = torch.bmm(tangents.reshape(count, points * 3, -1), weight.transpose(1, 2))
        return u, jacobian_t.reshape(count, points, 3, 3).transpose(2, 3)

    def network(self, index: int) -> Siren:
        """Network ``index`` as a plain :class:`.siren.Siren` (a copy of its weights, on their device)."""
        siren = copy.deepcopy(self._template).to(self.stacked[0].device).requires_grad_(True)
        with torch.no_grad():
            for name, value in zip(self.names, self.stacked, strict=True):
                dict(siren.named_parameters())[name].copy_(value[index])
        return siren
