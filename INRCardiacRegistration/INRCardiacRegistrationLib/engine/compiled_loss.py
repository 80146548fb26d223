"""``torch.compile`` of the training loss (``RegistrationConfig.compile``), compiled once per process and shared by
every pair (and every chain's thread) after it.

The loss and its backward pass are compiled (TorchInductor: element-wise work fused into a few kernels); the
point sampling (a ``torch.Generator``) and Adam's step stay eager. Networks, images and coordinate frames are the
compiled function's inputs, so a new pair reuses it; it is compiled again only for new shapes (another point count,
network or image size, a batch of another size) or other loss settings (alpha, lambda, tau, local NCC, with or without a
blood pool). A compiled pair's losses equal an eager pair's within float rounding
(``Testing/engine/test_compiled_loss.py``), not to the bit; on a CPU the compiled kernels keep the thread count they
were compiled with.

- ``on``: compile (needs torch >= 2.5, where modules are inputs of a compiled function rather than constants).
  Where compiling fails (no C++ compiler for a CPU, no Triton for a GPU), the pair warns once and trains eagerly,
  as does every later pair of the process.
- ``auto``: compile on a CUDA device, where an eager iteration waits on kernel launches (the gain there is not
  measured yet); not on a CPU, where (2 cores, torch 2.13) the demo's cycle took 71 s eager, 96 s with a first
  compile and 68 s compiled before in the process (docs/benchmarks.md, "Time to accuracy"), and a C++ compiler is
  needed.
- ``off``: eager (the reference).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

import torch

from .training_loss import training_loss

_LOCK = threading.Lock()
_compiled: dict[Callable, Callable] = {}
_failure: str | None = None  # why compiling failed or cannot be used in this process (then every pair is eager)
OLDEST_TORCH = (2, 5)


class CompileFailed(UserWarning):
    """Compiling the training loss failed or is not possible; the pair (and every later one) trains eagerly."""


def compile_errors() -> tuple[type[BaseException], ...]:
    """What a failing compile raises (TorchInductor's errors, a missing compiler, Triton or C++ toolchain, included).
    A function, used as ``except compile_errors():`` (evaluated only when something was raised), so that a process
    that never compiles never imports the compiler (about 1 s)."""
    import torch._dynamo.exc

    return (torch._dynamo.exc.TorchDynamoException,)


def wants_compiled_loss(choice: str, device: torch.device) -> bool:
    """Whether a pair on ``device`` compiles its loss for the configuration's ``compile`` choice."""
    return choice == "on" or (choice == "auto" and device.type == "cuda")


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def loss_function(choice: str, device: torch.device, eager: Callable = training_loss) -> Callable:
    """The loss to use: ``eager`` (:func:`.training_loss.training_loss`, or another loss function such as
    :func:`.training_loss.batched_training_losses`) itself, or its compiled version (created once per process;
    compiled at its first call)."""
    if not wants_compiled_loss(choice, device):
        return eager
    if _failure is None and _torch_version() < OLDEST_TORCH:
        compile_failed(RuntimeError(f"torch {torch.__version__} is older than {'.'.join(map(str, OLDEST_TORCH))}"))
    if _failure is not None:
        return eager
    with _LOCK:
        if eager not in _compiled:
            _compiled[eager] = torch.compile(eager, dynamic=False)
        return _compiled[eager]


def compile_failed(error: BaseException, eager: Callable = training_loss) -> Callable:
    """Record that compiling failed (warn once per process); then every pair of the process trains eagerly. Returns
    ``eager``, the loss to go on with."""
    global _failure
    with _LOCK:
        first = _failure is None
        if first:
            text = str(error).strip()
            _failure = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
    if first:
        warnings.warn(CompileFailed(f"compiling the training loss failed ({_failure}); training without it"),
                      stacklevel=3)
    return eager
