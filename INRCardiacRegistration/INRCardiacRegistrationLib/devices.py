"""Choosing the torch device: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda[:N]``."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for a user's choice; ValueError when CUDA is asked for but unavailable."""
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was requested but CUDA is not available on this machine "
                             "(use --device cpu or auto)")
        resolved = torch.device(name)
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} was requested but only {torch.cuda.device_count()} CUDA "
                             "device(s) exist")
        return resolved
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
