"""Several pairs trained at once as one batched network (:class:`.batched_siren.BatchedSiren`, one Adam over the
stacked weights): on a GPU, where an iteration of a small network waits on kernel launches, the K networks' passes
cost the launches of one (the similarity terms are still computed per pair; ``compile`` fuses them).

Each pair is the pair :func:`.pair_registration.register_pair` trains: its own inputs, seed, points (its own
generator), warm start, plateau rule and tail average; Adam is element-wise, so slice k of the batched Adam is pair
k's Adam. The results equal separately trained pairs' within float rounding (a batched matrix product may sum in
another order; ``Testing/engine/test_pair_batch.py``). A pair that the plateau rule ends leaves the batch (its weights
and Adam state are sliced out), and the others go on. All pairs share one configuration but for the seed, and start
together (none is resumed here: a pair with a saved state is resumed alone, by ``register_pair``). Cancelled (or
failed), every pair still training gives ``save_state`` its state, the same state ``register_pair`` saves and
resumes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from ..core.vocabulary import CancelSignal, InputError, is_cancelled
from ..core.volume import Volume
from .batched_siren import BatchedSiren
from .compiled_loss import compile_errors, compile_failed, loss_function
from .config import RegistrationConfig
from .coordinates import NormalizedCoordinates
from .pair_registration import RegistrationCancelled
from .pair_training import PairTraining, RegistrationProgress
from .prepared_pair import PreparedPair, prepare_pair
from .registration_result import PairRegistration
from .siren import Siren
from .training_loss import batched_training_losses
from .training_state import PairTrainingState

_MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")  # Adam's per-element state (the rest is per tensor)


@dataclass(frozen=True)
class PairJob:
    """One pair of a batch: the arguments :func:`.pair_registration.register_pair` takes for it."""

    fixed: Volume
    moving: Volume
    fixed_label: Volume | None = None
    moving_label: Volume | None = None
    mask: Volume | None = None
    blood_pool: Volume | None = None
    config: RegistrationConfig | None = None
    initial: PairRegistration | Siren | None = None
    coordinates: NormalizedCoordinates | None = None
    progress: Callable[[RegistrationProgress], None] | None = None
    save_state: Callable[[PairTrainingState], None] | None = None

    def inputs(self) -> dict:
        """The pair's inputs (all but the callbacks), as keyword arguments of ``register_pair`` and
        ``prepare_pair``."""
        return {item.name: getattr(self, item.name) for item in fields(self)
                if item.name not in ("progress", "save_state")}


def _require_one_configuration(prepared: list[PreparedPair]) -> None:
    def shared(pair: PreparedPair) -> dict:
        return {k: v for k, v in pair.config.to_dict().items() if k not in ("seed", "extra", "progress_every")}

    first = shared(prepared[0])
    for pair in prepared[1:]:
        differs = sorted(k for k, v in shared(pair).items() if first[k] != v)
        if differs:
            raise InputError(f"pairs trained together need one configuration (but for the seed); these differ: "
                             f"{', '.join(differs)}")
    if len({pair.device for pair in prepared}) != 1:
        raise InputError("pairs trained together need one device")
    settings = prepared[0].settings
    if settings.regularization_weight > 0 and not settings.analytic_jacobian:
        raise InputError("pairs trained together need the analytic Jacobian (jacobian 'analytic')")


def slice_adam_state(state: dict, index: int) -> dict:
    """Network ``index``'s Adam state_dict (as a Siren's Adam has it) from a batched network's Adam state_dict."""
    return {"state": {key: {name: value[index] if name in _MOMENTS else value for name, value in entry.items()}
                      for key, entry in state["state"].items()},
            "param_groups": [dict(group) for group in state["param_groups"]]}


class _Batch:
    """The batched network of the pairs still training and its Adam."""

    def __init__(self, networks: list[Siren], learning_rate: float, adam_states: list[dict] | None = None) -> None:
        self.network = BatchedSiren(networks)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=learning_rate)
        if adam_states:  # stack the pairs' Adam states (each as a Siren's Adam has it)
            first = adam_states[0]
            stacked = {key: {name: torch.stack([s["state"][key][name] for s in adam_states]) if name in _MOMENTS
                             else value for name, value in entry.items()}
                       for key, entry in first["state"].items()}
            self.optimizer.load_state_dict({"state": stacked, "param_groups": first["param_groups"]})

    def weights(self, position: int) -> torch.Tensor:
        """Network ``position``'s weights flattened in a Siren's parameter order."""
        return torch.cat([value[position].reshape(-1) for value in self.network.stacked])

    def network_state(self, position: int) -> dict:
        return {name: value[position] for name, value in zip(self.network.names, self.network.stacked, strict=True)}

    def adam_state(self, position: int) -> dict:
        return slice_adam_state(self.optimizer.state_dict(), position)

    def without(self, leaving: set[int]) -> _Batch:
        """The batch of the other networks, their weights and Adam states carried over."""
        keep = [position for position in range(self.network.count) if position not in leaving]
        return _Batch([self.network.network(position) for position in keep], self.optimizer.param_groups[0]["lr"],
                      [self.adam_state(position) for position in keep])


