"""Landmark files: Slicer markups fiducial JSON (``.mrk.json``), Slicer ``.fcsv`` and plain CSV.

Every point this module returns or accepts is a physical point in **LPS millimetres** (the ITK / DICOM
convention, the one of the whole project). Slicer keeps RAS in memory; its ``.mrk.json`` files may say
``"coordinateSystem": "RAS"`` or ``"LPS"``, and this module converts RAS to LPS on reading
(``LPS = (-R, -A, S)``). Files written here always say LPS.

Formats:

- ``.mrk.json``: one markups node of type ``Fiducial`` (schema ``markups-schema-v1.0.3``), one control
  point per landmark with ``label`` and ``position``.
- trajectories CSV: header ``frame,landmark,x,y,z``, one row per (frame, landmark), LPS mm.
- reference-points CSV: header ``landmark,x,y,z`` or ``x,y,z`` (then labels are ``1``, ``2``, ...), LPS mm.
- ``.fcsv`` (Slicer's legacy fiducial CSV), LPS or RAS as its header says.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.atomic_file import write_text_atomic
from ..core.text_files import read_json, read_text
from ..core.vocabulary import InputError

MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])  # elementwise: LPS = RAS * RAS_TO_LPS (and back)
TRAJECTORY_HEADER = ("frame", "landmark", "x", "y", "z")


@dataclass(frozen=True)
class Landmarks:
    """Named physical points: ``labels[n]`` is at ``points_lps[n]`` (LPS mm)."""

    labels: tuple[str, ...]
    points_lps: np.ndarray  # (N, 3) float64, LPS mm

    def __post_init__(self) -> None:
        points = np.asarray(self.points_lps, dtype=np.float64)
        labels = tuple(str(label) for label in self.labels)
        if points.ndim != 2 or points.shape[1] != 3:
            raise InputError(f"landmark points_lps must have shape (N, 3), got {points.shape}")
        if len(labels) != points.shape[0]:
            raise InputError(f"landmarks: {len(labels)} labels for {points.shape[0]} points")
        if not np.all(np.isfinite(points)):
            raise InputError("landmark points_lps contain NaN or infinite coordinates")
        if len(set(labels)) != len(labels):
            raise InputError(f"landmark labels must be unique, got {list(labels)}")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "points_lps", points)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def points_ras(self) -> np.ndarray:
        """The same points in RAS mm (Slicer's in-memory convention)."""
        return self.points_lps * RAS_TO_LPS


@dataclass(frozen=True)
class Trajectories:
    """Landmark positions through a cycle: ``points_lps[t, n]`` is landmark ``labels[n]`` in frame
    ``frames[t]`` (LPS mm)."""

    frames: tuple[int, ...]
    labels: tuple[str, ...]
    points_lps: np.ndarray  # (T, N, 3) float64, LPS mm

    def __post_init__(self) -> None:
        points = np.asarray(self.points_lps, dtype=np.float64)
        frames = tuple(int(f) for f in self.frames)
        labels = tuple(str(label) for label in self.labels)
        if points.ndim != 3 or points.shape[2] != 3:
            raise InputError(f"trajectory points_lps must have shape (T, N, 3), got {points.shape}")
        if points.shape[:2] != (len(frames), len(labels)):
            raise InputError(f"trajectories: points of shape {points.shape} for {len(frames)} frames and "
                             f"{len(labels)} landmarks")
        if len(set(frames)) != len(frames) or len(set(labels)) != len(labels):
            raise InputError("trajectory frames and landmark labels must be unique")
        if not np.all(np.isfinite(points)):
            raise InputError("trajectory points contain NaN or infinite coordinates")
        object.__setattr__(self, "frames", frames)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "points_lps", points)

    def at_frame(self, frame: int) -> Landmarks:
        """The landmarks of one frame (by frame number, not position in ``frames``)."""
        if frame not in self.frames:
            raise InputError(f"frame {frame} is not in the trajectories (frames {list(self.frames)})")
        return Landmarks(self.labels, self.points_lps[self.frames.index(frame)])


# --- helpers ------------------------------------------------------------------------------------------
def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")


def _coordinate_system(value: object, path: Path) -> str:
    """'LPS' or 'RAS' from a markups/fcsv header value (Slicer also writes 0 = RAS, 1 = LPS)."""
    text = str(value).strip().upper()
    if text in ("LPS", "1"):
        return "LPS"
    if text in ("RAS", "0"):
        return "RAS"
    raise InputError(f"{path}: unsupported coordinate system {value!r} (expected 'LPS' or 'RAS')")


