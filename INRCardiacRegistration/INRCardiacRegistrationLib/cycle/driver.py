"""Whole-cycle registration: the reference frame tracked through every frame, written into a run folder.

Maps (the project's one convention): ``phi_t(x)`` takes a point x of the reference frame K (LPS mm) to
where that tissue is in frame t.

- ``non-sequential``: one SIREN per frame, K -> t, trained directly.
- ``sequential``: one SIREN per step, t-1 -> t (its own frame pair), and ``phi_t = step_t o phi_{t-1}``.
  The composition is evaluated exactly at the nodes of the field grid (each step's network is applied to
  the previous positions), so the written transform of frame t is the composed map.

Frames are processed around the cycle starting after the reference: K+1, K+2, ..., T-1, 0, ..., K-1 (a cardiac
cycle is periodic), each network warm-started from the previous one (the paper: 2000 iterations for the first
pair, 1000 after). Every frame is seeded with ``seed + t``, so a resumed run (which reloads the previous
frame's checkpoint and, in sequential mode, replays the finished steps) ends with the same results as an
uninterrupted one on the same device.

Per frame the run folder (:mod:`run_folder`) receives the transform (ITK displacement field on the field grid:
the reference grid cropped to the sampling mask and landmarks plus a margin, or the whole reference grid, and
tapered to zero at its edge so that ITK and Slicer agree everywhere: :mod:`field_region`),
the reference myocardium propagated into frame t (through the written field's inverse), the checkpoint,
the landmark positions (the written field applied to the reference landmarks, so that SimpleITK or Slicer
applying the transform file reproduces them) and finally the frame's record with its metrics.
"""

from __future__ import annotations

import math
import platform
import time
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
from ..engine.displacement_map import SampledDisplacementMap
from ..engine.pair_registration import RegistrationCancelled, RegistrationProgress, register_pair
from ..engine.registration_result import PairRegistration
from ..fileio.displacement_field import write_displacement_field
from ..fileio.landmarks import Landmarks, Trajectories, read_markups_json, write_markups_json, write_trajectories_csv
from .eta import EtaClock
from .field_region import FieldRegion, field_region
from .frame_metrics import frame_record
from .inputs import CycleInputs
from .request import CycleConfig, RunRequest, option_name
from .run_folder import FrameRecord, RunFolder
from .run_session import RunSession


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
    positions: np.ndarray | None = None      # field-grid nodes mapped to the last frame (N, 3) LPS mm
    mask: Volume | None = None               # the reference sampling mask carried into the last frame


