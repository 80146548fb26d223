"""Whole-cycle registration: the reference frame tracked through every frame, written into a run folder.

Maps (the project's one convention): ``phi_t(x)`` takes a point x of the reference frame K (LPS mm) to
where that tissue is in frame t.

- ``non-sequential``: one SIREN per frame, K -> t, trained directly.
- ``sequential``: one SIREN per step, t-1 -> t (its own frame pair), and ``phi_t = step_t o phi_{t-1}``.
  The composition is evaluated exactly at the evaluated nodes of the field grid (each step's network is applied
  to the previous positions; :mod:`field_region`: a heart region's core grown by one node, whose values the rest
  of its margin extends), so the written transform of frame t is the composed map there.

Frames are processed around the cycle starting after the reference: K+1, K+2, ..., T-1, 0, ..., K-1 (a cardiac
cycle is periodic), each network warm-started from the previous one (the paper: 2000 iterations for the first
pair, 1000 after). With ``chains`` 2 (non-sequential) the second half of that order runs backwards from K-1 as a
second chain at the same time, its first pair warm-started from the first pair of the run. Every frame is seeded
with ``seed + t`` and trained with a torch thread count fixed by its place (the first pair: all threads), so a
resumed run (which reloads the previous frame's checkpoint and, in sequential mode, replays the finished steps;
a pair stopped part-way goes on from the training state it saved: :mod:`..engine.training_state`) ends with the
same results as an uninterrupted one on the same device and machine.

Per frame the run folder (:mod:`run_folder`) receives the transform (ITK displacement field on the field grid:
the reference grid cropped to the sampling mask and landmarks plus a margin, or the whole reference grid, and
tapered to zero at its edge so that ITK and Slicer agree everywhere: :mod:`field_region`),
the reference myocardium propagated into frame t (through the written field's inverse), the checkpoint,
the landmark positions (the written field applied to the reference landmarks, so that SimpleITK or Slicer
applying the transform file reproduces them) and finally the frame's record with its metrics. In the
non-sequential mode on a GPU or with two chains, a frame's files are written on a writer thread while training
goes on (:mod:`.frame_finisher`).
"""

from __future__ import annotations

import math
import platform
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch

from .. import __version__
from ..core.geometry import Geometry
from ..core.masks import sampling_mask
from ..core.vocabulary import CancelSignal, InputError, RunState, is_cancelled
from ..core.volume import Volume
from ..engine.coordinates import NormalizedCoordinates
from ..engine.devices import resolve_device
from ..engine.displacement_map import InverseNotConverged, SampledDisplacementMap
from ..engine.pair_batch import PairJob, register_pairs_together
from ..engine.pair_registration import RegistrationCancelled, RegistrationProgress, register_pair
from ..engine.registration_result import PairRegistration
from ..engine.threads import set_torch_threads, torch_threads
from ..engine.training_state import PairTrainingState, StaleTrainingState
from ..fileio.displacement_field import write_displacement_field
from ..fileio.landmarks import Landmarks, Trajectories, read_markups_json, write_markups_json, write_trajectories_csv
from .eta import EtaClock
from .field_region import FieldRegion, field_region
from .frame_finisher import FrameFinisher
from .frame_metrics import frame_record
from .inputs import CycleInputs
from .request import CycleConfig, RunRequest, option_name
from .run_folder import CARRIED_LABELS, FrameRecord, RunFolder
from .run_session import RunSession

# How often a pair in training saves its state (and on cancel): a crash loses at most this much of a pair's training.
# One save of the paper's network with Adam's two moments is about 3 MB and milliseconds.
TRAINING_STATE_EVERY_S = 30.0


class CycleFailed(RuntimeError):
    """A run that had started failed; the original error is the ``__cause__``. The run folder keeps every
    finished frame, ``run.json`` says ``failed`` and why, and resuming the run continues it."""


@dataclass
class CycleResult:
    """What :func:`register_cycle` ended with: ``status`` is :attr:`RunState.FINISHED` or ``CANCELLED``."""

    run: RunFolder
    status: RunState
    records: dict[int, FrameRecord]


def processing_order(frame_count: int, reference_frame: int) -> list[int]:
    """Frames in the order they are registered: around the cycle from the one after the reference."""
    return [(reference_frame + k) % frame_count for k in range(1, frame_count)]


