"""LV cavity ED -> ES on the Sunnybrook cine MRI DICOM export (one patient, all phases mixed in one folder), scored
against the expert contours, with the same baselines as the ACDC benchmark.

The raw DICOM folder is read as a 4D sequence by the worker's own reader (grouped by slice position, phases
ordered by TriggerTime). The contour files ``IM-0001-NNNN-{i,o}contour-manual.txt`` (one "x y" pixel vertex per
line; x = column, y = row) belong to ``NNNN.dcm``; its TriggerTime and ImagePositionPatient place each contour in
a frame and slice of that sequence. ED = the phase with epicardial contours: label 1 = myocardium (between the
epicardial and endocardial contours), 2 = cavity (inside the endocardial one). ES: 2 = cavity.

The cycle is registered non-sequentially from ED with ``inr-cardiac register``, tracking the cavity
(``--myocardium-label 2``, heart mask = labels 1 and 2) with alpha 0 (only ED is labelled, so no SDF term
elsewhere). The ED cavity propagated to ES is scored (Dice, HD95) on the slices with an ES contour.

    python benchmarks/sunnybrook.py --device cpu --write-docs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from acdc import run_name
from baselines import MRI_PRESET, elastix_propagation, score
from benchmark_report import machine_description, register_or_reuse, update_section
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.cycle.run_folder import RunFolder
from INRCardiacRegistrationLib.engine.config import PRESETS
from INRCardiacRegistrationLib.engine.devices import resolve_device
from INRCardiacRegistrationLib.fileio.frame_sequence import FrameSequence, read_frame_sequence
from matplotlib.path import Path as Polygon

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "sunnybrook"
MYOCARDIUM, CAVITY = 1, 2


def _header(path: Path) -> tuple[float, tuple[float, ...]]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    position = tuple(round(float(v), 3) for v in reader.GetMetaData("0020|0032").split("\\"))
    return float(reader.GetMetaData("0018|1060")), position


def dicom_places(dicom_dir: Path, sequence: FrameSequence) -> dict[str, tuple[int, int]]:
    """File name -> (frame, slice index k) in ``sequence``: the frame is the rank of the file's TriggerTime among
    the files at its slice position (the reader's own rule; trigger times differ a little between slices), k its
    position on the reference grid."""
    headers = {path.name: _header(path) for path in dicom_dir.glob("*.dcm")}
    by_position: dict[tuple, list[float]] = {}
    for trigger, position in headers.values():
        by_position.setdefault(position, []).append(trigger)
    geometry = sequence.frames[0].geometry
    places = {}
    for name, (trigger, position) in headers.items():
        frame = sorted(by_position[position]).index(trigger)
        k = int(np.rint(geometry.physical_to_index(np.asarray([position]))[0][2]))
        places[name] = (frame, k)
    return places


def contour_labels(dicom_dir: Path, contour_dir: Path, sequence: FrameSequence) -> dict[int, Volume]:
    """Label maps (per contoured frame) from the manual contours: 1 myocardium (ED), 2 cavity."""
    shape = sequence.frames[0].array.shape  # (k, j, i)
    rows, columns = np.mgrid[0:shape[1], 0:shape[2]]
    centres = np.column_stack([columns.ravel(), rows.ravel()]).astype(float)  # (x, y) pixel centres
    places = dicom_places(dicom_dir, sequence)
    inside: dict[tuple[str, int, int], np.ndarray] = {}
    for kind in ("i", "o"):
        for path in sorted((contour_dir / f"{kind}-contours").glob(f"IM-0001-*-{kind}contour-manual.txt")):
            number = int(path.name.split("-")[2])
            frame, k = places[f"{number}.dcm"]
            vertices = np.loadtxt(path)
            inside[(kind, frame, k)] = Polygon(vertices).contains_points(centres).reshape(shape[1:])
    labels: dict[int, np.ndarray] = {}
    for (kind, frame, k), mask in inside.items():
        array = labels.setdefault(frame, np.zeros(shape, np.uint8))
        if kind == "o":
            array[k][mask & (array[k] == 0)] = MYOCARDIUM
        else:
            array[k][mask] = CAVITY
    return {t: sequence.frames[t].with_array(array) for t, array in labels.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--preset", default=MRI_PRESET, choices=sorted(PRESETS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--options", default="", help="further register options for our runs")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "sunnybrook")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    dicom_dir = args.root / "SCD0000101"
    sequence = read_frame_sequence(dicom_dir)
    labels = contour_labels(dicom_dir, args.root / "contours" / "SC-HF-I-1", sequence)
    ed = next(t for t, v in labels.items() if np.any(v.array == MYOCARDIUM))
    es = next(t for t in labels if t != ed)
    slices = sorted({int(k) for k in np.nonzero(np.any(labels[es].array == CAVITY, axis=(1, 2)))[0]})
    args.out.mkdir(parents=True, exist_ok=True)
    ed_path = args.out / "ed_labels.nii.gz"
    labels[ed].write(ed_path)
    truth = labels[es].array == CAVITY

    def on_scored_slices(mask: np.ndarray) -> np.ndarray:
        keep = np.zeros_like(mask, dtype=bool)
        keep[slices] = mask[slices]
        return keep

    geometry = labels[es].geometry
    rows = {"none": score(on_scored_slices(labels[ed].array == CAVITY), truth, geometry)}
    warped, seconds = elastix_propagation(sequence.frames[es], sequence.frames[ed], labels[ed])
    rows["elastix"] = (*score(on_scored_slices(warped == CAVITY), truth, geometry), seconds)
    device = resolve_device(args.device)
    run_dir = args.out / run_name("run", 0.0, args.options, args.preset)
    run = RunFolder(run_dir)
    argv = ["register", str(dicom_dir), "--out", str(run_dir), "--reference-frame", str(ed), "--labels",
            f"{ed}={ed_path}", "--myocardium-label", str(CAVITY), "--heart-label", "1", "2", "--alpha", "0",
            "--preset", args.preset, "--device", device.type, "--quiet", "--no-report", *args.options.split()]
    seconds = register_or_reuse(argv, run_dir)
    propagated = Volume.read(run.label_path(es)).array > 0
    rows["ours"] = (*score(on_scored_slices(propagated), truth, geometry), seconds,
                    run.read_frame_record(es).seconds)
    line = (f"| Sunnybrook SC-HF-I-1 (DICOM, {len(sequence.frames)} phases, ED {ed} -> ES {es}, {len(slices)} "
            f"contoured slices) | {rows['none'][0]:.3f} / {rows['none'][1]:.1f} | {rows['elastix'][0]:.3f} / "
            f"{rows['elastix'][1]:.1f} / {rows['elastix'][2]:.1f} | {rows['ours'][0]:.3f} / {rows['ours'][1]:.1f} / "
            f"{rows['ours'][2]:.0f} ({rows['ours'][3]:.1f}) |")
    text = ("| data | no registration: Dice / HD95 mm | elastix B-spline: Dice / HD95 mm / s | ours, alpha 0: "
            "Dice / HD95 mm / s (ED->ES pair) |\n|---|---|---|---|\n" + line)
    print(text)
    if args.write_docs:
        options = f" with `{args.options}`" if args.options else ""
        body = (f"Machine: {machine_description(device)}. Preset `{args.preset}`{options}. LV cavity "
                f"of ED propagated to ES, scored on the slices with an ES contour.\n\n"
                f"    python benchmarks/sunnybrook.py --preset {args.preset} --device {args.device} --write-docs\n\n"
                f"{text}\n")
        update_section("Sunnybrook cine MRI DICOM: ED -> ES LV cavity", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
