"""Cardiac function from a run folder: LV volumes, EDV, ESV, SV, EF, the ES frame, global and segmental strain, twist.

Per finished frame t:

- **LV volume**: the reference LV cavity carried to frame t through its written transform and closed at the carried
  mitral annulus plane (:mod:`.volumes`, :mod:`.basal_plane`); **myocardial volume**: the run's ``labels/frame_NNN``.
- **Strain and twist** (:mod:`.strain`) at the reference myocardium's points, in the LV's own directions and AHA
  segments (:mod:`.lv_frame`). F = grad phi_t comes from the frame's network where the run kept it and it maps the
  reference to frame t (non-sequential runs: exact, the SIREN's analytic Jacobian); otherwise from the written field
  (central differences one grid spacing wide).

Definitions (Lang et al., "Recommendations for cardiac chamber quantification by echocardiography in adults",
J Am Soc Echocardiogr 2015; the same for CT and MRI): end-diastolic volume EDV = the largest cavity volume of the
cycle, end-systolic volume ESV = the smallest, stroke volume SV = EDV - ESV, ejection fraction EF = SV / EDV (%).
The ED and ES frames are the frames of EDV and ESV. Phases are ``100 * frame / frames`` (% of the cycle).

Written into the run folder: ``function.json`` (the summary), ``function.csv`` (one row per finished frame,
:data:`FUNCTION_COLUMNS`), ``strain_segments.csv`` (:data:`SEGMENT_COLUMNS`, one row per frame and segment) and
``function_report.png`` (:mod:`.report_figure`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.aha_segments import SEGMENT_NAMES
from ..core.atomic_file import write_text_atomic
from ..core.geometry import Geometry
from ..core.masks import volume_ml
from ..core.vocabulary import InputError, phase_pct
from ..core.volume import Volume
from ..cycle.inputs import read_cycle_inputs
from ..cycle.run_folder import RunFolder, csv_text, finite_or_none
from ..engine.displacement_map import DisplacementMap, SampledDisplacementMap
from ..engine.registration_result import PairRegistration
from ..fileio.displacement_field import read_displacement_field
from .basal_plane import BasalAnnulus, find_basal_annulus
from .lv_frame import LeftVentricleFrame, estimate_lv_frame
from .report_figure import STRAIN_KINDS, peak_segment_strain, write_function_report
from .strain import SEGMENTS, FrameStrain, MyocardialPoints, identity_strain, map_frame_strain
from .volumes import capped_cavity, carried_cavity_volume_ml, cavity_volume_ml

FUNCTION_COLUMNS = ("frame", "phase_pct", "lv_volume_ml", "myocardium_volume_ml", "gls_pct", "gcs_pct", "grs_pct",
                    "twist_deg")
SEGMENT_COLUMNS = ("frame", "segment", "radial_pct", "circumferential_pct", "longitudinal_pct")
DEFINITIONS = {
    "edv_ml": "largest LV cavity volume of the cycle",
    "esv_ml": "smallest LV cavity volume of the cycle",
    "sv_ml": "EDV - ESV",
    "ef_pct": "100 * (EDV - ESV) / EDV (Lang et al., J Am Soc Echocardiogr 2015)",
    "lv_volume_ml": "reference LV cavity carried to the frame through its written transform and closed at the plane "
                    "of the carried mitral annulus, voxel count x voxel volume",
    "myocardium_volume_ml": "labels/frame_NNN (the reference myocardium carried to the frame), voxel count x voxel "
                            "volume",
    "gls_pct, gcs_pct, grs_pct": "Green-Lagrange normal strain E_dd = (|F d|^2 - 1) / 2 along the longitudinal, "
                                 "circumferential, radial direction d of the reference frame, mean over the "
                                 "myocardium, in %",
    "twist_deg": "apical (AHA 13-16) minus basal (AHA 1-6) rotation about the long axis, counter-clockwise seen "
                 "from the apex positive",
    "segments": "AHA 17-segment model (Cerqueira et al., Circulation 2002)",
}


@dataclass(frozen=True)
class CardiacFunction:
    """Volumes and strain per finished frame (in frame order) and what follows from them (module docstring)."""

    frames: tuple[int, ...]
    frame_count: int
    reference_frame: int
    lv_volume_ml: tuple[float, ...]
    myocardium_volume_ml: tuple[float, ...]
    es_frame_given: int | None = None
    notes: tuple[str, ...] = ()
    strain: tuple[FrameStrain, ...] | None = None
    details: dict | None = None  # how the axis, segments, cap and F were found

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

    def peaks(self) -> dict:
        """Peak strains and twist over the cycle, and their frames (empty without strain)."""
        if not self.strain:
            return {}
        found = {}
        for name, pick in (("gls_pct", np.argmin), ("gcs_pct", np.argmin), ("grs_pct", np.argmax)):
            values = [getattr(s, name) for s in self.strain]
            index = int(pick(values))
            found[f"peak_{name}"], found[f"peak_{name[:3]}_frame"] = values[index], self.frames[index]
        twists = [s.twist_deg for s in self.strain]
        index = int(np.nanargmax(np.abs(twists))) if np.any(np.isfinite(twists)) else 0
        found["peak_twist_deg"], found["peak_twist_frame"] = twists[index], self.frames[index]
        return found

    def rows(self) -> list[dict]:
        """The ``function.csv`` rows."""
        rows = []
        for index, (t, lv, myo) in enumerate(zip(self.frames, self.lv_volume_ml, self.myocardium_volume_ml,
                                                 strict=True)):
            row = {"frame": t, "phase_pct": phase_pct(t, self.frame_count), "lv_volume_ml": lv,
                   "myocardium_volume_ml": myo}
            if self.strain:
                s = self.strain[index]
                row.update(gls_pct=s.gls_pct, gcs_pct=s.gcs_pct, grs_pct=s.grs_pct, twist_deg=s.twist_deg)
            rows.append(row)
        return rows

    def segment_rows(self) -> list[dict]:
        """The ``strain_segments.csv`` rows (frame-major, segments 1..17)."""
        rows = []
        for t, s in zip(self.frames, self.strain or (), strict=False):
            for row, segment in enumerate(SEGMENTS):
                radial, circumferential, longitudinal = s.segments_pct[row]
                rows.append({"frame": t, "segment": segment, "radial_pct": radial,
                             "circumferential_pct": circumferential, "longitudinal_pct": longitudinal})
        return rows

    def summary(self) -> dict:
        """The ``function.json`` content."""
        return {"edv_ml": self.edv_ml, "esv_ml": self.esv_ml, "sv_ml": self.sv_ml, "ef_pct": self.ef_pct,
                "ed_frame": self.ed_frame, "es_frame": self.es_frame, "es_frame_given": self.es_frame_given,
                "es_frame_difference": self.es_frame_difference(), **self.peaks(),
                "reference_frame": self.reference_frame, "frames": self.frame_count,
                "frames_missing": self.missing_frames, "notes": list(self.notes), "details": self.details or {},
                "segment_names": {str(k): v for k, v in SEGMENT_NAMES.items()},
                "peak_segment_strain_pct": self.peak_segments(), "definitions": DEFINITIONS}

    def peak_segments(self) -> dict:
        """Per AHA segment ("1".."17") the peak radial (most positive), circumferential and longitudinal (most
        negative) strain of the cycle in % (the report's bull's-eyes; empty without strain)."""
        if not self.strain:
            return {}
        peaks = peak_segment_strain(self)
        return {str(segment): {kind: float(peaks[row, k]) for k, (kind, _) in enumerate(STRAIN_KINDS)}
                for row, segment in enumerate(SEGMENTS)}

    def text(self) -> str:
        """A few lines for a terminal or a summary."""
        given = "" if self.es_frame_given is None else f"; given {self.es_frame_given}"
        missing = f" ({len(self.missing_frames)} frames not finished)" if self.missing_frames else ""
        lines = [f"LV function: EDV {self.edv_ml:.1f} mL (frame {self.ed_frame}), ESV {self.esv_ml:.1f} mL (frame "
                 f"{self.es_frame}{given}), SV {self.sv_ml:.1f} mL, EF {self.ef_pct:.1f} %{missing}"]
        if self.strain:
            p = self.peaks()
            lines.append(f"Peak strain: GLS {p['peak_gls_pct']:.1f} % (frame {p['peak_gls_frame']}), GCS "
                         f"{p['peak_gcs_pct']:.1f} % (frame {p['peak_gcs_frame']}), GRS {p['peak_grs_pct']:.1f} % "
                         f"(frame {p['peak_grs_frame']}), twist {p['peak_twist_deg']:.1f} deg (frame "
                         f"{p['peak_twist_frame']})")
        return "\n".join(lines + [f"  note: {note}" for note in self.notes])


def _strain_motion(run: RunFolder, frame: int, sequential: bool, field: DisplacementMap) -> DisplacementMap:
    """The map strain is measured with: the frame's network when it maps the reference to this frame, else the
    written field."""
    checkpoint = run.checkpoint_path(frame)
    if not sequential and checkpoint.exists():
        return PairRegistration.load(checkpoint)
    return field


@dataclass
class FunctionReference:
    """What the cardiac function needs from the reference frame: its LV cavity (0/1 as ``cavity_label``, named
    "LV blood pool"), myocardium, mitral annulus, LV frame (None where it cannot be estimated: no strain, see
    ``notes``), the myocardial points strain is measured at, and the AHA segment map of the myocardium."""

    cavity: np.ndarray
    wall: np.ndarray
    grid: Geometry
    cavity_label: Volume
    annulus: BasalAnnulus | None
    lv_frame: LeftVentricleFrame | None
    points: MyocardialPoints | None
    segment_map: Volume | None
    notes: list[str]

    def carried_labels(self) -> dict[str, Volume]:
        """The labels a run carries into every frame for the function (``register_cycle``'s ``carried_labels``)."""
        labels = {"cavity": self.cavity_label}
        if self.segment_map is not None:
            labels["segments"] = self.segment_map
        return labels


def function_reference(blood_pool: Volume, myocardium: Volume, right_ventricle: Volume | None = None,
                       anterior_insertion_mm: np.ndarray | None = None,
                       write_segments: bool = True) -> FunctionReference:
    """The reference frame's part of :func:`measure_function` (see there for the arguments)."""
    cavity = np.asarray(blood_pool.array) > 0
    if not cavity.any():
        raise InputError("the LV blood pool of the reference frame is empty", option="blood_pool_label")
    grid = blood_pool.geometry
    wall = np.asarray(myocardium.array) > 0
    annulus = find_basal_annulus(cavity, wall, grid)
    notes = []
    try:
        lv_frame = estimate_lv_frame(wall, grid, cavity, None if right_ventricle is None else
                                     np.asarray(right_ventricle.array) > 0, anterior_insertion_mm, annulus)
    except InputError as error:  # volumes and EF need no axis: measure them, say why strain is missing
        lv_frame = None
        notes.append(f"strain not measured: {error}")
    points = None if lv_frame is None else MyocardialPoints.of(wall, grid, lv_frame)
    segment_map = None
    if lv_frame is not None and write_segments:
        values = np.zeros(wall.shape, dtype=np.uint8)
        values[wall] = lv_frame.segments(grid.index_to_physical(np.argwhere(wall)[:, ::-1]))
        segment_map = myocardium.with_array(values, name="AHA segments")
    cavity_label = blood_pool.with_array(cavity.astype(np.uint8), name="LV blood pool")
    return FunctionReference(cavity, wall, grid, cavity_label, annulus, lv_frame, points, segment_map, notes)


def measure_function(run: RunFolder, blood_pool: Volume, myocardium: Volume, reference_frame: int,
                     es_frame_given: int | None = None, right_ventricle: Volume | None = None,
                     anterior_insertion_mm: np.ndarray | None = None, write_segments: bool = True,
                     reference: FunctionReference | None = None) -> CardiacFunction:
    """The cardiac function of the finished frames of ``run``. ``blood_pool`` and ``myocardium``: the reference
    frame's LV cavity and myocardium (boolean, on the reference grid); ``right_ventricle`` (same) or a point on the
    anterior RV insertion (LPS mm) orient the AHA segments (:mod:`.lv_frame`). ``write_segments``: also write the
    reference myocardium's AHA segments carried into each frame (``segments/frame_NNN.nii.gz``, nearest neighbour
    through phi_t^-1; where Slicer colours the moving myocardium by segment).

    A frame whose record says the run carried this very cavity (and segment map) into it (``carried_labels`` of
    :func:`..cycle.driver.register_cycle`, same digest) takes them from its files; any other frame inverts its
    written field here (the same voxels either way). ``reference``: the :func:`function_reference` of these same
    arguments when the caller already has it (the one whose labels the run carried); it is not computed again."""
    info = run.read_run_info()
    frame_count = int(info["frames"])
    finished = sorted(run.finished_records(frame_count))
    if not finished:
        raise InputError(f"{run.root} has no finished frame: nothing to measure")
    if es_frame_given is not None and not 0 <= es_frame_given < frame_count:
        raise InputError(f"the ES frame {es_frame_given} is outside the run's frames 0..{frame_count - 1}",
                         option="es_frame")
    if reference is None:
        reference = function_reference(blood_pool, myocardium, right_ventricle, anterior_insertion_mm, write_segments)
    cavity, grid, annulus, lv_frame = reference.cavity, reference.grid, reference.annulus, reference.lv_frame
    points, segment_map, notes = reference.points, reference.segment_map, list(reference.notes)
    sequential = info.get("mode") == "sequential"
    as_bytes = reference.cavity_label
    digests = {name: label.digest() for name, label in reference.carried_labels().items()}

    lv, myocardium_ml, strain, unresolved, sources = [], [], [], {}, set()
    for t in finished:
        label = Volume.read(run.label_path(t), f"propagated myocardium of frame {t}")
        myocardium_ml.append(volume_ml(label.array, label.geometry.spacing))
        if t == reference_frame:
            lv.append(volume_ml(capped_cavity(cavity, grid, annulus), grid.spacing))
            if points is not None:
                strain.append(identity_strain(points))
            if segment_map is not None:
                segment_map.write(run.segments_path(t))
            continue
        field = SampledDisplacementMap(*read_displacement_field(run.transform_path(t)))
        record = run.read_frame_record(t)
        if record is not None and all(record.carried.get(name) == digest for name, digest in digests.items()):
            carried_cavity = Volume.read(run.carried_path("cavity", t), f"LV cavity carried to frame {t}")
            volume = cavity_volume_ml(field, np.asarray(carried_cavity.array) > 0, carried_cavity.geometry, annulus)
            warning = record.unresolved.get(as_bytes.name)
        else:
            alongside = [] if segment_map is None else [segment_map]
            volume, warning, carried = carried_cavity_volume_ml(field, as_bytes, label.geometry, annulus, alongside)
            for segments in carried:
                segments.write(run.segments_path(t))
        lv.append(volume)
        if warning:
            unresolved[t] = warning
        if points is not None:
            motion = _strain_motion(run, t, sequential, field)
            sources.add("network (exact)" if motion is not field else "written field (central differences)")
            strain.append(map_frame_strain(points, motion))
    if unresolved:
        notes.append(f"the inverse map did not converge everywhere in {len(unresolved)} frame(s) (frames "
                     f"{', '.join(map(str, unresolved))}): the cavity volume is uncertain by those voxels; first: "
                     f"frame {next(iter(unresolved))}: {next(iter(unresolved.values()))}")
    if annulus is None:
        notes.append("the reference cavity has no open face towards the atrium within the image (or its rim does not "
                     "span a plane): the volumes are not closed at a mitral annulus plane")
    details = {"annulus_points": 0 if annulus is None else len(annulus.points_mm)}
    if lv_frame is not None:
        details.update({
            "long_axis_lps": lv_frame.long_axis.round(4).tolist(), "apex_lps_mm": lv_frame.apex_mm.round(2).tolist(),
            "anterior_insertion_lps": lv_frame.anterior_insertion.round(4).tolist(),
            "septal_sense": float(lv_frame.septal_sense),
            "segment_orientation": lv_frame.orientation, "apical_cap_height_mm": round(lv_frame.cap_height_mm, 2),
            "base_height_mm": round(lv_frame.base_height_mm, 2), "strain_points": len(points.points_mm),
            "deformation_gradient_from": sorted(sources)})
    return CardiacFunction(tuple(finished), frame_count, reference_frame, tuple(lv), tuple(myocardium_ml),
                           es_frame_given, tuple(notes), tuple(strain) if points is not None else None, details)


def _finite(value):
    """``value`` with every non-finite float (a ring without points: NaN twist) as None, so the JSON is valid."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return finite_or_none(value)


def write_function(run: RunFolder, function: CardiacFunction, report: bool = True) -> tuple[Path, ...]:
    """Write ``function.json``, ``function.csv``, ``strain_segments.csv`` and (with ``report``)
    ``function_report.png``, each atomically; returns their paths."""
    columns = FUNCTION_COLUMNS if function.strain else FUNCTION_COLUMNS[:4]
    written = [write_text_atomic(run.function_json, json.dumps(_finite(function.summary()), indent=2) + "\n"),
               write_text_atomic(run.function_csv, csv_text(columns, function.rows()))]
    if function.strain:
        written.append(write_text_atomic(run.strain_segments_csv, csv_text(SEGMENT_COLUMNS, function.segment_rows())))
    if report:
        written.append(write_function_report(function, run.function_report_png,
                                             f"Cardiac function of {'/'.join(run.root.parts[-2:])}"))
    return tuple(written)


def run_function(run_dir: str | Path, blood_pool_label: int | None = None, es_frame: int | None = None,
                 rv_label: int | None = None, anterior_insertion_mm: np.ndarray | None = None) -> CardiacFunction:
    """Measure and write the cardiac function of the run in ``run_dir`` (``inr-cardiac function``): the LV cavity
    is value ``blood_pool_label`` (default: the run request's) of the reference frame's label map, the RV (orients
    the segments) value ``rv_label`` (default: the request's, if any)."""
    run = RunFolder(run_dir)
    request = run.read_request()
    label = blood_pool_label if blood_pool_label is not None else request.inputs.blood_pool_label
    if label is None:
        raise InputError("no LV blood-pool label: give the LV cavity's value in the reference frame's label map",
                         option="blood_pool_label")
    rv = rv_label if rv_label is not None else request.inputs.rv_label
    inputs, _ = read_cycle_inputs(request.with_changes(blood_pool_label=label, rv_label=rv).inputs,
                                  request.settings.reference_frame)
    function = measure_function(run, inputs.blood_pool, inputs.myocardium[inputs.reference_frame],
                                inputs.reference_frame, es_frame, inputs.right_ventricle, anterior_insertion_mm)
    write_function(run, function)
    return function