def chains_of(order: list[int], chains: int, mode: str) -> list[list[int]]:
    """The frames each chain registers, in its order. One chain: ``order``. Two (non-sequential mode, at least three
    frames): the first half of ``order`` (forwards from the frame after the reference; its first pair is trained
    from scratch) and the rest backwards from the frame before the reference (warm-started from that first pair)."""
    if mode != "non-sequential" or chains == 1 or len(order) < 3:
        return [list(order)]
    half = (len(order) + 1) // 2
    return [list(order[:half]), list(order[half:][::-1])]


def finished_prefix(chain: list[int], records: dict) -> int:
    """How many frames at the start of ``chain`` are finished (a resumed chain goes on after them)."""
    count = 0
    while count < len(chain) and chain[count] in records:
        count += 1
    return count


def cycle_sampling_mask(inputs: CycleInputs, config: CycleConfig) -> Volume:
    """Where every pair of the run samples (reference grid): the reference heart mask, else the reference
    myocardium grown by the configured margin."""
    registration = config.registration
    return sampling_mask(heart=inputs.heart,
                         myocardium=None if inputs.heart is not None else inputs.myocardium[inputs.reference_frame],
                         dilation_voxels=registration.mask_dilation_voxels,
                         myocardium_margin_mm=registration.myocardium_margin_mm)


def cycle_field_region(inputs: CycleInputs, mask: Volume, config: CycleConfig,
                       grid: Geometry | None = None) -> FieldRegion:
    """The field grid and taper of the run (:mod:`.field_region`): around ``mask`` (:func:`cycle_sampling_mask`)
    and the reference landmarks; ``grid``: the one a resumed run started with."""
    landmarks = None if inputs.landmarks is None else inputs.landmarks.points_lps
    return field_region(inputs.reference.geometry, mask, landmarks, region=config.field_region,
                        margin_mm=config.field_margin_mm, grid=grid)


def _versions() -> dict:
    return {"inr_cardiac_registration": __version__, "torch": torch.__version__,
            "SimpleITK": sitk.Version_VersionString(), "numpy": np.__version__, "python": platform.python_version()}


@dataclass
class _Tracking:
    """Where the reference frame's points are in the last finished frame (sequential mode), and the pair
    network to warm-start from."""

    previous: PairRegistration | None = None
    positions: np.ndarray | None = None      # the evaluated field-grid nodes mapped to the last frame (N, 3) LPS mm
    mask: Volume | None = None               # the reference sampling mask carried into the last frame