# --- Slicer markups JSON ------------------------------------------------------------------------------
def markups_json_dict(landmarks: Landmarks, name: str = "Landmarks",
                      descriptions: list[str] | None = None) -> dict:
    """The Slicer markups JSON document (a ``dict``) for ``landmarks``, written in LPS mm."""
    if descriptions is not None and len(descriptions) != len(landmarks):
        raise InputError(f"descriptions: {len(descriptions)} entries for {len(landmarks)} landmarks")
    control_points = []
    for index, (label, point) in enumerate(zip(landmarks.labels, landmarks.points_lps, strict=True)):
        control_points.append({
            "id": str(index + 1),
            "label": label,
            "description": descriptions[index] if descriptions else "",
            "associatedNodeID": "",
            "position": [float(c) for c in point],
            "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
            "selected": True,
            "locked": True,
            "visibility": True,
            "positionStatus": "defined",
        })
    return {
        "@schema": MARKUPS_SCHEMA,
        "markups": [{
            "type": "Fiducial",
            "name": name,
            "coordinateSystem": "LPS",
            "coordinateUnits": "mm",
            "locked": False,
            "fixedNumberOfControlPoints": False,
            "labelFormat": "%N-%d",
            "lastUsedControlPointNumber": len(control_points),
            "controlPoints": control_points,
            "measurements": [],
        }],
    }


def write_markups_json(path: str | Path, landmarks: Landmarks, name: str = "Landmarks",
                       descriptions: list[str] | None = None) -> Path:
    """Write ``landmarks`` (LPS mm) as a Slicer markups fiducial file (``.mrk.json``), atomically."""
    path = Path(path)
    if not path.name.lower().endswith(".json"):
        raise InputError(f"markups file name must end with .mrk.json, got {path.name!r}")
    text = json.dumps(markups_json_dict(landmarks, name, descriptions), indent=2) + "\n"
    return write_text_atomic(path, text)


def read_markups_json(path: str | Path) -> Landmarks:
    """Read the control points of the first markups node in a Slicer ``.mrk.json`` file as LPS mm.

    A file in RAS is converted to LPS. Points without a defined position (``positionStatus`` other than
    ``defined``) are skipped; an unlabelled point gets its 1-based number as label.
    """
    path = Path(path)
    _require_file(path, "markups")
    document = read_json(path, "markups")
    markups = document.get("markups") if isinstance(document, dict) else None
    if not markups or not isinstance(markups, list):
        raise InputError(f"{path} holds no 'markups' list (not a Slicer markups file)")
    node = markups[0]
    system = _coordinate_system(node.get("coordinateSystem", "LPS"), path)
    labels: list[str] = []
    points: list[list[float]] = []
    for index, point in enumerate(node.get("controlPoints") or []):
        if point.get("positionStatus", "defined") != "defined":
            continue
        position = point.get("position")
        if not isinstance(position, list) or len(position) != 3:
            raise InputError(f"{path}: control point {index + 1} has no 3D 'position'")
        labels.append(str(point.get("label") or index + 1))
        try:
            points.append([float(c) for c in position])
        except (TypeError, ValueError):
            raise InputError(f"{path}: control point {index + 1} has a position that is not 3 numbers: "
                             f"{position!r}") from None
    return _landmarks_lps(labels, points, system, f"{path}: the markups node has no defined control points")


def _landmarks_lps(labels: list[str], points: list[list[float]], system: str, empty: str) -> Landmarks:
    """Landmarks in LPS from points read in ``system`` (``"RAS"`` or ``"LPS"``); InputError ``empty`` for none."""
    if not points:
        raise InputError(empty)
    array = np.asarray(points, dtype=np.float64)
    return Landmarks(tuple(labels), array * RAS_TO_LPS if system == "RAS" else array)


# --- Slicer legacy .fcsv ------------------------------------------------------------------------------
def read_fcsv(path: str | Path) -> Landmarks:
    """Read a Slicer ``.fcsv`` fiducial list as LPS mm (RAS files, the old default, are converted)."""
    path = Path(path)
    _require_file(path, "fcsv")
    system = "RAS"
    columns = ["id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label", "desc",
               "associatedNodeID"]
    labels: list[str] = []
    points: list[list[float]] = []
    for line in read_text(path, "fcsv").splitlines():
        if line.startswith("#"):
            key, _, value = line[1:].partition("=")
            if key.strip().lower() == "coordinatesystem":
                system = _coordinate_system(value, path)
            elif key.strip().lower() == "columns":
                columns = [c.strip() for c in value.split(",")]
            continue
        if not line.strip():
            continue
        row = dict(zip(columns, next(csv.reader([line])), strict=False))
        try:
            points.append([float(row["x"]), float(row["y"]), float(row["z"])])
        except (KeyError, ValueError) as error:
            raise InputError(f"{path}: cannot read x, y, z from the line {line!r}") from error
        labels.append(row.get("label") or str(len(points)))
    return _landmarks_lps(labels, points, system, f"{path} holds no fiducial points")


