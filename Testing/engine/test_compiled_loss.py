"""``compile``: the training loss under ``torch.compile`` against the eager loss (real TorchInductor on the CPU, real
optimisation), the fallback when compiling fails, and when ``auto`` compiles."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers import SMALL
from INRCardiacRegistrationLib.core.vocabulary import InputError
from INRCardiacRegistrationLib.engine import compiled_loss
from INRCardiacRegistrationLib.engine.compiled_loss import CompileFailed, wants_compiled_loss
from INRCardiacRegistrationLib.engine.coordinates import NormalizedCoordinates
from INRCardiacRegistrationLib.engine.pair_batch import PairJob, register_pairs_together
from INRCardiacRegistrationLib.engine.pair_registration import register_pair
from torch._dynamo.utils import counters

# small enough to compile in seconds; the SDF term, the analytic Jacobian penalty on a subset and the blood pool's
# relative penalty are all in the loss
CONFIG = SMALL.replace(iterations=25, points=512, jacobian_points=256, width=32, depth=2, progress_every=5)


@pytest.fixture
def fresh_compiler(monkeypatch):
    """This process's compiled loss and failure record, reset for the test and restored after it."""
    monkeypatch.setattr(compiled_loss, "_compiled", {})
    monkeypatch.setattr(compiled_loss, "_failure", None)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _pair(pair, pair_mask, **changes):
    return register_pair(pair.fixed, pair.moving, fixed_label=pair.fixed_label, moving_label=pair.moving_label,
                         mask=pair_mask, blood_pool=pair_mask, config=CONFIG.replace(**changes))


@pytest.mark.slow
def test_a_compiled_pair_equals_the_eager_pair_within_rounding(pair, pair_mask, fresh_compiler):
    counters.clear()
    eager = _pair(pair, pair_mask, compile="off")
    assert counters["stats"]["unique_graphs"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFailed)  # it must really compile here, not fall back
        compiled = _pair(pair, pair_mask, compile="on")
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1 and compiled_loss._failure is None
    torch.testing.assert_close(torch.tensor(compiled.loss_history), torch.tensor(eager.loss_history),
                               rtol=1e-5, atol=1e-6)
    assert compiled.loss_history[-1] < compiled.loss_history[0]  # it trained
    points = torch.stack(torch.meshgrid(*[torch.linspace(-0.8, 0.8, 9)] * 3, indexing="ij"), -1).reshape(-1, 3)
    with torch.no_grad():
        torch.testing.assert_close(compiled.network(points), eager.network(points), rtol=1e-4, atol=1e-6)
    # the next pair of the process, warm-started in another coordinate frame, reuses the compiled loss
    frame = compiled.coordinates
    moved = NormalizedCoordinates(tuple(c + 1.5 for c in frame.centre_mm), frame.scale_mm * 1.1)
    again = register_pair(pair.fixed, pair.moving, fixed_label=pair.fixed_label, moving_label=pair.moving_label,
                          mask=pair_mask, blood_pool=pair_mask, config=CONFIG.replace(compile="on", iterations=5),
                          initial=compiled, coordinates=moved)
    assert len(again.loss_history) == 5 and counters["stats"]["unique_graphs"] == graphs


@pytest.mark.slow
def test_pairs_trained_together_compiled_equal_them_eager(pair, pair_mask, fresh_compiler):
    """The batched loss (two pairs as one batched network, engine/pair_batch.py) compiled, against it eager."""
    def jobs(compile_choice: str) -> list[PairJob]:
        config = CONFIG.replace(iterations=10, compile=compile_choice)
        return [PairJob(pair.fixed, pair.moving, fixed_label=pair.fixed_label, moving_label=pair.moving_label,
                        mask=pair_mask, blood_pool=pair_mask, config=config.replace(seed=seed)) for seed in (1, 2)]

    eager = register_pairs_together(jobs("off"))
    counters.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFailed)
        compiled = register_pairs_together(jobs("on"))
    assert counters["stats"]["unique_graphs"] >= 1
    for ours, theirs in zip(compiled, eager, strict=True):
        torch.testing.assert_close(torch.tensor(ours.loss_history), torch.tensor(theirs.loss_history),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_compile_failure_warns_once_and_trains_eagerly(pair, pair_mask, fresh_compiler, monkeypatch):
    """A CPU without a working C++ compiler (here: Inductor pointed at a compiler that does not exist): the pair
    warns and trains eagerly, to the bit as an eager pair; a later pair of the process does not try again."""
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(torch._inductor.config, "fx_graph_cache", False)
    with pytest.warns(CompileFailed, match="compiling the training loss failed"):
        fallen_back = _pair(pair, pair_mask, compile="on", iterations=5)
    eager = _pair(pair, pair_mask, compile="off", iterations=5)
    assert fallen_back.loss_history == eager.loss_history
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFailed)
        later = _pair(pair, pair_mask, compile="on", iterations=5)
    assert later.loss_history == eager.loss_history


def test_auto_compiles_on_a_gpu_only():
    assert wants_compiled_loss("auto", torch.device("cuda")) and not wants_compiled_loss("auto", torch.device("cpu"))
    assert wants_compiled_loss("on", torch.device("cpu")) and not wants_compiled_loss("off", torch.device("cuda"))
    with pytest.raises(InputError, match="'compile'"):
        SMALL.replace(compile="sometimes")
