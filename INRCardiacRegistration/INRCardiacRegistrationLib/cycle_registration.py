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
the reference grid cropped to the sampling mask and landmarks plus a margin, or the whole reference grid),
the reference myocardium propagated into frame t (through the written field's inverse), the checkpoint,
the landmark positions (the written field applied to the reference landmarks, so that SimpleITK or Slicer
applying the transform file reproduces them) and finally the frame's record with its metrics.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import SimpleITK as sitk
import torch

from . import __version__
from .coordinates import NormalizedCoordinates
from .cycle_inputs import CycleInputs
from .devices import resolve_device
from .displacement_field_io import write_displacement_field
from .displacement_map import SampledDisplacementMap
from .geometry import Geometry
from .landmarks_io import Landmarks, Trajectories, read_markups_json, write_markups_json, write_trajectories_csv
from .masks import sampling_mask
from .metrics import dice, hd95_mm, negative_jacobian_percent, target_registration_errors_mm
from .pair_registration import CancelSignal, RegistrationCancelled, RegistrationProgress, is_cancelled, register_pair
from .registration_config import RegistrationConfig
from .registration_result import PairRegistration
from .run_folder import FrameRecord, RunFolder
from .volume import Volume

MODES = ("non-sequential", "sequential")
FIELD_REGIONS = ("heart", "full")


@dataclass(frozen=True)
class CycleConfig:
    """How a whole cycle is registered: the pairwise hyper-parameters plus the cycle's own settings.

    ``field_region``: ``"heart"`` writes each transform on the reference grid cropped to the sampling mask and
    the landmarks plus ``field_margin_mm`` (a network is meaningless far outside where it was trained, and
    full-resolution fields of the whole scan are huge); ``"full"`` uses the whole reference grid. Beyond half a
    voxel outside its grid, ITK (and Slicer) apply a displacement field as the identity.
    """

    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    mode: str = "non-sequential"
    reference_frame: int = 0
    field_region: str = "heart"
    field_margin_mm: float = 10.0
    preset: str = "paper"  # the preset the registration config was built from (recorded, not used)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"CycleConfig 'mode' must be one of {MODES}, got {self.mode!r}")
        if not isinstance(self.reference_frame, int) or self.reference_frame < 0:
            raise ValueError(f"CycleConfig 'reference_frame' must be an integer >= 0, got {self.reference_frame!r}")
        if self.field_region not in FIELD_REGIONS:
            raise ValueError(f"CycleConfig 'field_region' must be one of {FIELD_REGIONS}, got {self.field_region!r}")
        if not (math.isfinite(self.field_margin_mm) and self.field_margin_mm >= 0):
            raise ValueError(f"CycleConfig 'field_margin_mm' must be >= 0, got {self.field_margin_mm!r}")

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["registration"] = self.registration.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> CycleConfig:
        values = dict(data)
        values["registration"] = RegistrationConfig.from_dict(values.get("registration", {}))
        return cls(**values)


class CycleFailed(RuntimeError):
    """A run that had started failed; the original error is the ``__cause__``. The run folder keeps every
    finished frame, ``run.json`` says ``failed`` and why, and ``--resume`` can continue it."""


@dataclass
class CycleResult:
    """What :func:`register_cycle` ended with: ``status`` is ``"finished"`` or ``"cancelled"``."""

    run: RunFolder
    status: str
    records: dict[int, FrameRecord]


def processing_order(frame_count: int, reference_frame: int) -> list[int]:
    """Frames in the order they are registered: around the cycle from the one after the reference."""
    return [(reference_frame + k) % frame_count for k in range(1, frame_count)]


def field_grid(inputs: CycleInputs, mask: Volume, config: CycleConfig) -> Geometry:
    """The grid the transforms are written on (see :class:`CycleConfig` ``field_region``)."""
    grid = inputs.reference.geometry
    if config.field_region == "full":
        return grid
    ijk = np.argwhere(np.asarray(mask.array) > 0)[:, ::-1].astype(np.float64)
    if inputs.landmarks is not None:
        ijk = np.concatenate([ijk, grid.physical_to_index(inputs.landmarks.points_lps)])
    margin = np.ceil(config.field_margin_mm / np.asarray(grid.spacing))
    return grid.subgrid(ijk.min(axis=0) - margin, ijk.max(axis=0) + margin)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict:
    return {"inr_cardiac_registration": __version__, "torch": torch.__version__,
            "SimpleITK": sitk.Version_VersionString(), "numpy": np.__version__, "python": platform.python_version()}


# Settings that may differ between a run and its resumption without changing what is computed (the preset is
# only a name: the registration settings themselves are compared). A run resumed on another device continues
# correctly but is not bit-identical to an uninterrupted one.
_RESUME_IGNORED = {"device", "progress_every", "preset"}


def _resume_differences(stored: dict, wanted: dict, prefix: str = "") -> list[str]:
    differences = []
    for key in sorted(set(stored) | set(wanted)):
        if key in _RESUME_IGNORED:
            continue
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += _resume_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            differences.append(f"{prefix}{key}: {a!r} in the run, {b!r} now")
    return differences


@dataclass
class _Tracking:
    """Where the reference frame's points are in the last finished frame (sequential mode), and the pair
    network to warm-start from."""

    previous: PairRegistration | None = None
    positions: np.ndarray | None = None      # field-grid nodes mapped to the last frame (N, 3) LPS mm
    determinants: np.ndarray | None = None   # det grad phi of the composed map at the sampling-mask nodes
    mask: Volume | None = None               # the reference sampling mask carried into the last frame


class _CycleRun:
    """One execution (fresh or resumed) of :func:`register_cycle`."""

    def __init__(self, inputs: CycleInputs, config: CycleConfig, run: RunFolder,
                 progress: Callable[[dict], None] | None, cancel: CancelSignal) -> None:
        self.inputs = inputs
        self.config = config
        self.run = run
        self.user_progress = progress
        self.cancel = cancel
        self.reference = inputs.reference_frame
        self.order = processing_order(inputs.frame_count, self.reference)
        registration = config.registration
        heart = inputs.heart
        self.mask = sampling_mask(heart=heart, myocardium=None if heart is not None else
                                  inputs.myocardium[self.reference], dilation_voxels=registration.mask_dilation_voxels,
                                  myocardium_margin_mm=registration.myocardium_margin_mm)
        self.coordinates = NormalizedCoordinates.around_mask(self.mask, registration.coordinate_margin)
        self.grid = field_grid(inputs, self.mask, config)
        self.nodes = self.grid.voxel_centres_physical().reshape(-1, 3)
        # the sampling-mask voxels as indices into the field grid's nodes (the field grid contains them all)
        mask_ijk = np.argwhere(np.asarray(self.mask.array) > 0)[:, ::-1]
        low = np.rint(inputs.reference.geometry.physical_to_index(np.asarray(self.grid.origin))).astype(int)
        local = mask_ijk - low
        size = np.asarray(self.grid.size)
        self.mask_nodes = local[:, 0] + size[0] * (local[:, 1] + size[1] * local[:, 2])
        self.device = resolve_device(registration.device)
        self.tracking = _Tracking()
        self.started = time.perf_counter()
        self.iterations_done = 0
        self.training_seconds = 0.0
        self.training_before = 0.0
        self.last_finished: int | None = None
        self.overhead_seconds: list[float] = []

    # --- events ----------------------------------------------------------------------------------------
    def emit(self, event: str, **fields) -> None:
        record = self.run.append_event(event, **fields)
        if self.user_progress is not None:
            self.user_progress(record)

    def cancelled(self) -> bool:
        return is_cancelled(self.cancel) or self.run.cancel_requested()

    def iterations_for(self, frame: int) -> int:
        first = self.order[0] == frame
        registration = self.config.registration
        return registration.iterations if first else registration.warm_start_iterations

    def eta_seconds(self, remaining_frames: list[int], current_left: int = 0) -> float:
        """Seconds left: the iterations still to run at this session's speed, plus the measured per-frame
        overhead (outputs and metrics) for every unfinished frame."""
        if self.iterations_done == 0:
            return math.nan
        per_iteration = self.training_seconds / self.iterations_done
        iterations = current_left + sum(self.iterations_for(t) for t in remaining_frames)
        overhead = float(np.mean(self.overhead_seconds)) if self.overhead_seconds else 0.0
        return per_iteration * iterations + overhead * (len(remaining_frames) + (1 if current_left else 0))

    # --- run.json --------------------------------------------------------------------------------------
    def _wanted(self, description: dict) -> dict:
        cycle = self.config.to_dict()
        registration = cycle.pop("registration")
        return {"config": registration, "cycle": cycle, "inputs": description}

    def check(self, description: dict, resume: bool) -> dict | None:
        """Raise ValueError unless the run folder may be started (new or empty) or resumed with these settings;
        reads only. Returns the previous ``run.json`` (None for a new run)."""
        wanted = self._wanted(description)
        previous = self.run.read_run_info() if self.run.exists() else None
        if previous is not None:
            if not resume:
                raise ValueError(f"{self.run.root} already holds a run (run.json): use --resume to continue it, "
                                 "or another output folder")
            stored = {key: previous.get(key, {}) for key in wanted}
            # a run started before a configuration field existed ran with that field's default
            stored["config"] = RegistrationConfig.from_dict(stored["config"]).to_dict()
            differences = _resume_differences(stored, wanted)
            if differences:
                raise ValueError(f"cannot resume {self.run.root}: it was started with other settings ("
                                 + "; ".join(differences[:3]) + (" ..." if len(differences) > 3 else "") + ")")
            if previous.get("frames") != self.inputs.frame_count:
                raise ValueError(f"cannot resume {self.run.root}: it has {previous.get('frames')} frames, the input "
                                 f"{self.inputs.frame_count}")
            for key, grid in (("geometry", self.inputs.reference.geometry), ("field_geometry", self.grid)):
                stored = previous.get(key)
                if stored is None or not Geometry.from_dict(stored).matches(grid):
                    raise ValueError(f"cannot resume {self.run.root}: its {key} differs from the inputs' "
                                     f"({grid.describe()}); were the input files changed?")
        elif self.run.root.exists() and any(p not in (self.run.log_path, self.run.inputs_dir, self.run.lock_path)
                                            for p in self.run.root.iterdir()):
            raise ValueError(f"output folder {self.run.root} is not empty and holds no run: choose a new folder")
        return previous

    def start(self, description: dict, resume: bool, warnings_text: list[str]) -> dict[int, FrameRecord]:
        """Create or reopen the run folder (after :meth:`check`); return the records of frames already finished."""
        previous = self.check(description, resume)
        wanted = self._wanted(description)
        self.run.clear_cancel()
        info = {
            "status": "running",
            "frames": self.inputs.frame_count,
            "reference_frame": self.reference,
            "mode": self.config.mode,
            "preset": self.config.preset,
            "order": self.order,
            **wanted,
            "geometry": self.inputs.reference.geometry.to_dict(),
            "field_geometry": self.grid.to_dict(),
            "transform_convention": "ITK displacement field (LPS mm, resampling convention) on field_geometry: "
                                    "TransformPoint(p) = where reference point p is in frame t",
            "coordinate_system": "LPS",
            "device": str(self.device),
            "versions": _versions(),
            "warnings": list(warnings_text),
            "started": _now(),
        }
        if previous is not None:
            info["first_started"] = previous.get("first_started", previous.get("started"))
            info["resumed"] = int(previous.get("resumed", 0)) + 1
        self.run.write_run_info(info)
        return self.run.finished_records(self.inputs.frame_count)

    def finish(self, status: str, **extra) -> None:
        self.run.update_run_info(status=status, ended=_now(),
                                 seconds=round(time.perf_counter() - self.started, 2), **extra)

    # --- outputs ---------------------------------------------------------------------------------------
    def write_trajectories(self, records: dict[int, FrameRecord]) -> None:
        if self.inputs.landmarks is None:
            return
        frames = sorted(records)
        points = np.stack([read_markups_json(self.run.landmarks_path(t)).points_lps for t in frames])
        write_trajectories_csv(self.run.trajectories_csv, Trajectories(tuple(frames), self.inputs.landmarks.labels,
                                                                       points))

    def landmark_errors(self, frame: int, positions: np.ndarray | None) -> list[float]:
        annotated = self.inputs.annotated
        if annotated is None or positions is None or frame not in annotated.frames:
            return []
        truth = annotated.at_frame(frame)
        index = [self.inputs.landmarks.labels.index(label) for label in truth.labels]
        return target_registration_errors_mm(positions[index], truth.points_lps).tolist()

    def write_frame(self, frame: int, displacement: np.ndarray, determinants: np.ndarray,
                    result: PairRegistration | None, pair: str,
                    seconds: float) -> tuple[FrameRecord, SampledDisplacementMap]:
        """Write every file of ``frame`` and, last, its record. ``displacement``: u at the field-grid nodes.

        Landmarks and the propagated label are derived from the written field itself (trilinear between its
        nodes, as ITK and Slicer apply it), so every output agrees with the transform file."""
        run, inputs = self.run, self.inputs
        frame_grid = inputs.frames[frame].geometry
        u = displacement.reshape(*self.grid.array_shape, 3)
        files = {"transform": write_displacement_field(run.transform_path(frame), u, self.grid)}
        field_map = SampledDisplacementMap(u, self.grid)
        reference_myocardium = inputs.myocardium[self.reference]
        if frame == self.reference:
            propagated = reference_myocardium.array.astype(np.uint8)
        else:
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
        record = FrameRecord(frame=frame, negative_jacobian_pct=negative_jacobian_percent(determinants), pair=pair,
                             files={k: str(p.relative_to(run.root)) for k, p in files.items()})
        if frame in inputs.myocardium:
            own = inputs.myocardium[frame].array
            record.dice = dice(propagated, own)
            record.hd95_mm = hd95_mm(propagated, own, frame_grid)
        errors = self.landmark_errors(frame, landmarks)
        if errors:
            record.landmark_errors_mm = errors
            record.tre_mm = float(np.mean(errors))
        if result is not None:
            record.final_loss = result.final_loss
            record.iterations = len(result.loss_history)
            record.alpha_used = result.alpha_used
        record.seconds = seconds
        run.write_frame_record(record)
        return record, field_map

    # --- one frame -------------------------------------------------------------------------------------
    def pair_for(self, frame: int) -> int:
        """The fixed frame of ``frame``'s pair."""
        if self.config.mode == "non-sequential":
            return self.reference
        return self.order[self.order.index(frame) - 1] if frame != self.order[0] else self.reference

    def advance(self, frame: int, result: PairRegistration) -> tuple[np.ndarray, np.ndarray]:
        """Apply ``frame``'s pair to the tracked points: ``(u at the field nodes, det at the mask nodes)`` of the
        map reference -> ``frame``; updates the tracking state."""
        tracking = self.tracking
        if self.config.mode == "non-sequential":
            displacement = result.displacement_at(self.nodes)
            determinants = result.jacobian_determinant_at(self.nodes[self.mask_nodes])
        else:
            positions = self.nodes if tracking.positions is None else tracking.positions
            previous_det = 1.0 if tracking.determinants is None else tracking.determinants
            moved = result.map_points(positions)
            determinants = result.jacobian_determinant_at(positions[self.mask_nodes]) * previous_det
            displacement = moved - self.nodes
            tracking.positions, tracking.determinants = moved, determinants
        tracking.previous = result
        return displacement, determinants

    def carry_mask(self, frame: int, field_map: SampledDisplacementMap) -> None:
        """Sequential mode: the reference sampling mask carried into ``frame`` (where the next pair samples)."""
        if self.config.mode == "sequential":
            as_bytes = self.mask.with_array(self.mask.array.astype(np.uint8))
            carried = field_map.propagate_fixed_label(as_bytes, self.inputs.frames[frame].geometry)
            self.tracking.mask = carried.with_array(carried.array > 0, name=f"sampling mask carried to frame {frame}")

    def register_frame(self, frame: int, remaining: list[int]) -> FrameRecord:
        inputs, tracking = self.inputs, self.tracking
        fixed = self.pair_for(frame)
        mask = self.mask if fixed == self.reference or tracking.mask is None else tracking.mask
        registration = self.config.registration
        config = registration.replace(iterations=self.iterations_for(frame), seed=registration.seed + frame)
        started = time.perf_counter()
        done_before = self.iterations_done

        def on_progress(event: RegistrationProgress) -> None:
            self.iterations_done = done_before + event.iteration
            self.training_seconds = self.training_before + event.elapsed_s
            self.emit("iteration", frame=frame, iteration=event.iteration, iterations=event.iterations,
                      loss=event.loss, eta_s=self.eta_seconds(remaining, event.iterations - event.iteration))

        self.training_before = self.training_seconds
        result = register_pair(inputs.frames[fixed], inputs.frames[frame], fixed_label=inputs.myocardium.get(fixed),
                               moving_label=inputs.myocardium.get(frame), mask=mask, config=config,
                               initial=tracking.previous, coordinates=self.coordinates, progress=on_progress,
                               cancel=self.cancelled)
        self.iterations_done = done_before + config.iterations
        self.training_seconds = self.training_before + result.seconds
        displacement, determinants = self.advance(frame, result)
        seconds = time.perf_counter() - started
        record, field_map = self.write_frame(frame, displacement, determinants, result, f"{fixed}->{frame}", seconds)
        self.carry_mask(frame, field_map)
        self.overhead_seconds.append(time.perf_counter() - started - result.seconds)
        return record

    def replay(self, frame: int) -> None:
        """Rebuild the tracking state after a finished ``frame`` from its checkpoint (resume)."""
        result = PairRegistration.load(self.run.checkpoint_path(frame), self.device)
        displacement, _ = self.advance(frame, result)
        if self.config.mode == "sequential" and frame == self.last_finished:
            self.carry_mask(frame, SampledDisplacementMap(displacement.reshape(*self.grid.array_shape, 3),
                                                          self.grid))

    # --- the cycle -------------------------------------------------------------------------------------
    def execute(self, records: dict[int, FrameRecord]) -> CycleResult:
        run, inputs = self.run, self.inputs
        finished = 0
        while finished < len(self.order) and self.order[finished] in records:
            finished += 1
        self.last_finished = self.order[finished - 1] if finished else None
        if self.reference not in records:
            zero = np.zeros_like(self.nodes)
            records[self.reference] = self.write_frame(self.reference, zero, np.ones(len(self.mask_nodes)), None,
                                                       "", math.nan)[0]
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
        self.emit("started", frames=inputs.frame_count, reference_frame=self.reference, order=self.order,
                  finished=sorted(records), todo=todo, iterations_total=sum(self.iterations_for(t) for t in todo))
        run.write_metrics(list(records.values()))
        self.write_trajectories(records)
        for position, frame in enumerate(todo):
            if self.cancelled():
                raise RegistrationCancelled(f"cancelled before frame {frame}")
            record = self.register_frame(frame, todo[position + 1:])
            records[frame] = record
            run.write_metrics(list(records.values()))
            self.write_trajectories(records)
            self.emit("frame_finished", frame=frame, done=len(records), frames=inputs.frame_count,
                      eta_s=self.eta_seconds(todo[position + 1:]), **{k: v for k, v in record.metrics_row().items()
                                                                     if k != "frame"})
        return CycleResult(run, "finished", records)


def register_cycle(inputs: CycleInputs, config: CycleConfig, run_dir, *, resume: bool = False,
                   description: dict | None = None, warnings_text: list[str] | None = None,
                   progress: Callable[[dict], None] | None = None, cancel: CancelSignal = None,
                   lock_wait_s: float = 0.0, lock_waiting: Callable[[str], None] | None = None) -> CycleResult:
    """Register the reference frame to every frame of ``inputs`` and write the run folder ``run_dir``.

    Args:
        inputs: checked inputs (:func:`cycle_inputs.build_cycle_inputs`); ``inputs.reference_frame`` must
            equal ``config.reference_frame``.
        config: the cycle and pair settings.
        run_dir: the run folder; it must be new or empty, or hold this run when ``resume`` is True (then the
            finished frames are kept and the rest is computed, with the same results as an uninterrupted run;
            ``resume`` with a new folder simply starts the run).
        description: what the inputs were (paths, label values); stored in ``run.json`` and compared on resume.
        warnings_text: warnings met while reading the inputs, recorded in ``run.json``.
        progress: called with every event written to ``progress.jsonl`` (a dict, see
            :meth:`RunFolder.append_event`).
        cancel: a ``threading.Event`` or callable; when set (or when the run folder's ``cancel`` file appears)
            the run stops after the frame files already written, records a ``cancelled`` event and returns
            with ``status == "cancelled"``.
        lock_wait_s: while another process writes ``run_dir`` (it holds the folder's lock), wait up to this many
            seconds for it to end (``lock_waiting`` is told who holds it), then raise :class:`file_lock.LockBusy`
            (nothing written); a cancel while waiting raises it at once.

    Raises ValueError for inconsistent inputs or settings (before writing anything); an error once the run has
    started is recorded as a ``failed`` event and status in ``run.json`` and raised as :class:`CycleFailed`.
    """
    if config.reference_frame != inputs.reference_frame:
        raise ValueError(f"config reference_frame {config.reference_frame} differs from the inputs' "
                         f"{inputs.reference_frame}")
    inputs.validate()
    run = RunFolder(run_dir)
    if run.root.exists() and not run.root.is_dir():
        raise ValueError(f"output folder {run.root} exists and is not a folder")
    cycle = _CycleRun(inputs, config, run, progress, cancel)
    cycle.check(description or {}, resume)  # bad settings fail before anything (the lock file too) is written
    with run.lock(wait_s=lock_wait_s, on_wait=lock_waiting, give_up=lambda: is_cancelled(cancel)):
        return _register_locked(cycle, description, resume, warnings_text)


def _register_locked(cycle: _CycleRun, description: dict | None, resume: bool,
                     warnings_text: list[str] | None) -> CycleResult:
    """:func:`register_cycle` once the run folder's lock is held."""
    inputs = cycle.inputs
    records = cycle.start(description or {}, resume, warnings_text or [])
    try:
        result = cycle.execute(records)
    except RegistrationCancelled as stop:
        cycle.emit("cancelled", reason=str(stop), done=len(records), frames=inputs.frame_count)
        cycle.finish("cancelled")
        return CycleResult(cycle.run, "cancelled", records)
    except Exception as error:
        cycle.emit("failed", error=f"{type(error).__name__}: {error}")
        cycle.finish("failed", error=f"{type(error).__name__}: {error}")
        raise CycleFailed(f"{type(error).__name__}: {error}") from error
    except BaseException as error:  # KeyboardInterrupt without a signal handler, SystemExit: record and go on
        cycle.emit("failed", error=f"{type(error).__name__}: {error}")
        cycle.finish("failed", error=f"{type(error).__name__}: {error}")
        raise
    cycle.emit("finished", frames=inputs.frame_count, seconds=round(time.perf_counter() - cycle.started, 2))
    cycle.finish("finished")
    return result
