"""The bookkeeping of one pair's training, whatever trains its network (alone, or batched with other pairs): its
losses, the plateau rule, the weights of its last iterations (``tail_average``), progress reports, divergence,
saving and restoring its training state, and its result.

The trainer tells it how to read the pair's weights and optimiser state (:meth:`PairTraining.attach`): a pair trained
alone reads its own network and Adam; a pair in a batch reads its slice of the batched ones. Both give the same
:class:`.training_state.PairTrainingState`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .plateau import PlateauRule
from .prepared_pair import PreparedPair
from .registration_result import PairRegistration
from .siren import Siren
from .training_state import PairTrainingState, StaleTrainingState


@dataclass(frozen=True)
class RegistrationProgress:
    """One progress report: ``iteration`` of ``iterations`` done, current loss, seconds so far and left."""

    iteration: int
    iterations: int
    loss: float
    elapsed_s: float
    eta_s: float


def to_cpu(value):
    """``value`` (an optimiser state: dicts, lists, tensors, numbers) with every tensor copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_cpu(v) for v in value)
    return value


class PairTraining:
    """One pair's training record. ``progress``/``save_state``/``save_every_s`` as in
    :func:`.pair_registration.register_pair`."""

    def __init__(self, prepared: PreparedPair, progress: Callable[[RegistrationProgress], None] | None = None,
                 save_state: Callable[[PairTrainingState], None] | None = None, save_every_s: float = 30.0) -> None:
        config = prepared.config
        self.prepared = prepared
        self.progress = progress
        self.save_state = save_state
        self.save_every_s = save_every_s
        self.losses: list[torch.Tensor] = []
        self.started = time.perf_counter()
        self.saved_at = self.started
        self.done = 0  # iterations trained before this session (a resumed pair)
        # Only a warm-started pair, which starts near its answer, may stop at a plateau: a pair trained from scratch
        # levels off after its first fast fall long before it is done (phantom ED -> ES: 1.29 mm dense error at its
        # plateau after 100 iterations, 0.88 mm after its 300).
        self.plateau = (PlateauRule(config.plateau_window, config.plateau_gain)
                        if config.plateau_window and prepared.warm_started else None)
        # Polyak averaging: the flattened weights after each of the last tail_average iterations
        self.tail: deque[torch.Tensor] | None = deque(maxlen=config.tail_average) if config.tail_average > 1 else None
        self._weights: Callable[[], torch.Tensor] | None = None
        self._network_state: Callable[[], dict] | None = None
        self._optimizer_state: Callable[[], dict] | None = None

    @property
    def iteration(self) -> int:
        """Iterations trained so far (every session)."""
        return len(self.losses)

    def attach(self, weights: Callable[[], torch.Tensor], network_state: Callable[[], dict],
               optimizer_state: Callable[[], dict]) -> None:
        """How to read the pair's flattened weights (in a Siren's parameter order), its network's state_dict and its
        Adam state_dict (each as a Siren's, on any device)."""
        self._weights, self._network_state, self._optimizer_state = weights, network_state, optimizer_state

    def resume(self, state: PairTrainingState, load: Callable[[PairTrainingState], None]) -> None:
        """Go on from ``state`` (:class:`StaleTrainingState` when it is another pair's or cannot be restored):
        ``load`` puts its network, optimiser and generator state in place; the losses, the plateau windows seen and
        the averaged weights are restored here."""
        config, device = self.prepared.config, self.prepared.device
        state.require_key(self.prepared.state_key)
        if not 0 < state.iteration < config.iterations or len(state.losses) != state.iteration:
            raise StaleTrainingState(f"a saved training state at iteration {state.iteration} of "
                                     f"{config.iterations} with {len(state.losses)} losses cannot be resumed")
        try:
            load(state)
            if self.tail is not None:
                self.tail.extend(state.tail.to(device=device, dtype=torch.float32).unbind())
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as error:
            raise StaleTrainingState(f"the saved training state does not fit this pair: {type(error).__name__}: "
                                     f"{error}") from error
        self.losses = list(state.losses.to(device=device, dtype=torch.float32).unbind())
        self.done = state.iteration
        self.started -= state.seconds
        if self.plateau is not None:  # the windows it has seen (none of them had converged)
            for end in range(self.plateau.window, self.done + 1, self.plateau.window):
                self.plateau.converged(self.losses[:end])
        self.saved_at = time.perf_counter()

    def state(self) -> PairTrainingState:
        """The training state now (copies, on the CPU)."""
        return PairTrainingState(
            key=self.prepared.state_key, iteration=self.iteration,
            network=to_cpu(self._network_state()), optimizer=to_cpu(self._optimizer_state()),
            generator=self.prepared.generator.get_state().cpu(),
            losses=torch.stack(self.losses).cpu() if self.losses else torch.zeros(0),
            seconds=time.perf_counter() - self.started,
            tail=torch.stack(list(self.tail)).cpu() if self.tail else torch.zeros(0))

    def save_on_cancel(self) -> None:
        """Give ``save_state`` the state of the iterations trained in this session, if any."""
        if self.save_state is not None and self.iteration > self.done:
            self.save_state(self.state())

    def report(self, iteration: int, iterations: int) -> None:
        if self.progress is None:
            return
        elapsed = time.perf_counter() - self.started
        loss = float(self.losses[-1]) if self.losses else float("nan")
        eta = elapsed / iteration * (iterations - iteration) if iteration else float("nan")
        self.progress(RegistrationProgress(iteration, iterations, loss, elapsed, eta))

    def record(self, loss: torch.Tensor) -> bool:
        """Record the iteration just stepped (its ``loss``); report, check and save as due. True when the plateau
        rule ends the pair here."""
        config = self.prepared.config
        self.losses.append(loss.detach())
        iteration = self.iteration
        if self.tail is not None:
            with torch.no_grad():  # a new tensor (the weights concatenated), outside the autograd graph
                self.tail.append(self._weights())
        stop = self.plateau is not None and iteration < config.iterations and self.plateau.converged(self.losses)
        if iteration % config.progress_every == 0 or iteration == config.iterations or stop:
            if not torch.isfinite(self.losses[-1]):
                raise FloatingPointError(f"registration diverged: loss is {float(self.losses[-1])} at iteration "
                                         f"{iteration}; lower the learning rate")
            self.report(iteration, iteration if stop else config.iterations)  # a plateau ends the pair here
            if (self.save_state is not None and not stop and iteration < config.iterations
                    and time.perf_counter() - self.saved_at >= self.save_every_s):
                self.save_state(self.state())
                self.saved_at = time.perf_counter()
        return stop

    def jittering(self, count: int) -> bool:
        """Whether the loss only jitters now: over its last ``count`` iterations it fell by no more than its own
        spread (the mean of the last ``count`` losses lies within one standard deviation of them below the mean of
        the ``count`` before). Needs ``2 count`` iterations."""
        if self.iteration < 2 * count:
            return False
        last = torch.stack(self.losses[-count:])
        before = torch.stack(self.losses[-2 * count:-count])
        return float(before.mean() - last.mean()) <= float(last.std())

    def finish(self, network: Siren) -> PairRegistration:
        """The result with ``network`` (the pair's weights now). With ``tail_average`` n > 1, a pair whose loss only
        jitters over its last n iterations (:meth:`jittering`) returns the mean of its last n iterates: there Adam at
        a constant learning rate leaves the weights jittering around the optimum, and their mean lies nearer it. A
        pair still descending keeps its last iterate, which a mean would lag behind."""
        if self.tail and self.jittering(self.tail.maxlen):
            with torch.no_grad():
                torch.nn.utils.vector_to_parameters(torch.stack(list(self.tail)).mean(dim=0), network.parameters())
        return self.prepared.result(network, self.losses, time.perf_counter() - self.started)
