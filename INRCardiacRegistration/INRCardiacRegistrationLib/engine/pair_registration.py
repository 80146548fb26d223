"""Pairwise registration: one SIREN trained so that ``moving(phi(x)) ~ fixed(x)`` for x in the fixed frame.

Convention (design.md): the *fixed* frame is the reference; ``phi(x) = x + u(x)`` maps a fixed-frame
point x (LPS mm) to where that tissue is in the *moving* frame. Loss (paper Eq. 4) on random points of the
fixed frame's sampling mask: ``(1 - alpha)(-NCC(image)) + alpha(-NCC(SDF)) + lambda mean(L_sjac)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..core.vocabulary import CancelSignal, is_cancelled
from ..core.volume import Volume
from .compiled_loss import compile_errors, compile_failed, loss_function
from .config import RegistrationConfig
from .coordinates import NormalizedCoordinates
from .pair_training import PairTraining, RegistrationProgress
from .prepared_pair import prepare_pair
from .registration_result import PairRegistration
from .siren import Siren
from .training_loss import training_loss
from .training_state import PairTrainingState

__all__ = ["RegistrationCancelled", "RegistrationProgress", "register_pair"]


class RegistrationCancelled(RuntimeError):
    """Raised by :func:`register_pair` when its ``cancel`` signal is set; nothing is returned."""


def register_pair(
    fixed: Volume,
    moving: Volume,
    *,
    fixed_label: Volume | None = None,
    moving_label: Volume | None = None,
    mask: Volume | None = None,
    blood_pool: Volume | None = None,
    config: RegistrationConfig | None = None,
    initial: PairRegistration | Siren | None = None,
    coordinates: NormalizedCoordinates | None = None,
    progress: Callable[[RegistrationProgress], None] | None = None,
    cancel: CancelSignal = None,
    resume_from: PairTrainingState | None = None,
    save_state: Callable[[PairTrainingState], None] | None = None,
    save_every_s: float = 30.0,
) -> PairRegistration:
    """Register ``moving`` to ``fixed``: learn phi (fixed -> moving, physical LPS mm).

    Args:
        fixed, moving: 3D images (any grids; each keeps its own geometry).
        fixed_label, moving_label: boolean myocardium masks on the fixed / moving grid. Their SDFs enter the
            loss with weight ``config.alpha``; if either is missing, alpha = 0 is used for this pair.
        mask: where training points are drawn (fixed grid, already dilated as wanted). Default: the fixed
            label dilated by ``config.myocardium_margin_mm``.
        blood_pool: the LV cavity of the fixed frame (boolean, fixed grid): with ``config.blood_pool_jacobian``
            "relative" its points' Jacobian penalty is taken relative to their mean (see
            :func:`.losses.blood_pool_relative_determinant`).
        config: hyper-parameters (default: the paper's).
        initial: warm start from a previous registration or network (same width/depth/omega). Only a warm-started
            pair stops at its loss plateau (``config.plateau_window``); one from scratch runs all its iterations.
            With ``config.tail_average`` n > 1, a pair whose loss only jitters over its last n iterations returns
            the mean of its weights after them (:meth:`.pair_training.PairTraining.jittering`).
        coordinates: normalised coordinate frame to use (default: around the sampling mask).
        progress: called every ``config.progress_every`` iterations and at the end (when the plateau rule ends the
            pair early, the last report's ``iterations`` is the iteration it stopped at).
        cancel: a ``threading.Event`` or a callable; when set, :class:`RegistrationCancelled` is raised (after
            ``save_state`` was given the state of the iterations done).
        resume_from: a state saved by ``save_state`` of this same pair (same inputs, configuration and warm start,
            else :class:`.training_state.StaleTrainingState`): training goes on after its iteration and ends with
            the network an uninterrupted pair would have (on the same device and torch thread count).
        save_state: called with the training state (copies, on the CPU) at a progress report once ``save_every_s``
            seconds have passed since the last save (or the start), and when cancelled.
    """
    prepared = prepare_pair(fixed, moving, fixed_label=fixed_label, moving_label=moving_label, mask=mask,
                            blood_pool=blood_pool, config=config, initial=initial, coordinates=coordinates,
                            wants_state=resume_from is not None or save_state is not None)
    config, network = prepared.config, prepared.network
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    loss_of = loss_function(config.compile, prepared.device)
    training = PairTraining(prepared, progress, save_state, save_every_s)
    training.attach(weights=lambda: torch.nn.utils.parameters_to_vector(network.parameters()),
                    network_state=network.state_dict, optimizer_state=optimizer.state_dict)
    if resume_from is not None:
        def load(state: PairTrainingState) -> None:
            network.load_state_dict(state.network)
            optimizer.load_state_dict(state.optimizer)
            prepared.generator.set_state(state.generator)

        training.resume(resume_from, load)
    arguments = (prepared.centre, prepared.scale, prepared.fixed_sampler, prepared.moving_sampler,
                 prepared.pool_sampler, prepared.settings)

    for _ in range(training.iteration, config.iterations):
        if is_cancelled(cancel):
            training.save_on_cancel()
            raise RegistrationCancelled(f"registration cancelled at iteration {training.iteration}")
        x_mm = prepared.sample_points()
        optimizer.zero_grad(set_to_none=True)
        try:
            loss = loss_of(network, x_mm, *arguments)
            loss.backward()
        except compile_errors() as error:  # a compiled loss that fails to compile: go on eagerly
            if loss_of is training_loss:
                raise
            loss_of = compile_failed(error)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_of(network, x_mm, *arguments)
            loss.backward()
        optimizer.step()
        if training.record(loss):
            break
    return training.finish(network)
