"""Choosing the torch device: ``auto`` (CUDA when present and working, else CPU), ``cpu`` or ``cuda[:N]``."""

from __future__ import annotations

import warnings

import torch

from ..core.vocabulary import InputError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for a user's choice; ValueError when CUDA is asked for but unavailable."""
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            try:  # a driver/build mismatch shows only when a kernel runs
                (torch.ones(1, device="cuda") * 2).item()
                return torch.device("cuda")
            except (RuntimeError, AssertionError) as error:
                warnings.warn(f"CUDA is reported available but does not work ({error}); using the CPU", stacklevel=2)
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} was requested but CUDA is not available on this machine (use the "
                             "device 'cpu' or 'auto')", option="device")
        resolved = torch.device(name)
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r} was requested but only {torch.cuda.device_count()} CUDA "
                             "device(s) exist")
        return resolved
    raise InputError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")


def cuda_device_count() -> int:
    """CUDA devices this process may use (0 without CUDA, or when the CUDA set-up is broken)."""
    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA set-up counts as none
        return 0
