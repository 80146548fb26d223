"""One pair made ready to train: its inputs checked; its image samplers, point sampler, network (warm-started) and
generator on the device; what identifies its training state. Shared by a pair trained alone
(:func:`.pair_registration.register_pair`) and pairs trained together (:func:`.pair_batch.register_pairs_together`).

Convention (design.md): the *fixed* frame is the reference; ``phi(x) = x + u(x)`` maps a fixed-frame point x
(LPS mm) to where that tissue is in the *moving* frame.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np
import torch

from ..core.masks import sampling_mask
from ..core.sdf import sdf_feature
from ..core.vocabulary import InputError
from ..core.volume import Volume
from .config import RegistrationConfig
from .coordinates import NormalizedCoordinates
from .devices import resolve_device
from .intensity import normalize_quantiles, normalize_window
from .interpolation import VolumeSampler
from .registration_result import PairRegistration
from .sampling import MaskPointSampler
from .siren import Siren
from .training_loss import LossSettings
from .training_state import network_digest

# RegistrationConfig fields that do not change what a pair computes, but for rounding (a saved training state is valid
# across them)
NOT_IN_STATE_KEY = ("device", "progress_every", "extra", "compile")

# A new network's weights come from torch's global generator, seeded per pair: one pair at a time draws them.
_GLOBAL_RNG = threading.Lock()


def normalized_intensities(volume: Volume, config: RegistrationConfig) -> np.ndarray:
    """The image channel of ``volume`` in [-1, 1] as the config says (quantiles or a fixed window)."""
    if config.normalization == "window":
        return normalize_window(volume.array, *config.window)
    return normalize_quantiles(volume.array, *config.quantiles)


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


@dataclass
class PreparedPair:
    """A pair ready to train (see :func:`prepare_pair`)."""

    fixed: Volume
    moving: Volume
    fixed_label: Volume | None
    moving_label: Volume | None
    mask: Volume
    blood_pool: Volume | None
    config: RegistrationConfig
    device: torch.device
    alpha: float                          # the SDF weight used (0 when a label is missing)
    coordinates: NormalizedCoordinates
    centre: torch.Tensor                  # the coordinates' centre (3,) and scale () on the device (float32)
    scale: torch.Tensor
    fixed_sampler: VolumeSampler          # image (and SDF) channels of the fixed frame
    moving_sampler: VolumeSampler
    pool_sampler: VolumeSampler | None    # the LV blood pool, for its relative Jacobian penalty
    points: MaskPointSampler
    network: Siren                        # initialised (seed) or warm-started, on the device
    generator: torch.Generator            # draws the training points
    settings: LossSettings
    warm_started: bool
    initial_digest: str | None            # the warm start's weights, when a state may be saved or resumed

    @functools.cached_property
    def state_key(self) -> dict:
        """What identifies this pair's training state; computed only when a state is saved or resumed (hashing the
        images takes time on a large scan)."""
        config = self.config
        return {"fixed": self.fixed.digest(), "moving": self.moving.digest(), "mask": self.mask.digest(),
                "fixed_label": None if self.fixed_label is None else self.fixed_label.digest(),
                "moving_label": None if self.moving_label is None else self.moving_label.digest(),
                "blood_pool": None if self.pool_sampler is None else self.blood_pool.digest(),
                "coordinates": self.coordinates.to_dict(),
                # the settings that shape the training, not where it runs or what it reports; the device type, as
                # each kind of device has its own generator (and its own rounding)
                "config": {k: v for k, v in config.to_dict().items() if k not in NOT_IN_STATE_KEY},
                "device": self.device.type, "initial": self.initial_digest}

    def sample_points(self) -> torch.Tensor:
        """One iteration's training points (``config.points``, 3) in the fixed frame, LPS mm: uniform in the mask,
        or with local NCC cubes of ``local_ncc_points`` points around random mask points."""
        config = self.config
        if config.local_ncc_mm > 0:
            group = config.local_ncc_points
            centres = self.points.sample(config.points // group, self.generator)
            offsets = (torch.rand((centres.shape[0], group, 3), generator=self.generator, device=self.device) - 0.5)
            return (centres[:, None, :] + config.local_ncc_mm * offsets).reshape(-1, 3)
        return self.points.sample(config.points, self.generator)

    def result(self, network: Siren, losses: list[torch.Tensor], seconds: float) -> PairRegistration:
        """The finished pair: ``network`` (set to evaluation) with its loss history."""
        history = torch.stack(losses).cpu().numpy().astype(float).tolist() if losses else []
        network.eval()
        return PairRegistration(network=network, coordinates=self.coordinates, config=self.config,
                                fixed_geometry=self.fixed.geometry, alpha_used=self.alpha, loss_history=history,
                                seconds=seconds, device=str(self.device))


def prepare_pair(fixed: Volume, moving: Volume, *, fixed_label: Volume | None, moving_label: Volume | None,
                 mask: Volume | None, blood_pool: Volume | None, config: RegistrationConfig | None,
                 initial: PairRegistration | Siren | None, coordinates: NormalizedCoordinates | None,
                 wants_state: bool) -> PreparedPair:
    """Check a pair's inputs and set it up on its device (arguments as :func:`.pair_registration.register_pair`;
    ``wants_state``: a training state will be saved or resumed, so the warm start's digest is taken)."""
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
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed + 1)
    return PreparedPair(
        fixed=fixed, moving=moving, fixed_label=fixed_label, moving_label=moving_label, mask=mask,
        blood_pool=blood_pool, config=config, device=device, alpha=alpha, coordinates=coordinates,
        centre=torch.as_tensor(coordinates.centre_mm, dtype=torch.float32, device=device),
        scale=torch.as_tensor(coordinates.scale_mm, dtype=torch.float32, device=device),
        fixed_sampler=fixed_sampler, moving_sampler=moving_sampler, pool_sampler=pool_sampler, points=points,
        network=network, generator=generator, settings=LossSettings.of(config, alpha),
        warm_started=initial is not None,
        # the warm start as it is now (the network trains from here on)
        initial_digest=network_digest(network) if initial is not None and wants_state else None)
