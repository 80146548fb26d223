"""A pair's training part-way through: what lets an interrupted pair go on from the iteration it stopped at.

The state holds everything the next iteration depends on: the network's weights, Adam's moments and step counts,
the point-sampling generator's state, the losses so far (the plateau rule reads them), the weights of the last
iterations (``tail_average``) and the training seconds so far.
Restored into a pair with the same inputs, configuration and warm start (its :attr:`PairTrainingState.key`),
the remaining iterations draw the same points and take the same steps as an uninterrupted pair, so the final
network is the same to the bit on the same device and thread count. Saved with ``torch.save`` (plain types and
tensors, readable with ``weights_only=True``), atomically.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.atomic_file import atomic_path
from ..core.vocabulary import InputError

TRAINING_STATE_FORMAT = "inr-cardiac-pair-training-state/1"


def network_digest(network: torch.nn.Module | None) -> str | None:
    """A SHA-1 of a network's parameter names and values (None for no network): identifies a warm start."""
    if network is None:
        return None
    content = hashlib.sha1()
    for name, value in network.state_dict().items():
        content.update(name.encode())
        content.update(value.detach().cpu().contiguous().numpy().tobytes())
    return content.hexdigest()


class StaleTrainingState(InputError):
    """A saved training state that cannot be used: made for another pair (other inputs, configuration, warm start
    or device), or not readable (a torn or foreign file). The pair starts over."""


@dataclass
class PairTrainingState:
    """One pair's training after ``iteration`` iterations (``losses`` holds one value per iteration)."""

    key: dict                         # the pair: input digests, configuration, warm-start digest
    iteration: int
    network: dict[str, torch.Tensor]  # state_dict, on the CPU
    optimizer: dict                   # the optimiser's state_dict, tensors on the CPU
    generator: torch.Tensor           # the point sampler's torch.Generator state (uint8)
    losses: torch.Tensor              # (iteration,) float32, the loss of every iteration so far
    seconds: float                    # training seconds so far (every session of this pair)
    # (n, P): the flattened weights after each of the last n iterations (tail_average > 1), oldest first
    tail: torch.Tensor = field(default_factory=lambda: torch.zeros(0))

    def require_key(self, key: dict) -> None:
        """Raise :class:`StaleTrainingState` unless this state was saved by a pair with ``key``."""
        if self.key != key:
            differs = sorted(name for name in set(self.key) | set(key) if self.key.get(name) != key.get(name))
            raise StaleTrainingState(f"the saved training state (iteration {self.iteration}) was made for another "
                                     f"pair (different {', '.join(differs)})")

    def to_dict(self) -> dict:
        return {"format": TRAINING_STATE_FORMAT, "key": self.key, "iteration": int(self.iteration),
                "network": self.network, "optimizer": self.optimizer, "generator": self.generator,
                "losses": self.losses, "seconds": float(self.seconds), "tail": self.tail}

    def save(self, path: str | Path) -> Path:
        """Write the state atomically (``torch.save`` to a temporary file, then rename)."""
        with atomic_path(path) as temporary:
            torch.save(self.to_dict(), temporary)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> PairTrainingState:
        """Read a state written by :meth:`save`; :class:`StaleTrainingState` when the file is not one (or is
        damaged)."""
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as error:  # noqa: BLE001 - a torn or foreign file: the caller starts the pair over
            raise StaleTrainingState(f"{path} is not a readable training state: {type(error).__name__}: "
                                     f"{error}") from error
        if not isinstance(data, dict) or data.get("format") != TRAINING_STATE_FORMAT:
            raise StaleTrainingState(f"{path} is not an inr-cardiac pair training state")
        try:
            return cls(key=data["key"], iteration=int(data["iteration"]), network=data["network"],
                       optimizer=data["optimizer"], generator=data["generator"], losses=data["losses"],
                       seconds=float(data["seconds"]), tail=data.get("tail", torch.zeros(0)))
        except (KeyError, TypeError, ValueError) as error:
            raise StaleTrainingState(f"{path} is not a readable training state: {type(error).__name__}: "
                                     f"{error}") from error