class _CycleRun:
    """The frames of one execution (fresh or resumed) of :func:`register_cycle`: the pairs, the maps they add up
    to, and the files each frame writes. The bookkeeping is :class:`RunSession`'s."""

    def __init__(self, inputs: CycleInputs, request: RunRequest, session: RunSession) -> None:
        self.inputs = inputs
        self.config = request.settings
        self.session = session
        self.run = session.run
        self.reference = inputs.reference_frame
        self.order = processing_order(inputs.frame_count, self.reference)
        self.mask = cycle_sampling_mask(inputs, self.config)
        self.coordinates = NormalizedCoordinates.around_mask(self.mask, self.config.registration.coordinate_margin)
        stored = session.run.read_run_info().get("field_geometry") if session.run.exists() else None
        self.region = cycle_field_region(inputs, self.mask, self.config,
                                         None if stored is None else Geometry.from_dict(stored))
        self.grid = self.region.grid
        self.nodes = self.grid.voxel_centres_physical().reshape(-1, 3)
        # the sampling-mask voxels as indices into the field grid's nodes (the field grid contains them all)
        mask_ijk = np.argwhere(np.asarray(self.mask.array) > 0)[:, ::-1]
        low = np.rint(inputs.reference.geometry.physical_to_index(np.asarray(self.grid.origin))).astype(int)
        local = mask_ijk - low
        size = np.asarray(self.grid.size)
        self.mask_nodes = local[:, 0] + size[0] * (local[:, 1] + size[1] * local[:, 2])
        self.device = resolve_device(self.config.registration.device)
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
        return {"order": self.order, **{key: grid.to_dict() for key, grid in self.grids.items()},
                "device": str(self.device), "torch_threads": torch.get_num_threads(), "versions": _versions(),
                "warnings": list(warnings_text)}

    def iterations_for(self, frame: int) -> int:
        registration = self.config.registration
        return registration.iterations if self.order[0] == frame else registration.warm_start_iterations

    def eta_seconds(self, remaining_frames: list[int], current_left: int = 0) -> float:
        """Seconds left: the iterations still to run (a warm-started pair's budget times the share of it such pairs
        used so far, as the plateau rule may end them early) plus each unfinished frame's measured overhead."""
        share = self.clock.warm_share()
        iterations = current_left + sum(self.iterations_for(t) * (1.0 if t == self.order[0] else share)
                                        for t in remaining_frames)
        return self.clock.seconds_left(iterations, len(remaining_frames) + (1 if current_left else 0))

    # --- outputs ---------------------------------------------------------------------------------------
    def write_trajectories(self, records: dict[int, FrameRecord]) -> None:
        if self.inputs.landmarks is None:
            return
        frames = sorted(records)
        points = np.stack([read_markups_json(self.run.landmarks_path(t)).points_lps for t in frames])
        write_trajectories_csv(self.run.trajectories_csv, Trajectories(tuple(frames), self.inputs.landmarks.labels,
                                                                       points))

    def write_frame(self, frame: int, displacement: np.ndarray, result: PairRegistration | None, pair: str,
                    seconds: float) -> tuple[FrameRecord, SampledDisplacementMap]:
        """Write every file of ``frame`` and, last, its record. ``displacement``: u at the field-grid nodes.

        The field is tapered to zero at its grid's edge (:mod:`.field_region`; unchanged on the sampling mask and
        the landmarks). Landmarks, the propagated label and the folding (det grad phi at the sampling-mask nodes,
        central differences one grid spacing wide) are derived from the written field itself (trilinear between its
        nodes, as ITK and Slicer apply it), so every output agrees with the transform file."""
        run, inputs = self.run, self.inputs
        frame_grid = inputs.frames[frame].geometry
        u = self.region.taper(displacement.reshape(*self.grid.array_shape, 3))
        files = {"transform": write_displacement_field(run.transform_path(frame), u, self.grid)}
        field_map = SampledDisplacementMap(u, self.grid)
        reference_myocardium = inputs.myocardium[self.reference]
        if frame == self.reference:
            propagated = reference_myocardium.array.astype(np.uint8)
            determinants = np.ones(len(self.mask_nodes))
        else:
            determinants = np.linalg.det(field_map.deformation_gradient_at(self.nodes[self.mask_nodes]))
            as_bytes = reference_myocardium.with_array(reference_myocardium.array.astype(np.uint8))
            propagated = field_map.propagate_fixed_label(as_bytes, frame_grid).array
        Volume(propagated, frame_grid).write(run.label_path(frame))
        files["label"] = run.label_path(frame)
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
        if record.margin_folds and not self.margin_warned:  # once per run; every frame's count is in its record
            self.margin_warned = True
            self.session.emit("warning", frame=frame, text=(
                f"frame {frame}: the written field folds at {record.margin_folds} nodes of its margin (the "
                f"displacement there exceeds the {self.config.field_margin_mm:g} mm over which it falls to zero); "
                f"the motion of the heart is unaffected, content placed there in Slicer may fold: raise "
                f"{option_name('field_margin_mm')} (other frames: margin_folds in their records and summary.txt)"))
        run.write_frame_record(record)
        return record, field_map

    # --- one frame -------------------------------------------------------------------------------------
    def pair_for(self, frame: int) -> int:
        """The fixed frame of ``frame``'s pair."""
        if self.config.mode == "non-sequential":
            return self.reference
        return self.order[self.order.index(frame) - 1] if frame != self.order[0] else self.reference

    def advance(self, frame: int, result: PairRegistration) -> np.ndarray:
        """Apply ``frame``'s pair to the tracked points: u at the field nodes of the map reference -> ``frame``;
        updates the tracking state."""
        tracking = self.tracking
        if self.config.mode == "non-sequential":
            displacement = result.displacement_at(self.nodes)
        else:
            positions = self.nodes if tracking.positions is None else tracking.positions
            moved = result.map_points(positions)
            displacement = moved - self.nodes
            tracking.positions = moved
        tracking.previous = result
        return displacement

    def carry_mask(self, frame: int, field_map: SampledDisplacementMap) -> None:
        """Sequential mode: the reference sampling mask carried into ``frame`` (where the next pair samples)."""
        if self.config.mode == "sequential":
            as_bytes = self.mask.with_array(self.mask.array.astype(np.uint8))
            carried = field_map.propagate_fixed_label(as_bytes, self.inputs.frames[frame].geometry)
            self.tracking.mask = carried.with_array(carried.array > 0, name=f"sampling mask carried to frame {frame}")

    def register_frame(self, frame: int, remaining: list[int]) -> FrameRecord:
        inputs, tracking, clock = self.inputs, self.tracking, self.clock
        fixed = self.pair_for(frame)
        mask = self.mask if fixed == self.reference or tracking.mask is None else tracking.mask
        registration = self.config.registration
        config = registration.replace(iterations=self.iterations_for(frame), seed=registration.seed + frame)
        started = time.perf_counter()
        done_before, seconds_before = clock.iterations_done, clock.training_seconds

        def on_progress(event: RegistrationProgress) -> None:
            clock.iterations_done = done_before + event.iteration
            clock.training_seconds = seconds_before + event.elapsed_s
            self.session.emit("iteration", frame=frame, iteration=event.iteration, iterations=event.iterations,
                              loss=event.loss, eta_s=self.eta_seconds(remaining, event.iterations - event.iteration))

        result = register_pair(inputs.frames[fixed], inputs.frames[frame], fixed_label=inputs.myocardium.get(fixed),
                               moving_label=inputs.myocardium.get(frame), mask=mask, config=config,
                               blood_pool=inputs.blood_pool if fixed == self.reference else None,
                               initial=tracking.previous, coordinates=self.coordinates, progress=on_progress,
                               cancel=self.session.cancel_requested)
        clock.iterations_done = done_before + len(result.loss_history)  # fewer than planned after a plateau
        clock.training_seconds = seconds_before + result.seconds
        if tracking.previous is not None:  # warm-started (before advance() makes this pair the previous one)
            clock.warm_planned += config.iterations
            clock.warm_used += len(result.loss_history)
        displacement = self.advance(frame, result)
        seconds = time.perf_counter() - started
        record, field_map = self.write_frame(frame, displacement, result, f"{fixed}->{frame}", seconds)
        self.carry_mask(frame, field_map)
        clock.overhead_seconds.append(time.perf_counter() - started - result.seconds)
        return record

    def replay(self, frame: int) -> None:
        """Rebuild the tracking state after a finished ``frame`` from its checkpoint (resume)."""
        result = PairRegistration.load(self.run.checkpoint_path(frame), self.device)
        displacement = self.advance(frame, result)
        if self.config.mode == "sequential" and frame == self.last_finished:
            tapered = self.region.taper(displacement.reshape(*self.grid.array_shape, 3))  # as written
            self.carry_mask(frame, SampledDisplacementMap(tapered, self.grid))

    # --- the cycle -------------------------------------------------------------------------------------
    def execute(self, records: dict[int, FrameRecord]) -> CycleResult:
        run, inputs = self.run, self.inputs
        finished = 0
        while finished < len(self.order) and self.order[finished] in records:
            finished += 1
        self.last_finished = self.order[finished - 1] if finished else None
        if self.reference not in records:
            zero = np.zeros_like(self.nodes)
            records[self.reference] = self.write_frame(self.reference, zero, None, "", math.nan)[0]
        if self.config.mode == "sequential":
            for frame in self.order[:finished]:
                self.replay(frame)
        elif finished:
            self.tracking.previous = PairRegistration.load(run.checkpoint_path(self.order[finished - 1]),
                                                           self.device)
        for frame in self.order[finished:]:  # frames after a gap are redone: no longer finished
            if records.pop(frame, None) is not None:
                run.record_path(frame).unlink(missing_ok=True)
        todo = self.order[finished:]
        self.session.emit("started", frames=inputs.frame_count, reference_frame=self.reference, order=self.order,
                          finished=sorted(records), todo=todo,
                          iterations_total=sum(self.iterations_for(t) for t in todo))
        run.write_metrics(list(records.values()))
        self.write_trajectories(records)
        for position, frame in enumerate(todo):
            if self.session.cancel_requested():
                raise RegistrationCancelled(f"cancelled before frame {frame}")
            record = self.register_frame(frame, todo[position + 1:])
            records[frame] = record
            run.write_metrics(list(records.values()))
            self.write_trajectories(records)
            self.session.emit("frame_finished", frame=frame, done=len(records), frames=inputs.frame_count,
                              eta_s=self.eta_seconds(todo[position + 1:]),
                              **{k: v for k, v in record.metrics_row().items() if k != "frame"})
        return CycleResult(run, RunState.FINISHED, records)


def register_cycle(inputs: CycleInputs, request: RunRequest | CycleConfig, run_dir, *, resume: bool = False,
                   warnings_text: list[str] | None = None, progress: Callable[[dict], None] | None = None,
                   cancel: CancelSignal = None, lock_wait_s: float = 0.0,
                   lock_waiting: Callable[[str], None] | None = None) -> CycleResult:
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

    Raises InputError for inconsistent inputs or settings (before writing anything); an error once the run has
    started is recorded as a ``failed`` event and status in ``run.json`` and raised as :class:`CycleFailed`.
    """
    request = request if isinstance(request, RunRequest) else RunRequest(settings=request)
    if request.settings.reference_frame != inputs.reference_frame:
        raise InputError(f"the request's reference frame {request.settings.reference_frame} differs from the inputs' "
                         f"{inputs.reference_frame}", option="reference_frame")
    inputs.validate()
    session = RunSession(RunFolder(run_dir), request, inputs.frame_count, progress, cancel)
    cycle = _CycleRun(inputs, request, session)
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