def register_pairs_together(jobs: list[PairJob], *, cancel: CancelSignal = None, save_every_s: float = 30.0,
                            finished: Callable[[int, PairRegistration], None] | None = None) -> list[PairRegistration]:
    """Train the pairs of ``jobs`` at once; their results in the same order (see the module's description).

    ``cancel`` as in ``register_pair``: when set, every pair still training gives its ``save_state`` its state, and
    :class:`.pair_registration.RegistrationCancelled` is raised; so they do when training fails. ``finished`` is
    called with a pair's index and result as soon as it is done (a pair done before a cancel is not lost).
    """
    if not jobs:
        return []
    prepared = [prepare_pair(**job.inputs(), wants_state=job.save_state is not None) for job in jobs]
    _require_one_configuration(prepared)
    config = prepared[0].config
    trainings = [PairTraining(pair, job.progress, job.save_state, save_every_s)
                 for pair, job in zip(prepared, jobs, strict=True)]
    results: list[PairRegistration | None] = [None] * len(jobs)
    active = list(range(len(jobs)))  # pair indices, in the batch's order
    batch = _Batch([pair.network for pair in prepared], config.learning_rate)
    loss_of = loss_function(config.compile, prepared[0].device, batched_training_losses)

    def attach() -> None:
        for position, index in enumerate(active):
            trainings[index].attach(weights=lambda p=position: batch.weights(p),
                                    network_state=lambda p=position: batch.network_state(p),
                                    optimizer_state=lambda p=position: batch.adam_state(p))

    def deliver(index: int, result: PairRegistration) -> None:
        results[index] = result
        if finished is not None:
            finished(index, result)

    attach()
    if config.iterations == 0:
        for index, (training, pair) in enumerate(zip(trainings, prepared, strict=True)):
            deliver(index, training.finish(pair.network))
        return results
    drawn: list[torch.Tensor] = []  # the generators' states before this iteration's points (what a save must hold)
    try:
        while active:
            if is_cancelled(cancel):
                raise RegistrationCancelled(f"registration cancelled at iteration {trainings[active[0]].iteration}")
            pairs = [prepared[index] for index in active]
            arguments = ([pair.centre for pair in pairs], [pair.scale for pair in pairs],
                         [pair.fixed_sampler for pair in pairs], [pair.moving_sampler for pair in pairs],
                         [pair.pool_sampler for pair in pairs], [pair.settings for pair in pairs])
            drawn = [pair.generator.get_state() for pair in pairs]
            points = [pair.sample_points() for pair in pairs]
            batch.optimizer.zero_grad(set_to_none=True)
            try:
                losses = loss_of(batch.network, points, *arguments)
                losses.sum().backward()  # the pairs' weights are separate: each gets its own loss's gradient
            except compile_errors() as error:  # a compiled loss that fails to compile: go on eagerly
                if loss_of is batched_training_losses:
                    raise
                loss_of = compile_failed(error, batched_training_losses)
                batch.optimizer.zero_grad(set_to_none=True)
                losses = loss_of(batch.network, points, *arguments)
                losses.sum().backward()
            batch.optimizer.step()
            drawn = []  # every pair has taken this step: its record follows, whatever happens there
            leaving, errors = set(), []
            for position, index in enumerate(active):  # every pair records the step before an error is raised
                try:
                    if trainings[index].record(losses[position]) or trainings[index].iteration >= config.iterations:
                        leaving.add(position)
                except Exception as error:  # noqa: BLE001 - raised below, once every pair has recorded its step
                    errors.append(error)
            if errors:
                raise errors[0]
            if leaving:
                done = [(active[position], trainings[active[position]].finish(batch.network.network(position)))
                        for position in sorted(leaving)]
                active = [index for position, index in enumerate(active) if position not in leaving]
                if active:
                    batch = batch.without(leaving)
                    attach()
                for index, result in done:  # out of the batch first: a failing hand-over saves none of them
                    deliver(index, result)
    except BaseException:  # cancelled or failed: the pairs still training keep what they trained
        for position, index in enumerate(active):
            if drawn:  # stopped within an iteration, before its step: its points are drawn again on resume
                prepared[index].generator.set_state(drawn[position])
            trainings[index].save_on_cancel()
        raise
    return results
