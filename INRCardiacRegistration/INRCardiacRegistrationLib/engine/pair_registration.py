"""Pairwise registration: one SIREN trained so that ``moving(phi(x)) ~ fixed(x)`` for x in the fixed frame.

Convention (design.md): the *fixed* frame is the reference; ``phi(x) = x + u(x)`` maps a fixed-frame
point x (LPS mm) to where that tissue is in the *moving* frame. Loss (paper Eq. 4) on random points of the
fixed frame's sampling mask: ``(1 - alpha)(-NCC(image)) + alpha(-NCC(SDF)) + lambda mean(L_sjac)``.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..core.masks import sampling_mask
from ..core.sdf import sdf_feature
from ..core.vocabulary import CancelSignal, InputError, is_cancelled
from ..core.volume import Volume
from .config import RegistrationConfig
from .coordinates import NormalizedCoordinates
from .devices import resolve_device
from .intensity import normalize_quantiles, normalize_window
from .interpolation import VolumeSampler
from .jacobian import determinant_of_identity_plus, jacobian_autograd
from .losses import registration_loss
from .plateau import PlateauRule
from .registration_result import PairRegistration
from .sampling import MaskPointSampler
from .siren import Siren
from .training_state import PairTrainingState, StaleTrainingState, network_digest

# RegistrationConfig fields that do not change what a pair computes (a saved training state is valid across them)
_NOT_IN_STATE_KEY = ("device", "progress_every", "extra")

# A new network's weights come from torch's global generator, seeded per pair: one pair at a time draws them.
_GLOBAL_RNG = threading.Lock()


class RegistrationCancelled(RuntimeError):
    """Raised by :func:`register_pair` when its ``cancel`` signal is set; nothing is returned."""


@dataclass(frozen=True)
class RegistrationProgress:
    """One progress report: ``iteration`` of ``iterations`` done, current loss, seconds so far and left."""

    iteration: int
    iterations: int
    loss: float
    elapsed_s: float
    eta_s: float



def normalized_intensities(volume: Volume, config: RegistrationConfig) -> np.ndarray:
    """The image channel of ``volume`` in [-1, 1] as the config says (quantiles or a fixed window)."""
    if config.normalization == "window":
        return normalize_window(volume.array, *config.window)
    return normalize_quantiles(volume.array, *config.quantiles)


def _to_cpu(value):
    """``value`` (an optimiser state: dicts, lists, tensors, numbers) with every tensor copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _check_inputs(fixed: Volume, moving: Volume, fixed_label: Volume | None, moving_label: Volume | None,
                  mask: Volume | None, blood_pool: Volume | None = None) -> None:
    for volume in (fixed, moving):
        if volume.array.ndim != 3:
            raise InputError(f"{volume.name} must be 3D, got {volume.array.ndim}D")
        volume.require_finite()
    for label, image in ((fixed_label, fixed), (moving_label, moving), (mask, fixed), (blood_pool, fixed)):
        if label is None:
            continue
        image.require_same_grid(label)
        if not np.any(label.array):
            raise InputError(f"{label.name} is empty")


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
            With ``config.tail_average`` n > 1 the returned network is the mean of the weights after the last n
            iterations (or all of them, when fewer were trained).
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
    config = config or RegistrationConfig()
    _check_inputs(fixed, moving, fixed_label, moving_label, mask, blood_pool)
    device = resolve_device(config.device)
    if mask is None:
        if fixed_label is None:
            raise InputError("register_pair needs a sampling 'mask' or a 'fixed_label' to build one")
        mask = sampling_mask(myocardium=fixed_label, myocardium_margin_mm=config.myocardium_margin_mm)
    use_sdf = fixed_label is not None and moving_label is not None
    alpha = config.alpha if use_sdf else 0.0
    coordinates = coordinates or NormalizedCoordinates.around_mask(mask, config.coordinate_margin)

    fixed_channels = [normalized_intensities(fixed, config)]
    moving_channels = [normalized_intensities(moving, config)]
    if alpha > 0:
        fixed_channels.append(sdf_feature(fixed_label, config.sdf_clip_mm).array)
        moving_channels.append(sdf_feature(moving_label, config.sdf_clip_mm).array)
    fixed_sampler = VolumeSampler(fixed_channels, fixed.geometry, device)
    moving_sampler = VolumeSampler(moving_channels, moving.geometry, device)
    points = MaskPointSampler(mask, device)
    pool_sampler = None
    if blood_pool is not None and config.blood_pool_jacobian == "relative":
        pool_sampler = VolumeSampler([np.asarray(blood_pool.array, dtype=np.float32)], blood_pool.geometry, device,
                                     mode="nearest")

    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):  # pairs may be trained on several threads at once
        torch.manual_seed(config.seed)
        network = Siren(config.width, config.depth, config.omega)
    if initial is not None:
        source = initial.network if isinstance(initial, PairRegistration) else initial
        if source.hyperparameters() != network.hyperparameters():
            raise InputError(f"warm start network {source.hyperparameters()} does not match the configuration "
                             f"{network.hyperparameters()}")
        network.load_state_dict(source.state_dict())
    network.to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed + 1)
    use_jacobian = config.regularization_weight > 0
    jacobian_points = min(config.jacobian_points or config.points, config.points)
    scale = coordinates.scale_mm

    losses: list[torch.Tensor] = []
    # the weights after each of the last tail_average iterations, flattened (Polyak averaging)
    tail: deque[torch.Tensor] | None = deque(maxlen=config.tail_average) if config.tail_average > 1 else None
    started = time.perf_counter()
    done = 0  # iterations already trained (a resumed pair)
    # the warm start as it is now (the network trains from here on)
    wants_state = resume_from is not None or save_state is not None
    initial_digest = network_digest(network) if initial is not None and wants_state else None

    @functools.cache
    def state_key() -> dict:
        """What identifies this pair's training state; computed only when a state is saved or resumed (hashing the
        images takes time on a large scan)."""
        return {"fixed": fixed.digest(), "moving": moving.digest(), "mask": mask.digest(),
                "fixed_label": None if fixed_label is None else fixed_label.digest(),
                "moving_label": None if moving_label is None else moving_label.digest(),
                "blood_pool": None if pool_sampler is None else blood_pool.digest(),
                "coordinates": coordinates.to_dict(),
                # the settings that shape the training, not where it runs or what it reports; the device type, as
                # each kind of device has its own generator (and its own rounding)
                "config": {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_STATE_KEY},
                "device": device.type, "initial": initial_digest}

    if resume_from is not None:
        resume_from.require_key(state_key())
        if not 0 < resume_from.iteration < config.iterations or len(resume_from.losses) != resume_from.iteration:
            raise StaleTrainingState(f"a saved training state at iteration {resume_from.iteration} of "
                                     f"{config.iterations} with {len(resume_from.losses)} losses cannot be resumed")
        try:
            network.load_state_dict(resume_from.network)
            optimizer.load_state_dict(resume_from.optimizer)
            generator.set_state(resume_from.generator)
            if tail is not None:
                tail.extend(resume_from.tail.to(device=device, dtype=torch.float32).unbind())
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as error:
            raise StaleTrainingState(f"the saved training state does not fit this pair: {type(error).__name__}: "
                                     f"{error}") from error
        losses = list(resume_from.losses.to(device=device, dtype=torch.float32).unbind())
        done = resume_from.iteration
        started -= resume_from.seconds
    saved_at = time.perf_counter()

    def state() -> PairTrainingState:
        return PairTrainingState(
            key=state_key(), iteration=len(losses),
            network={k: v.detach().cpu().clone() for k, v in network.state_dict().items()},
            optimizer=_to_cpu(optimizer.state_dict()), generator=generator.get_state().cpu(),
            losses=torch.stack(losses).cpu() if losses else torch.zeros(0),
            seconds=time.perf_counter() - started,
            tail=torch.stack(list(tail)).cpu() if tail else torch.zeros(0))

    # Only a warm-started pair, which starts near its answer, may stop at a plateau: a pair trained from scratch
    # levels off after its first fast fall long before it is done (phantom ED -> ES: 1.29 mm dense error at its
    # plateau after 100 iterations, 0.88 mm after its 300).
    plateau = PlateauRule(config.plateau_window, config.plateau_gain) if config.plateau_window and initial else None
    if plateau is not None:  # a resumed pair: the windows it has seen (none of them had converged)
        for end in range(plateau.window, done + 1, plateau.window):
            plateau.converged(losses[:end])

    def report(iteration: int, iterations: int = config.iterations) -> None:
        if progress is None:
            return
        elapsed = time.perf_counter() - started
        loss = float(losses[-1]) if losses else float("nan")
        eta = elapsed / iteration * (iterations - iteration) if iteration else float("nan")
        progress(RegistrationProgress(iteration, iterations, loss, elapsed, eta))

    for iteration in range(done + 1, config.iterations + 1):
        if is_cancelled(cancel):
            if save_state is not None and iteration - 1 > done:
                save_state(state())
            raise RegistrationCancelled(f"registration cancelled at iteration {iteration - 1}")
        if config.local_ncc_mm > 0:  # cubes of local_ncc_points points around random mask points
            group = config.local_ncc_points
            centres = points.sample(config.points // group, generator)
            offsets = (torch.rand((centres.shape[0], group, 3), generator=generator, device=device) - 0.5)
            x_mm = (centres[:, None, :] + config.local_ncc_mm * offsets).reshape(-1, 3)
        else:
            group = 0
            x_mm = points.sample(config.points, generator)
        x_n = coordinates.to_normalized(x_mm)
        determinant = None
        if not use_jacobian:
            u_n = network(x_n)
        else:
            # The penalty is a mean over points; with jacobian_points < points it is estimated on the first
            # (random) jacobian_points of the batch, the rest only needs the plain forward pass.
            with_jacobian = x_n[:jacobian_points]
            if config.jacobian == "analytic":
                u_n, jacobian_u = network.forward_with_jacobian(with_jacobian)
            else:
                u_n, jacobian_u = jacobian_autograd(network, with_jacobian, create_graph=True)
            determinant = determinant_of_identity_plus(jacobian_u)
            if jacobian_points < config.points:
                u_n = torch.cat([u_n, network(x_n[jacobian_points:])])
        fixed_values = fixed_sampler(x_mm)
        moving_values = moving_sampler(x_mm + scale * u_n)
        terms = registration_loss(
            fixed_values[:, 0], moving_values[:, 0],
            fixed_values[:, 1] if alpha > 0 else None, moving_values[:, 1] if alpha > 0 else None,
            determinant, alpha, config.regularization_weight, config.tau, local_group=group,
            blood_pool=None if pool_sampler is None or determinant is None else
            pool_sampler(x_mm[:jacobian_points])[:, 0] > 0.5,
        )
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        losses.append(terms["loss"].detach())
        if tail is not None:
            tail.append(torch.nn.utils.parameters_to_vector(network.parameters()).detach().clone())
        stop = plateau is not None and iteration < config.iterations and plateau.converged(losses)
        if iteration % config.progress_every == 0 or iteration == config.iterations or stop:
            if not torch.isfinite(losses[-1]):
                raise FloatingPointError(f"registration diverged: loss is {float(losses[-1])} at iteration "
                                         f"{iteration}; lower the learning rate")
            report(iteration, iteration if stop else config.iterations)  # a plateau ends the pair here
            if (save_state is not None and not stop and iteration < config.iterations
                    and time.perf_counter() - saved_at >= save_every_s):
                save_state(state())
                saved_at = time.perf_counter()
        if stop:
            break

    if tail:
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(torch.stack(list(tail)).mean(dim=0), network.parameters())
    seconds = time.perf_counter() - started
    history = torch.stack(losses).cpu().numpy().astype(float).tolist() if losses else []
    network.eval()
    return PairRegistration(
        network=network,
        coordinates=coordinates,
        config=config,
        fixed_geometry=fixed.geometry,
        alpha_used=alpha,
        loss_history=history,
        seconds=seconds,
        device=str(device),
    )