class _CycleRun:
    """The frames of one execution (fresh or resumed) of :func:`register_cycle`: the pairs, the maps they add up
    to, and the files each frame writes. The bookkeeping is :class:`RunSession`'s."""

    def __init__(self, inputs: CycleInputs, request: RunRequest, session: RunSession, overlap: bool = True,
                 carried: dict[str, Volume] | None = None, batch_chains: bool | None = None) -> None:
        self.inputs = inputs
        self.carried = dict(carried or {})
        for name, label in self.carried.items():
            if name not in CARRIED_LABELS:
                raise InputError(f"unknown carried label {name!r}; one of {CARRIED_LABELS}")
            inputs.reference.require_same_grid(label)
        self.carried_digests = {name: label.digest() for name, label in self.carried.items()}
        self.config = request.settings
        # Non-sequential mode: frames' files are written on a writer thread while training goes on where that
        # takes no CPU threads from training: on a GPU, or beside two chains (each of which trains on its share of
        # the CPU threads). With one chain on a CPU, training keeps every thread and each frame is written inline
        # (measured on the demo, 2 cores: 58.3 s inline against 60.9 s with one thread each for training and
        # writer). The first pair (from scratch, alone) takes all threads. Every pair's count is fixed by its
        # frame (the same on resume): results depend on it in the last bits.
        self.device = resolve_device(self.config.registration.device)
        self.order = processing_order(inputs.frame_count, inputs.reference_frame)
        self.chains = chains_of(self.order, self.config.chains, self.config.mode)
        self.overlap = (overlap and self.config.mode == "non-sequential"
                        and (self.device.type != "cpu" or len(self.chains) > 1))
        self.threads = torch.get_num_threads()
        shared = self.overlap and self.device.type == "cpu"
        self.writer_threads = max(1, self.threads // (len(self.chains) + 1)) if shared else self.threads
        self.warm_start_threads = (max(1, (self.threads - self.writer_threads) // len(self.chains)) if shared
                                   else self.threads)
        # two chains on a GPU: each round's two pairs as one batched network (engine/pair_batch.py), on one thread
        self.batch_chains = len(self.chains) > 1 and (self.device.type == "cuda" if batch_chains is None
                                                      else batch_chains)
        self.lock = threading.RLock()  # the clock, the frames left, the records
        self.stop = threading.Event()  # one chain failed or stopped: the other stops too
        self.untrained: set[int] = set()
        self.session = session
        self.run = session.run
        self.reference = inputs.reference_frame
        self.mask = cycle_sampling_mask(inputs, self.config)
        self.coordinates = NormalizedCoordinates.around_mask(self.mask, self.config.registration.coordinate_margin)
        stored = session.run.read_run_info().get("field_geometry") if session.run.exists() else None
        self.region = cycle_field_region(inputs, self.mask, self.config,
                                         None if stored is None else Geometry.from_dict(stored))
        self.grid = self.region.grid
        # where the maps are evaluated: a heart region's core grown by one node (the rest of its margin extends
        # their values), else every node
        self.core_only = self.config.field_region == "heart"
        self.evaluated = (self.region.evaluated_points() if self.core_only
                          else self.grid.voxel_centres_physical().reshape(-1, 3))
        # the sampling-mask voxels as indices into the field grid's nodes (the field grid holds them all: each
        # reference voxel centre is one of its nodes)
        mask_mm = inputs.reference.geometry.index_to_physical(np.argwhere(np.asarray(self.mask.array) > 0)[:, ::-1])
        self.mask_ijk = self.region.nodes_at(mask_mm)  # (i, j, k) on the field grid
        self.tracking = _Tracking()
        self.clock = EtaClock()
        self.last_finished: int | None = None
        self.margin_warned = False

    @property
    def grids(self) -> dict[str, Geometry]:
        """The grids ``run.json`` records and a resume must find again."""
        return {"geometry": self.inputs.reference.geometry, "field_geometry": self.grid}

    def details(self, warnings_text: list[str]) -> dict:
        """What ``run.json`` records besides the request."""
        return {"order": self.order, "chain_order": self.chains,
                **{key: grid.to_dict() for key, grid in self.grids.items()},
                "device": str(self.device), "torch_threads": self.threads,
                **({"warm_start_threads": self.warm_start_threads, "writer_threads": self.writer_threads}
                   if self.overlap else {}), "batched_chains": self.batch_chains, "versions": _versions(),
                "warnings": list(warnings_text)}

    def iterations_for(self, frame: int) -> int:
        registration = self.config.registration
        return registration.iterations if self.order[0] == frame else registration.warm_start_iterations

    def eta_seconds(self) -> float:
        """Seconds left: per chain, the iterations of its pairs still to train (a warm-started pair's budget times
        the share of it such pairs used so far, as the plateau rule may end them early; less what a pair in
        training has done) and each frame's measured overhead (its outputs inline, or waiting for the writer); the
        chains run at once, so the longest one counts, after the first pair while it trains alone."""
        with self.lock:
            share = self.clock.warm_share()

            def left(frames) -> float:
                return sum(max(0.0, self.iterations_for(t) * (1.0 if t == self.order[0] else share)
                               - self.clock.running.get(t, (0, 0.0))[0]) for t in frames if t in self.untrained)

            first = [self.order[0]] if self.order[0] in self.untrained else []
            chains = [[t for t in chain if t in self.untrained and t not in first] for chain in self.chains]
            longest = max(chains, key=left)
            return (self.clock.seconds_left(left(first), len(first))
                    + self.clock.seconds_left(left(longest), len(longest)))

    def stop_requested(self) -> bool:
        return self.stop.is_set() or self.session.cancel_requested()

    # --- outputs ---------------------------------------------------------------------------------------
    def write_trajectories(self, records: dict[int, FrameRecord]) -> None:
        if self.inputs.landmarks is None:
            return
        frames = sorted(records)
        points = np.stack([read_markups_json(self.run.landmarks_path(t)).points_lps for t in frames])
        write_trajectories_csv(self.run.trajectories_csv, Trajectories(tuple(frames), self.inputs.landmarks.labels,
                                                                       points))

    def field_of(self, displacement: np.ndarray) -> np.ndarray:
        """The untapered field (k, j, i, 3) on the field grid from u at :attr:`evaluated` (N, 3)."""
        if self.core_only:
            return self.region.extend_evaluated(displacement)
        return displacement.reshape(*self.grid.array_shape, 3)

    def write_frame(self, frame: int, displacement: np.ndarray, result: PairRegistration | None, pair: str,
                    seconds: float) -> tuple[FrameRecord, SampledDisplacementMap]:
        """Write every file of ``frame`` and, last, its record. ``displacement``: u at :attr:`evaluated`.

        The field is tapered to zero at its grid's edge (:mod:`.field_region`; unchanged on the sampling mask and
        the landmarks). Landmarks, the propagated label and the folding (det grad phi at the sampling-mask nodes,
        central differences one grid spacing wide) are derived from the written field itself (trilinear between its
        nodes, as ITK and Slicer apply it), so every output agrees with the transform file."""
        run, inputs = self.run, self.inputs
        frame_grid = inputs.frames[frame].geometry
        u = self.region.taper(self.field_of(displacement))
        files = {"transform": write_displacement_field(run.transform_path(frame), u, self.grid)}
        field_map = SampledDisplacementMap(u, self.grid)
        reference_myocardium = inputs.myocardium[self.reference]
        as_bytes = reference_myocardium.with_array(reference_myocardium.array.astype(np.uint8))
        unresolved: dict[str, str] = {}
        if frame == self.reference:
            labels = [as_bytes, *self.carried.values()]
            determinants = np.ones(len(self.mask_ijk))
        else:
            determinants = np.linalg.det(field_map.deformation_gradient_at_nodes(self.mask_ijk))
            # one inverse map for the myocardium and the labels carried with it (cavity, segments)
            labels = field_map.propagate_fixed_labels([as_bytes, *self.carried.values()], frame_grid,
                                                      unresolved=unresolved)
            if as_bytes.name in unresolved:
                warnings.warn(InverseNotConverged(f"frame {frame}: {unresolved[as_bytes.name]}", as_bytes.name),
                              stacklevel=2)
        propagated = np.asarray(labels[0].array)
        Volume(propagated, frame_grid).write(run.label_path(frame))
        files["label"] = run.label_path(frame)
        for name, carried in zip(self.carried, labels[1:], strict=True):
            files[name] = Volume(np.asarray(carried.array), frame_grid).write(run.carried_path(name, frame))
        if result is not None:
            files["checkpoint"] = result.save(run.checkpoint_path(frame))
        landmarks = None if inputs.landmarks is None else field_map.map_points(inputs.landmarks.points_lps)
        if landmarks is not None:
            files["landmarks"] = write_markups_json(run.landmarks_path(frame),
                                                    Landmarks(inputs.landmarks.labels, landmarks),
                                                    name=f"Landmarks frame {frame}")
        record = frame_record(inputs, frame, propagated, landmarks, determinants, pair,
                              {key: str(path.relative_to(run.root)) for key, path in files.items()})
        if result is not None:
            record.final_loss = result.final_loss
            record.iterations = len(result.loss_history)
            record.alpha_used = result.alpha_used
        record.seconds = seconds
        record.margin_folds = self.region.margin_folds(u)
        record.carried = dict(self.carried_digests)
        record.unresolved = unresolved
        run.write_frame_record(record)
        return record, field_map

    # --- one frame -------------------------------------------------------------------------------------
    def pair_for(self, frame: int) -> int:
        """The fixed frame of ``frame``'s pair."""
        if self.config.mode == "non-sequential":
            return self.reference
        return self.order[self.order.index(frame) - 1] if frame != self.order[0] else self.reference

    def advance(self, frame: int, result: PairRegistration) -> np.ndarray:
        """Apply ``frame``'s pair to the tracked points: u at :attr:`evaluated` of the map reference -> ``frame``.
        Sequential mode: updates the tracking state (the composed positions, the pair to warm-start from)."""
        tracking = self.tracking
        if self.config.mode == "non-sequential":
            return result.displacement_at(self.evaluated)
        positions = self.evaluated if tracking.positions is None else tracking.positions
        moved = result.map_points(positions)
        tracking.positions = moved
        tracking.previous = result
        return moved - self.evaluated

    def carry_mask(self, frame: int, field_map: SampledDisplacementMap) -> None:
        """Sequential mode: the reference sampling mask carried into ``frame`` (where the next pair samples)."""
        if self.config.mode == "sequential":
            as_bytes = self.mask.with_array(self.mask.array.astype(np.uint8))
            carried = field_map.propagate_fixed_label(as_bytes, self.inputs.frames[frame].geometry)
            self.tracking.mask = carried.with_array(carried.array > 0, name=f"sampling mask carried to frame {frame}")

    def pair_job(self, frame: int, initial: PairRegistration | None) -> PairJob:
        """What ``frame``'s pair is trained with: its images, labels, mask, configuration (seeded by the frame), warm
        start (None: from scratch), progress events and where its training state is saved."""
        inputs, clock = self.inputs, self.clock
        fixed = self.pair_for(frame)
        mask = self.mask if fixed == self.reference or self.tracking.mask is None else self.tracking.mask
        registration = self.config.registration
        config = registration.replace(iterations=self.iterations_for(frame), seed=registration.seed + frame)

        def on_progress(event: RegistrationProgress) -> None:
            with self.lock:
                clock.running[frame] = (event.iteration, event.elapsed_s)
            self.session.emit("iteration", frame=frame, iteration=event.iteration, iterations=event.iterations,
                              loss=event.loss, eta_s=self.eta_seconds())

        state_path = self.run.training_state_path(frame)

        def save_state(state: PairTrainingState) -> None:  # best effort: the pair goes on (or stops) without it
            try:
                state.save(state_path)
            except OSError as error:
                self.session.emit("warning", frame=frame, text=f"frame {frame}: its training state could not be "
                                  f"saved ({error}); a resume would train this pair from its start")
                return
            self.session.emit("state_saved", frame=frame, iteration=state.iteration)

        return PairJob(inputs.frames[fixed], inputs.frames[frame], config=config,
                       fixed_label=inputs.myocardium.get(fixed), moving_label=inputs.myocardium.get(frame),
                       mask=mask, blood_pool=inputs.blood_pool if fixed == self.reference else None,
                       initial=initial, coordinates=self.coordinates, progress=on_progress, save_state=save_state)

    def frame_trained(self, frame: int, result: PairRegistration, warm_started: bool) -> None:
        """Count ``frame``'s training in the clock (the ETA's record)."""
        with self.lock:
            self.clock.running.pop(frame, None)
            self.clock.iterations_done += len(result.loss_history)  # fewer than planned after a plateau
            self.clock.training_seconds += result.seconds
            if warm_started:
                self.clock.warm_planned += self.iterations_for(frame)
                self.clock.warm_used += len(result.loss_history)
            self.untrained.discard(frame)

    def train_frame(self, frame: int, initial: PairRegistration | None) -> PairRegistration:
        """Train ``frame``'s pair, warm-started from ``initial`` (None: from scratch), from the training state it
        saved when it was stopped, if any. Called by one chain's thread."""
        job = self.pair_job(frame, initial)
        state_path = self.run.training_state_path(frame)

        def train(resume_from: PairTrainingState | None) -> PairRegistration:
            if resume_from is not None:
                self.session.emit("frame_resumed", frame=frame, iteration=resume_from.iteration,
                                  iterations=job.config.iterations)
            return register_pair(**job.inputs(), progress=job.progress, cancel=self.stop_requested,
                                 resume_from=resume_from, save_state=job.save_state,
                                 save_every_s=TRAINING_STATE_EVERY_S)

        threads = self.threads if frame == self.order[0] else self.warm_start_threads  # the same on resume
        try:
            with torch_threads(threads):
                try:  # from the state the pair saved when it was stopped, if any
                    result = train(PairTrainingState.load(state_path) if state_path.exists() else None)
                except StaleTrainingState as stale:  # made for other inputs, warm start or device, or unreadable
                    self.session.emit("warning", frame=frame, text=f"frame {frame} starts over: {stale}")
                    state_path.unlink(missing_ok=True)
                    result = train(None)
        except BaseException:
            with self.lock:
                self.clock.running.pop(frame, None)
            raise
        self.frame_trained(frame, result, initial is not None)
        return result

    def train_frames_together(self, frames: list[int], initials: list[PairRegistration | None],
                              trained: Callable[[int, PairRegistration], None]) -> None:
        """Train the pairs of ``frames`` (one per chain) as one batched network (:mod:`..engine.pair_batch`), each
        warm-started from its ``initials``; ``trained`` gets each frame and its pair as soon as it is done (before a
        cancel stops the others). A frame with a saved training state is resumed alone first."""
        if len(frames) == 1 or any(self.run.training_state_path(frame).exists() for frame in frames):
            for frame, initial in zip(frames, initials, strict=True):
                trained(frame, self.train_frame(frame, initial))
            return

        def finished(index: int, result: PairRegistration) -> None:
            self.frame_trained(frames[index], result, initials[index] is not None)
            trained(frames[index], result)

        jobs = [self.pair_job(frame, initial) for frame, initial in zip(frames, initials, strict=True)]
        try:
            with torch_threads(self.threads):
                register_pairs_together(jobs, cancel=self.stop_requested, save_every_s=TRAINING_STATE_EVERY_S,
                                        finished=finished)
        finally:
            with self.lock:
                for frame in frames:
                    self.clock.running.pop(frame, None)

    def hand_over(self, frame: int, result: PairRegistration, finisher: FrameFinisher) -> None:
        """Give ``frame``'s trained pair to ``finisher`` for its outputs, and clock what that adds to training."""
        handed = time.perf_counter()
        finisher.submit(lambda: self.finish_frame(frame, result))
        with self.lock:  # what each frame adds to training: its outputs inline, or waiting for the writer
            self.clock.overhead_seconds.append(time.perf_counter() - handed)

    def run_chain(self, frames: list[int], initial: PairRegistration | None,
                  finisher: FrameFinisher) -> PairRegistration | None:
        """Train ``frames`` in order, each warm-started from the one before (the first from ``initial``), handing
        each to ``finisher``; returns the last pair (``initial`` when there is none)."""
        previous = initial
        for frame in frames:
            if self.stop_requested():
                raise RegistrationCancelled(f"cancelled before frame {frame}")
            result = self.train_frame(frame, previous)
            self.hand_over(frame, result, finisher)
            previous = self.tracking.previous if self.config.mode == "sequential" else result
        return previous

    def run_chains_together(self, todo: list[list[int]], starts: list[PairRegistration | None],
                            finisher: FrameFinisher) -> None:
        """The second chain on a thread of its own, the first on this one. The first to fail or stop stops the
        other (also an interrupt of this thread while it waits); an error wins over a cancel."""
        errors: list[BaseException] = []

        def second() -> None:
            try:
                self.run_chain(todo[1], starts[1], finisher)
            except BaseException as error:  # noqa: BLE001 - handed to the calling thread
                errors.append(error)
                self.stop.set()

        thread = threading.Thread(target=second, name="chain-2")
        thread.start()
        try:
            self.run_chain(todo[0], starts[0], finisher)
        except BaseException as error:  # noqa: BLE001 - raised below, after the other chain stopped
            errors.insert(0, error)
            self.stop.set()
        finally:
            try:
                thread.join()
            except BaseException:  # interrupted while waiting: stop the other chain, wait for it, go on stopping
                self.stop.set()
                thread.join()
                raise
        if errors:
            real = [error for error in errors if not isinstance(error, RegistrationCancelled)]
            raise (real or errors)[0]

    def run_chains_batched(self, todo: list[list[int]], starts: list[PairRegistration | None],
                           finisher: FrameFinisher) -> None:
        """The chains in lockstep on this thread: each round trains the next frame of every chain as one batched
        network (on a GPU: the network's launches of one pair for two), handing each frame to ``finisher`` as soon
        as its pair is done."""
        previous = list(starts)
        done = [0] * len(todo)
        while any(count < len(chain) for count, chain in zip(done, todo, strict=True)):
            chains = [index for index, chain in enumerate(todo) if done[index] < len(chain)]
            frames = [todo[index][done[index]] for index in chains]
            if self.stop_requested():
                raise RegistrationCancelled(f"cancelled before frames {frames}")

            def trained(frame: int, result: PairRegistration, chains=chains, frames=frames) -> None:
                index = chains[frames.index(frame)]
                self.hand_over(frame, result, finisher)
                previous[index] = result
                done[index] += 1

            self.train_frames_together(frames, [previous[index] for index in chains], trained)

    def finish_frame(self, frame: int, result: PairRegistration) -> FrameRecord:
        """Everything after ``frame``'s training: its map at the field nodes and its files (:meth:`write_frame`).
        The record's seconds: the pair's training plus this work (not the time it waited for the writer)."""
        started = time.perf_counter()
        displacement = self.advance(frame, result)
        record, field_map = self.write_frame(frame, displacement, result, f"{self.pair_for(frame)}->{frame}",
                                             result.seconds + time.perf_counter() - started)
        self.carry_mask(frame, field_map)
        self.run.training_state_path(frame).unlink(missing_ok=True)
        return record

    def replay(self, frame: int) -> None:
        """Rebuild the tracking state after a finished ``frame`` from its checkpoint (resume)."""
        result = PairRegistration.load(self.run.checkpoint_path(frame), self.device)
        displacement = self.advance(frame, result)
        if self.config.mode == "sequential" and frame == self.last_finished:
            tapered = self.region.taper(self.field_of(displacement))  # as written
            self.carry_mask(frame, SampledDisplacementMap(tapered, self.grid))

    # --- the cycle -------------------------------------------------------------------------------------
    def frame_written(self, record: FrameRecord, records: dict[int, FrameRecord]) -> None:
        """A frame's files are all written: record it in ``metrics.csv`` and the trajectories and tell the user
        (called by the frame writer, one frame at a time)."""
        frame = record.frame
        with self.lock:
            records[frame] = record
            self.run.write_metrics(list(records.values()))
            self.write_trajectories(records)
            done = len(records)
            warn = record.margin_folds and not self.margin_warned  # once per run; every count is in its record
            self.margin_warned = self.margin_warned or bool(warn)
        if warn:
            self.session.emit("warning", frame=frame, text=(
                f"frame {frame}: the written field folds at {record.margin_folds} nodes of its margin (the "
                f"displacement there exceeds the {self.config.field_margin_mm:g} mm over which it falls to zero); "
                f"the motion of the heart is unaffected, content placed there in Slicer may fold: raise "
                f"{option_name('field_margin_mm')} (other frames: margin_folds in their records and summary.txt)"))
        self.session.emit("frame_finished", frame=frame, done=done, frames=self.inputs.frame_count,
                          eta_s=self.eta_seconds(), **{k: v for k, v in record.metrics_row().items() if k != "frame"})

    def chain_start(self, index: int, finished: int, records: dict[int, FrameRecord]) -> PairRegistration | None:
        """The pair chain ``index`` warm-starts from after its first ``finished`` frames: the last of them, else
        (second chain) the first pair of the run once it is finished (in ``records``), else None."""
        chain = self.chains[index]
        if finished:
            source = chain[finished - 1]
        elif index > 0 and self.order[0] in records:
            source = self.order[0]
        else:
            return None
        return PairRegistration.load(self.run.checkpoint_path(source), self.device)

    def execute(self, records: dict[int, FrameRecord]) -> CycleResult:
        run, inputs = self.run, self.inputs
        done = [finished_prefix(chain, records) for chain in self.chains]
        sequential = self.config.mode == "sequential"
        self.last_finished = self.order[done[0] - 1] if done[0] else None
        if self.reference not in records:
            zero = np.zeros_like(self.evaluated)
            records[self.reference] = self.write_frame(self.reference, zero, None, "", math.nan)[0]
        for chain, count in zip(self.chains, done, strict=True):
            for frame in chain[count:]:  # frames after a gap in their chain are redone: no longer finished
                if records.pop(frame, None) is not None:
                    run.record_path(frame).unlink(missing_ok=True)
        for frame in records:  # a finished frame's pair needs no training state (left by a crash after its record)
            run.training_state_path(frame).unlink(missing_ok=True)
        if sequential:
            for frame in self.order[:done[0]]:
                self.replay(frame)
            starts = [self.tracking.previous]
        else:
            starts = [self.chain_start(index, count, records) for index, count in enumerate(done)]
        todo = [chain[count:] for chain, count in zip(self.chains, done, strict=True)]
        self.untrained = {frame for frames in todo for frame in frames}
        self.session.emit("started", frames=inputs.frame_count, reference_frame=self.reference, order=self.order,
                          chains=self.chains, finished=sorted(records),
                          todo=[t for t in self.order if t in self.untrained],
                          iterations_total=sum(self.iterations_for(t) for t in self.untrained))
        run.write_metrics(list(records.values()))
        self.write_trajectories(records)
        with FrameFinisher(self.overlap, lambda record: self.frame_written(record, records),
                           lambda: set_torch_threads(self.writer_threads), in_flight=len(self.chains),
                           stops=(RegistrationCancelled,)) as finisher:
            if len(todo) == 1:
                self.run_chain(todo[0], starts[0], finisher)
            else:
                if done[0] == 0 and todo[0]:  # the first pair, from scratch and alone; the second chain starts from it
                    starts[0] = self.run_chain(todo[0][:1], None, finisher)
                    todo[0] = todo[0][1:]
                    starts[1] = starts[1] if done[1] else starts[0]
                if self.batch_chains:
                    self.run_chains_batched(todo, starts, finisher)
                else:
                    self.run_chains_together(todo, starts, finisher)
        return CycleResult(run, RunState.FINISHED, records)


def register_cycle(inputs: CycleInputs, request: RunRequest | CycleConfig, run_dir, *, resume: bool = False,
                   warnings_text: list[str] | None = None, progress: Callable[[dict], None] | None = None,
                   cancel: CancelSignal = None, lock_wait_s: float = 0.0,
                   lock_waiting: Callable[[str], None] | None = None, overlap: bool = True,
                   carried_labels: dict[str, Volume] | None = None, batch_chains: bool | None = None) -> CycleResult:
    """Register the reference frame to every frame of ``inputs`` and write the run folder ``run_dir``.

    Args:
        inputs: checked inputs (:func:`cycle.inputs.build_cycle_inputs` or :func:`cycle.inputs.read_cycle_inputs`);
            ``inputs.reference_frame`` must equal the request's.
        request: the :class:`RunRequest` (its input files are recorded in ``run.json`` and compared on resume), or
            just the :class:`CycleConfig` for inputs made in memory.
        run_dir: the run folder; it must be new or empty, or hold this run when ``resume`` is True (then the
            finished frames are kept and the rest is computed, with the same results as an uninterrupted run;
            ``resume`` with a new folder simply starts the run).
        warnings_text: warnings met while reading the inputs, recorded in ``run.json``.
        progress: called with every event written to ``progress.jsonl`` (a dict, see
            :meth:`RunFolder.append_event`).
        cancel: a ``threading.Event`` or callable; when set (or when the run folder's ``cancel`` file appears)
            the run stops after the frame files already written, records a ``cancelled`` event and returns
            with ``status == RunState.CANCELLED``.
        lock_wait_s: while another process writes ``run_dir`` (it holds the folder's lock), wait up to this many
            seconds for it to end (``lock_waiting`` is told who holds it), then raise :class:`file_lock.LockBusy`
            (nothing written); a cancel while waiting raises it at once.
        overlap: non-sequential mode, on a GPU or with two chains: write each frame's files on a writer thread
            while training goes on (:mod:`.frame_finisher`). On a CPU the chains then train with part of the
            threads, which changes results in the last bits; with one thread the files are the same as without it.
        batch_chains: two chains (``chains`` 2): train each round's two pairs as one batched network, in lockstep on
            one thread (:mod:`..engine.pair_batch`; equal to pairs trained apart within float rounding), instead of
            one thread per chain. Default: on a GPU, where it saves kernel launches. A round resumed from a saved
            training state is trained pair by pair, so a resumed run equals the uninterrupted one within rounding.

    Raises InputError for inconsistent inputs or settings (before writing anything); an error once the run has
    started is recorded as a ``failed`` event and status in ``run.json`` and raised as :class:`CycleFailed`.
    """
    request = request if isinstance(request, RunRequest) else RunRequest(settings=request)
    if request.settings.reference_frame != inputs.reference_frame:
        raise InputError(f"the request's reference frame {request.settings.reference_frame} differs from the inputs' "
                         f"{inputs.reference_frame}", option="reference_frame")
    inputs.validate()
    session = RunSession(RunFolder(run_dir), request, inputs.frame_count, progress, cancel)
    cycle = _CycleRun(inputs, request, session, overlap, carried_labels, batch_chains)
    session.check(resume, cycle.grids)  # bad settings fail before anything (the lock file too) is written
    with session.run.lock(wait_s=lock_wait_s, on_wait=lock_waiting, give_up=lambda: is_cancelled(cancel)):
        return _register_locked(cycle, resume, warnings_text or [])


def _register_locked(cycle: _CycleRun, resume: bool, warnings_text: list[str]) -> CycleResult:
    """:func:`register_cycle` once the run folder's lock is held."""
    session = cycle.session
    session.start(session.check(resume, cycle.grids), cycle.details(warnings_text))
    records = session.run.finished_records(session.frames)
    try:
        result = cycle.execute(records)
    except RegistrationCancelled as stop:
        session.emit(RunState.CANCELLED.value, reason=str(stop), done=len(records), frames=session.frames)
        session.finish(RunState.CANCELLED)
        return CycleResult(session.run, RunState.CANCELLED, records)
    except BaseException as error:  # KeyboardInterrupt without a signal handler and SystemExit are recorded too
        text = f"{type(error).__name__}: {error}"
        session.emit(RunState.FAILED.value, error=text)
        session.finish(RunState.FAILED, error=text)
        if isinstance(error, Exception):
            raise CycleFailed(text) from error
        raise
    session.emit(RunState.FINISHED.value, frames=session.frames,
                 seconds=round(time.perf_counter() - session.started, 2))
    session.finish(RunState.FINISHED)
    return result