# --- CSV ----------------------------------------------------------------------------------------------
def _read_csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    text = read_text(path, "landmarks CSV", encoding="utf-8-sig")
    rows = [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise InputError(f"{path} is empty")
    return [cell.strip().lower() for cell in rows[0]], [[cell.strip() for cell in row] for row in rows[1:]]


def read_points_csv(path: str | Path) -> Landmarks:
    """Read reference points from a CSV with header ``landmark,x,y,z`` or ``x,y,z`` (LPS mm).

    Without a ``landmark`` (or ``label``) column the points are labelled ``1``, ``2``, ... in file order.
    """
    path = Path(path)
    _require_file(path, "landmark CSV")
    header, rows = _read_csv_rows(path)
    if not {"x", "y", "z"} <= set(header):
        raise InputError(f"{path}: expected a header with columns x,y,z (and optionally landmark), "
                         f"got {header}")
    label_names = [name for name in ("landmark", "label", "name") if name in header]
    label_column = header.index(label_names[0]) if label_names else None
    if "frame" in header:
        raise InputError(f"{path} has a 'frame' column: read it with read_trajectories_csv")
    ix, iy, iz = header.index("x"), header.index("y"), header.index("z")
    labels: list[str] = []
    points: list[list[float]] = []
    for number, row in enumerate(rows, start=2):
        try:
            points.append([float(row[ix]), float(row[iy]), float(row[iz])])
        except (IndexError, ValueError) as error:
            raise InputError(f"{path}, line {number}: cannot read x, y, z from {row}") from error
        labels.append(row[label_column] if label_column is not None else str(len(points)))
    if not points:
        raise InputError(f"{path} holds no points")
    return Landmarks(tuple(labels), np.asarray(points))


def write_trajectories_csv(path: str | Path, trajectories: Trajectories, decimals: int = 6) -> Path:
    """Write ``frame,landmark,x,y,z`` rows (LPS mm), frame-major, atomically."""
    path = Path(path)
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(TRAJECTORY_HEADER)
    for t, frame in enumerate(trajectories.frames):
        for n, label in enumerate(trajectories.labels):
            x, y, z = trajectories.points_lps[t, n]
            writer.writerow([frame, label, f"{x:.{decimals}f}", f"{y:.{decimals}f}", f"{z:.{decimals}f}"])
    return write_text_atomic(path, stream.getvalue())


def read_trajectories_csv(path: str | Path) -> Trajectories:
    """Read a ``frame,landmark,x,y,z`` CSV (LPS mm). Every landmark must appear in every frame."""
    path = Path(path)
    _require_file(path, "trajectory CSV")
    header, rows = _read_csv_rows(path)
    missing = [name for name in TRAJECTORY_HEADER if name not in header]
    if missing:
        raise InputError(f"{path}: trajectory CSV needs the columns {','.join(TRAJECTORY_HEADER)}, "
                         f"missing {missing}")
    column = {name: header.index(name) for name in TRAJECTORY_HEADER}
    table: dict[tuple[int, str], list[float]] = {}
    frames: list[int] = []
    labels: list[str] = []
    for number, row in enumerate(rows, start=2):
        try:
            frame = int(row[column["frame"]])
            label = row[column["landmark"]]
            point = [float(row[column[c]]) for c in "xyz"]
        except (IndexError, ValueError) as error:
            raise InputError(f"{path}, line {number}: cannot read frame,landmark,x,y,z from {row}") from error
        if (frame, label) in table:
            raise InputError(f"{path}, line {number}: landmark {label!r} appears twice in frame {frame}")
        table[(frame, label)] = point
        if frame not in frames:
            frames.append(frame)
        if label not in labels:
            labels.append(label)
    if not table:
        raise InputError(f"{path} holds no trajectory rows")
    frames.sort()
    missing_pairs = [(f, n) for f in frames for n in labels if (f, n) not in table]
    if missing_pairs:
        raise InputError(f"{path}: {len(missing_pairs)} (frame, landmark) pairs are missing, "
                         f"e.g. {missing_pairs[0]}")
    points = np.array([[table[(f, n)] for n in labels] for f in frames], dtype=np.float64)
    return Trajectories(tuple(frames), tuple(labels), points)


# --- any format ---------------------------------------------------------------------------------------
def read_landmarks(path: str | Path, frame: int | None = None) -> Landmarks:
    """Read reference landmarks (LPS mm) from ``.mrk.json`` / ``.json``, ``.fcsv`` or ``.csv``.

    A trajectories CSV (with a ``frame`` column) is accepted too: the rows of ``frame`` (the reference frame;
    ValueError when the file has none), or of its lowest frame when ``frame`` is None.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".json"):
        return read_markups_json(path)
    if name.endswith(".fcsv"):
        return read_fcsv(path)
    if name.endswith(".csv"):
        _require_file(path, "landmark CSV")
        header, _ = _read_csv_rows(path)
        if "frame" in header:
            trajectories = read_trajectories_csv(path)
            return trajectories.at_frame(trajectories.frames[0] if frame is None else frame)
        return read_points_csv(path)
    raise InputError(f"unsupported landmark file {path.name!r}: use .mrk.json, .fcsv or .csv")
