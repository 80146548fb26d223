"""Cardiac function from a run folder: LV cavity and myocardium volume per frame, EDV, ESV, SV, EF, the ES frame.

The LV cavity (blood pool) of the reference frame is carried to every finished frame through that frame's
written transform, as the worker carries the myocardium: each voxel y of frame t takes the cavity's trilinear
value at phi_t^-1(y), thresholded at 0.5 (:meth:`~..engine.displacement_map.DisplacementMap.propagate_fixed_label`).
The myocardium of frame t is the run's ``labels/frame_NNN``. A volume is its voxel count times the voxel volume
(1 mL = 1000 mm^3).

Definitions (Lang et al., "Recommendations for cardiac chamber quantification by echocardiography in adults",
J Am Soc Echocardiogr 2015; the same for CT and MRI): end-diastolic volume EDV = the largest cavity volume of the
cycle, end-systolic volume ESV = the smallest, stroke volume SV = EDV - ESV, ejection fraction EF = SV / EDV (%).
The ED and ES frames are the frames of EDV and ESV. Phases are ``100 * frame / frames`` (% of the cycle).

Written into the run folder: ``function.json`` (the summary) and ``function.csv`` (one row per finished frame,
:data:`FUNCTION_COLUMNS`).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.atomic_file import write_text_atomic
from ..core.masks import volume_ml
from ..core.vocabulary import InputError, phase_pct
from ..core.volume import Volume
from ..cycle.inputs import read_cycle_inputs
from ..cycle.run_folder import RunFolder, csv_text
from ..engine.displacement_map import SampledDisplacementMap
from ..fileio.displacement_field import read_displacement_field

FUNCTION_COLUMNS = ("frame", "phase_pct", "lv_volume_ml", "myocardium_volume_ml")
DEFINITIONS = {
    "edv_ml": "largest LV cavity volume of the cycle",
    "esv_ml": "smallest LV cavity volume of the cycle",
    "sv_ml": "EDV - ESV",
    "ef_pct": "100 * (EDV - ESV) / EDV (Lang et al., J Am Soc Echocardiogr 2015)",
    "lv_volume_ml": "reference LV cavity carried to the frame through its written transform, voxel count x voxel "
                    "volume",
    "myocardium_volume_ml": "labels/frame_NNN (the reference myocardium carried to the frame), voxel count x voxel "
                            "volume",
}


@dataclass(frozen=True)
class CardiacFunction:
    """Volumes per finished frame (in frame order) and what follows from them (see the module docstring)."""

    frames: tuple[int, ...]
    frame_count: int
    reference_frame: int
    lv_volume_ml: tuple[float, ...]
    myocardium_volume_ml: tuple[float, ...]
    es_frame_given: int | None = None
    notes: tuple[str, ...] = ()

    @property
    def edv_ml(self) -> float:
        return max(self.lv_volume_ml)

    @property
    def esv_ml(self) -> float:
        return min(self.lv_volume_ml)

    @property
    def sv_ml(self) -> float:
        return self.edv_ml - self.esv_ml

    @property
    def ef_pct(self) -> float:
        return 100.0 * self.sv_ml / self.edv_ml if self.edv_ml > 0 else math.nan

    @property
    def ed_frame(self) -> int:
        return self.frames[int(np.argmax(self.lv_volume_ml))]

    @property
    def es_frame(self) -> int:
        return self.frames[int(np.argmin(self.lv_volume_ml))]

    @property
    def missing_frames(self) -> list[int]:
        return sorted(set(range(self.frame_count)) - set(self.frames))

    def es_frame_difference(self) -> int | None:
        """Frames between the found and the given ES frame, the short way around the cycle (None: none given)."""
        if self.es_frame_given is None:
            return None
        step = (self.es_frame - self.es_frame_given) % self.frame_count
        return step if step <= self.frame_count // 2 else step - self.frame_count

    def rows(self) -> list[dict]:
        """The ``function.csv`` rows."""
        return [{"frame": t, "phase_pct": phase_pct(t, self.frame_count), "lv_volume_ml": lv,
                 "myocardium_volume_ml": myo}
                for t, lv, myo in zip(self.frames, self.lv_volume_ml, self.myocardium_volume_ml, strict=True)]

    def summary(self) -> dict:
        """The ``function.json`` content."""
        return {"edv_ml": self.edv_ml, "esv_ml": self.esv_ml, "sv_ml": self.sv_ml, "ef_pct": self.ef_pct,
                "ed_frame": self.ed_frame, "es_frame": self.es_frame, "es_frame_given": self.es_frame_given,
                "es_frame_difference": self.es_frame_difference(), "reference_frame": self.reference_frame,
                "frames": self.frame_count, "frames_missing": self.missing_frames, "notes": list(self.notes),
                "definitions": DEFINITIONS}

    def text(self) -> str:
        """One line for a terminal or a summary."""
        given = "" if self.es_frame_given is None else f"; given {self.es_frame_given}"
        missing = f" ({len(self.missing_frames)} frames not finished)" if self.missing_frames else ""
        notes = "".join(f"\n  note: {note}" for note in self.notes)
        return (f"LV function: EDV {self.edv_ml:.1f} mL (frame {self.ed_frame}), ESV {self.esv_ml:.1f} mL (frame "
                f"{self.es_frame}{given}), SV {self.sv_ml:.1f} mL, EF {self.ef_pct:.1f} %{missing}{notes}")


def measure_function(run: RunFolder, blood_pool: Volume, reference_frame: int,
                     es_frame_given: int | None = None) -> CardiacFunction:
    """The cardiac function of the finished frames of ``run``; ``blood_pool``: the reference frame's LV cavity
    (boolean, on the reference grid)."""
    cavity = np.asarray(blood_pool.array) > 0
    if not cavity.any():
        raise InputError("the LV blood pool of the reference frame is empty", option="blood_pool_label")
    frame_count = int(run.read_run_info()["frames"])
    finished = sorted(run.finished_records(frame_count))
    if not finished:
        raise InputError(f"{run.root} has no finished frame: nothing to measure")
    if es_frame_given is not None and not 0 <= es_frame_given < frame_count:
        raise InputError(f"the ES frame {es_frame_given} is outside the run's frames 0..{frame_count - 1}",
                         option="es_frame")
    as_bytes = blood_pool.with_array(cavity.astype(np.uint8), name="LV blood pool")
    lv, myocardium, unresolved = [], [], {}
    for t in finished:
        label = Volume.read(run.label_path(t), f"propagated myocardium of frame {t}")
        myocardium.append(volume_ml(label.array, label.geometry.spacing))
        if t == reference_frame:
            lv.append(volume_ml(cavity, blood_pool.geometry.spacing))
            continue
        displacement, grid = read_displacement_field(run.transform_path(t))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            carried = SampledDisplacementMap(displacement, grid).propagate_fixed_label(as_bytes, label.geometry)
        if caught:
            unresolved[t] = str(caught[0].message)
        lv.append(volume_ml(carried.array, carried.geometry.spacing))
    notes = ()
    if unresolved:
        notes = (f"the inverse map did not converge everywhere in {len(unresolved)} frame(s) (frames "
                 f"{', '.join(map(str, unresolved))}): the cavity volume is uncertain by those voxels; first: "
                 f"frame {next(iter(unresolved))}: {next(iter(unresolved.values()))}",)
    return CardiacFunction(tuple(finished), frame_count, reference_frame, tuple(lv), tuple(myocardium),
                           es_frame_given, notes)


def write_function(run: RunFolder, function: CardiacFunction) -> tuple[Path, Path]:
    """Write ``function.json`` and ``function.csv`` (each atomically); returns their paths."""
    summary = write_text_atomic(run.function_json, json.dumps(function.summary(), indent=2) + "\n")
    table = write_text_atomic(run.function_csv, csv_text(FUNCTION_COLUMNS, function.rows()))
    return summary, table


def run_function(run_dir: str | Path, blood_pool_label: int | None = None,
                 es_frame: int | None = None) -> CardiacFunction:
    """Measure and write the cardiac function of the run in ``run_dir`` (``inr-cardiac function``): the LV cavity
    is value ``blood_pool_label`` (default: the run request's) of the reference frame's label map."""
    run = RunFolder(run_dir)
    request = run.read_request()
    label = blood_pool_label if blood_pool_label is not None else request.inputs.blood_pool_label
    if label is None:
        raise InputError("no LV blood-pool label: give the LV cavity's value in the reference frame's label map",
                         option="blood_pool_label")
    inputs, _ = read_cycle_inputs(request.with_changes(blood_pool_label=label).inputs,
                                  request.settings.reference_frame)
    function = measure_function(run, inputs.blood_pool, inputs.reference_frame, es_frame)
    write_function(run, function)
    return function
