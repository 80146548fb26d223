"""Reading the 4D input of a whole-cycle registration into 3D frames that all lie on one grid.

Every geometry is SimpleITK's (LPS millimetres, see :mod:`..core.geometry`); every frame is a :class:`Volume`
indexed ``[k, j, i]``. Accepted inputs:

- a 4D image file SimpleITK reads (NIfTI, NRRD, MetaImage): frames along the 4th axis; the 3D grid is the
  first three spacings/origin values and the first 3x3 block of the 4D direction.
- a Slicer volume sequence ``.seq.nrrd`` (``kinds: domain domain domain list``). SimpleITK reads it as a
  3D image with one *component* per frame (metadata ``NRRD_kinds[pixel] = list``); the list axis's
  index values become ``trigger_times_ms`` when its unit is ``ms`` or ``s``.
- a folder of 3D frame files (any SimpleITK format), in natural name order (``frame2`` before
  ``frame10``); hidden files and files no image reader recognises are ignored.
- a DICOM folder holding all phases mixed: files are grouped into slice positions (ImagePositionPatient
  projected on the slice normal) and ordered within each position by TriggerTime (0018,1060), else
  TemporalPositionIdentifier (0020,0100), else InstanceNumber (0020,0013); frame t is the t-th file of
  every position.

Frames on different grids are resampled (linear) onto the reference frame's grid with a warning.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.geometry import Geometry
from ..core.gzip_check import require_complete_gzip
from ..core.itk_file_access import ITK_FILE_ACCESS
from ..core.vocabulary import InputError
from ..core.volume import Volume, itk_error_text, unreadable_image

GRID_TOLERANCE_MM = 1e-3
DICOM_POSITION_TOLERANCE_MM = 0.01
MINIMUM_OVERLAP = 0.5  # fraction of the reference frame's physical box a frame must cover to be resampled
SEQUENCE_KINDS = ("a 4D NIfTI/NRRD, a .seq.nrrd, a folder of 3D frames or a DICOM folder")

_TRIGGER_TIME = "0018|1060"
_TEMPORAL_POSITION = "0020|0100"
_INSTANCE_NUMBER = "0020|0013"
_IMAGE_POSITION = "0020|0032"
_IMAGE_ORIENTATION = "0020|0037"
_ROWS = "0028|0010"
_COLUMNS = "0028|0011"
_FRAME_ASSIGNMENT = re.compile(r"^\s*(-?\d+)\s*=(.*)$")
_IO_NAMES = {"NiftiImageIO": "NIfTI", "NrrdImageIO": "NRRD", "MetaImageIO": "MetaImage"}


@dataclass
class FrameSequence:
    """The frames of one cardiac cycle, all on the reference frame's grid (LPS mm).

    ``original_geometries[t]`` is frame t's grid as read; ``resampled`` lists the frames that were
    resampled (linear) onto the reference grid; ``trigger_times_ms`` is per frame when the input says.
    """

    frames: list[Volume]
    source: str
    frame_names: list[str]
    original_geometries: list[Geometry]
    resampled: list[int]
    warnings: list[str]
    trigger_times_ms: list[float] | None = None

    @property
    def geometry(self) -> Geometry:
        """The common (reference frame's) grid of every frame."""
        return self.frames[0].geometry

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class _RawFrame:
    array: np.ndarray  # (k, j, i) or (k, j, i, components), as read
    geometry: Geometry
    label: str = ""  # the file name when the frame has its own file

    @property
    def components(self) -> int:
        return 1 if self.array.ndim == 3 else int(self.array.shape[3])


@dataclass
class _RawSequence:
    frames: list[_RawFrame]
    source: str
    frame_names: list[str]
    single_3d: bool = False
    trigger_times_ms: list[float] | None = None
    warnings: list[str] = field(default_factory=list)


# --- public API --------------------------------------------------------------------------------------------
def read_frame_sequence(path: str | Path, reference_frame: int = 0, name: str = "image") -> FrameSequence:
    """Read a 4D sequence (see the module docstring) into 3D frames on the grid of ``reference_frame``.

    Integer frames keep their dtype, floating-point frames become float32; intensities are unchanged
    unless a frame had to be resampled. Raises ValueError (one line, naming the path) for anything else.
    """
    path = Path(path)
    raw = _read_raw(path, name, "a 4D sequence (3D frames over time)")
    if raw.single_3d:
        raise InputError(f"{name}: {path} is a single 3D image; a whole-cycle registration needs a 4D sequence: "
                         f"{SEQUENCE_KINDS}")
    count = len(raw.frames)
    if count < 2:
        raise InputError(f"{name}: {path} holds only {count} frame; a whole-cycle registration needs at least 2")
    _require_scalar_frames(raw, path, name)
    if not 0 <= reference_frame < count:
        raise InputError(f"{name}: reference_frame {reference_frame} is out of range for the {count} frames of "
                         f"{path} (0 to {count - 1})")

    reference = raw.frames[reference_frame].geometry
    messages = list(raw.warnings)
    frames: list[Volume] = []
    resampled: list[int] = []
    for t, frame in enumerate(raw.frames):
        what = _frame_text(name, t, frame.label)
        array = _intensity_array(frame.array, what)
        if frame.geometry.matches(reference, GRID_TOLERANCE_MM):
            frames.append(Volume(array, reference, f"{name} frame {t}"))
            continue
        grids = (f"its grid ({_grid_text(frame.geometry, reference)}), the reference frame {reference_frame} grid "
                 f"({_grid_text(reference, frame.geometry)})")
        overlap = _overlap_fraction(reference, frame.geometry)
        if overlap < MINIMUM_OVERLAP:
            raise InputError(f"{what} cannot be resampled onto the reference grid: it covers only {overlap:.0%} of "
                             f"the reference frame's box; {grids}")
        default = float(np.min(array)) if array.size else 0.0
        frames.append(Volume(Volume(array, frame.geometry).resampled(reference, sitk.sitkLinear, default), reference,
                             f"{name} frame {t}"))
        resampled.append(t)
        messages.append(f"{what} lies on another grid than the reference frame; resampled it (linear) onto the "
                        f"reference grid: {grids}")
    for message in messages:
        warnings.warn(message, UserWarning, stacklevel=2)
    return FrameSequence(frames=frames, source=raw.source, frame_names=list(raw.frame_names),
                         original_geometries=[frame.geometry for frame in raw.frames], resampled=resampled,
                         warnings=messages, trigger_times_ms=raw.trigger_times_ms)


def read_frame_labels(spec: str | Path | list[str] | None, sequence: FrameSequence,
                      name: str = "labels") -> dict[int, Volume]:
    """Per-frame label maps (integer arrays, values unchanged) on ``sequence``'s grid, keyed by frame index.

    ``spec``: None (no labels); one path -- a 4D label image / ``.seq.nrrd`` with as many frames as the
    sequence, or a folder with one label file per frame (natural order); or a list of ``"FRAME=PATH"``
    strings (0-based FRAME) for only some frames. Each label must lie on its frame's grid as read
    (``sequence.original_geometries[t]``); labels of resampled frames are resampled (nearest neighbour).
    """
    if spec is None:
        return {}
    entries: list = [spec] if isinstance(spec, (str, Path)) else list(spec)
    if not entries:
        return {}
    if len(entries) == 1 and (isinstance(entries[0], Path) or not _FRAME_ASSIGNMENT.match(str(entries[0]))):
        return _labels_for_every_frame(Path(entries[0]), sequence, name)

    count = len(sequence.frames)
    assigned: dict[int, Path] = {}
    for entry in entries:
        match = _FRAME_ASSIGNMENT.match(str(entry)) if isinstance(entry, str) else None
        if match is None or not match[2].strip():
            raise InputError(f"{name}: {str(entry)!r} is not FRAME=PATH (FRAME a 0-based frame index); give one path "
                             f"for every frame or FRAME=PATH entries for some frames")
        frame, path = int(match[1]), Path(match[2].strip())
        if not 0 <= frame < count:
            raise InputError(f"{name}: frame {frame} in {entry!r} is out of range for the {count}-frame image "
                             f"sequence (0 to {count - 1})")
        if frame in assigned:
            raise InputError(f"{name}: frame {frame} is given twice ({assigned[frame]} and {path})")
        assigned[frame] = path

    labels: dict[int, Volume] = {}
    for frame in sorted(assigned):
        path = assigned[frame]
        raw = _read_raw(path, f"{name} for frame {frame}", "a 3D label image")
        if len(raw.frames) != 1:
            raise InputError(f"{name} for frame {frame}: {path} holds {len(raw.frames)} frames; FRAME=PATH needs "
                             f"one 3D label image")
        labels[frame] = _label_volume(raw.frames[0], frame, path.name, sequence, name)
    return labels


def read_4d_frames(path: str | Path, name: str = "image") -> list[Volume]:
    """The frames of one 4D image file or ``.seq.nrrd`` as stored (dtype and grid unchanged), named
    ``"{name} frame {t}"``; ValueError when the file is not a 4D sequence."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{name}: file not found: {path}")
    raw = _read_file(path, name, "a 4D image")
    if raw.single_3d:
        raise InputError(f"{name}: {path} is a single 3D image, not a 4D image")
    _require_scalar_frames(raw, path, name)
    return [Volume(frame.array, frame.geometry, f"{name} frame {t}") for t, frame in enumerate(raw.frames)]


def natural_sort_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: ``frame2`` before ``frame10`` (case-insensitive)."""
    parts = re.split(r"([0-9]+)", name)
    return tuple(int(part) if index % 2 else part.lower() for index, part in enumerate(parts)), name


# --- reading, whatever the input kind ---------------------------------------------------------------------
def _read_raw(path: Path, name: str, expected: str) -> _RawSequence:
    if path.is_dir():
        return _read_folder(path, name, expected)
    if not path.exists():
        raise InputError(f"{name}: file or folder not found: {path}")
    return _read_file(path, name, expected)


def _read_file(path: Path, name: str, expected: str) -> _RawSequence:
    image = _read_image(path, name)
    dimension = image.GetDimension()
    io_name = _image_io(path)
    kind = _IO_NAMES.get(io_name, io_name.replace("ImageIO", ""))
    if dimension == 4:
        array = sitk.GetArrayFromImage(image)  # (t, k, j, i[, c])
        geometry = _spatial_geometry(image, name, path)
        frames = [_RawFrame(array[t], geometry) for t in range(array.shape[0])]
        return _RawSequence(frames, f"4D {kind} image".replace("  ", " "), [f"frame {t}" for t in range(len(frames))])
    if dimension != 3:
        raise InputError(f"{name}: {path} is a {dimension}D image; expected {expected}")
    geometry = _spatial_geometry(image, name, path)
    if _is_volume_sequence(image, path):
        array = sitk.GetArrayFromImage(image)  # (k, j, i, frames): the list axis comes back as components
        if array.ndim == 3:
            array = array[..., np.newaxis]
        count = array.shape[3]
        frames = [_RawFrame(np.ascontiguousarray(array[..., t]), geometry) for t in range(count)]
        times, names = _sequence_index(image, count)
        return _RawSequence(frames, "Slicer volume sequence (.seq.nrrd)", names, trigger_times_ms=times)
    return _RawSequence([_RawFrame(sitk.GetArrayFromImage(image), geometry, path.name)],
                        f"3D {kind} image".replace("  ", " "), [path.name], single_3d=True)


def _read_folder(folder: Path, name: str, expected: str) -> _RawSequence:
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: natural_sort_key(p.name))
    readers = {p: _image_io(p) for p in files}
    dicom = [p for p in files if readers[p] == "GDCMImageIO"]
    other = [p for p in files if readers[p] not in ("", "GDCMImageIO")]
    if dicom and other:
        raise InputError(f"{name}: folder {folder} holds both DICOM files ({dicom[0].name}, ...) and other image "
                         f"files ({other[0].name}, ...); put the frames of one sequence in a folder of their own")
    if dicom:
        return _read_dicom_folder(folder, dicom, name)
    if not other:
        raise InputError(f"{name}: folder {folder} contains no image files")
    frames: list[_RawFrame] = []
    for path in other:
        image = _read_image(path, name)
        if image.GetDimension() != 3:
            raise InputError(f"{name}: {path} is a {image.GetDimension()}D image; a folder must hold one 3D frame "
                             f"per file (expected {expected})")
        frames.append(_RawFrame(sitk.GetArrayFromImage(image), _spatial_geometry(image, name, path), path.name))
    return _RawSequence(frames, f"folder of {len(frames)} 3D frames", [p.name for p in other])


# --- DICOM ---------------------------------------------------------------------------------------------------
@dataclass
class _DicomFile:
    path: Path
    position: np.ndarray  # ImagePositionPatient, LPS mm
    orientation: np.ndarray  # ImageOrientationPatient: row and column direction cosines
    size: tuple[int, int]
    trigger_time: float | None
    temporal_position: float | None
    instance: float | None


def _read_dicom_folder(folder: Path, files: list[Path], name: str) -> _RawSequence:
    where = f"{name}: DICOM folder {folder}"
    headers = [header for header in (_dicom_header(p, name) for p in files) if header is not None]
    if not headers:
        raise InputError(f"{where} contains no DICOM images")
    first = headers[0]
    for header in headers[1:]:
        if np.max(np.abs(header.orientation - first.orientation)) > 1e-4:
            raise InputError(f"{where}: {first.path.name} and {header.path.name} have different image orientations; "
                             f"expected one stack of parallel slices")
        if header.size != first.size:
            raise InputError(f"{where}: {first.path.name} has {first.size[0]}x{first.size[1]} pixels but "
                             f"{header.path.name} {header.size[0]}x{header.size[1]}; expected one stack")
    normal = np.cross(first.orientation[:3], first.orientation[3:])
    normal /= np.linalg.norm(normal)

    # group into slice positions along the normal
    by_height = sorted(headers, key=lambda h: float(h.position @ normal))
    groups: list[list[_DicomFile]] = [[by_height[0]]]
    for header in by_height[1:]:
        if float((header.position - groups[-1][-1].position) @ normal) > DICOM_POSITION_TOLERANCE_MM:
            groups.append([header])
        else:
            groups[-1].append(header)
    for group in groups:
        for header in group[1:]:
            if np.max(np.abs(header.position - group[0].position)) > DICOM_POSITION_TOLERANCE_MM:
                raise InputError(f"{where}: {group[0].path.name} and {header.path.name} lie in the same slice plane "
                                 f"at different in-plane positions; expected one stack")
    heights = [float(group[0].position @ normal) for group in groups]

    # order the phases of each position
    orderings = (("trigger_time", "trigger time"), ("temporal_position", "temporal position"),
                 ("instance", "instance number"))
    def orders_phases(attribute: str) -> bool:
        """Present in every file and distinct within each slice position (some scanners write a constant
        TriggerTime)."""
        values = [[getattr(h, attribute) for h in group] for group in groups]
        return all(v is not None for group in values for v in group) and all(
            len(set(group)) == len(group) for group in values)

    present = [(a, t) for a, t in orderings if all(getattr(h, a) is not None for h in headers)]
    if not present:
        raise InputError(f"{where}: cannot order the phases: the files lack TriggerTime (0018,1060), "
                         f"TemporalPositionIdentifier (0020,0100) and InstanceNumber (0020,0013)")
    attribute, text = next(((a, t) for a, t in present if orders_phases(a)), present[0])
    for group, height in zip(groups, heights, strict=True):
        group.sort(key=lambda h: (getattr(h, attribute), h.instance or 0.0, natural_sort_key(h.path.name)))
        values = [getattr(h, attribute) for h in group]
        for (a, value_a), (b, value_b) in pairwise(zip(group, values, strict=True)):
            if value_a == value_b:
                raise InputError(f"{where}: {a.path.name} and {b.path.name} lie at the same slice position "
                                 f"({height:.2f} mm) with the same {text} {value_a:g}; two series in one folder?")
    counts = Counter(len(group) for group in groups)
    if len(counts) > 1:
        usual = counts.most_common(1)[0][0]
        odd = [f"position {height:.2f} mm has {len(group)} ({group[0].path.name}, ...)"
               for group, height in zip(groups, heights, strict=True) if len(group) != usual]
        raise InputError(f"{where}: slice positions hold different numbers of phases: {'; '.join(odd)}; the other "
                         f"{counts[usual]} positions have {usual}")
    phases = len(groups[0])

    frames: list[_RawFrame] = []
    for t in range(phases):
        files_t = [str(group[t].path) for group in groups]  # ascending along the slice normal
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files_t)
        try:
            image = reader.Execute()
        except RuntimeError as error:
            raise InputError(f"{where}: cannot read phase {t}: {itk_error_text(error)}") from error
        frames.append(_RawFrame(sitk.GetArrayFromImage(image), _spatial_geometry(image, name, folder)))

    messages: list[str] = []
    if len(heights) >= 3:
        gaps = np.diff(heights)
        if np.max(gaps) - np.min(gaps) > DICOM_POSITION_TOLERANCE_MM:
            messages.append(f"{where}: slice gaps are uneven ({np.min(gaps):.3f} to {np.max(gaps):.3f} mm); the frames "
                            f"assume evenly spaced slices ({frames[0].geometry.spacing[2]:.3f} mm)")
    times = None
    if attribute == "trigger_time":
        times = [float(np.mean([group[t].trigger_time for group in groups])) for t in range(phases)]
        names = [f"phase {t} (trigger time {times[t]:.1f} ms)" for t in range(phases)]
    elif attribute == "temporal_position":
        names = [f"phase {t} (temporal position {groups[0][t].temporal_position:g})" for t in range(phases)]
    else:
        names = [f"phase {t}" for t in range(phases)]
    source = (f"DICOM folder: {len(groups)} slice{'s' if len(groups) != 1 else ''} x {phases} "
              f"phase{'s' if phases != 1 else ''} grouped by {text}")
    return _RawSequence(frames, source, names, single_3d=phases == 1, trigger_times_ms=times, warnings=messages)


def _dicom_header(path: Path, name: str) -> _DicomFile | None:
    """The tags of one DICOM file (no pixel data read); None for DICOM files that hold no image."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with ITK_FILE_ACCESS:
            reader.ReadImageInformation()
    except RuntimeError as error:
        if path.name.upper() == "DICOMDIR":
            return None
        raise InputError(f"{name}: cannot read DICOM file {path}: {itk_error_text(error)}") from error
    keys = set(reader.GetMetaDataKeys())
    if _ROWS not in keys or _COLUMNS not in keys:
        return None

    def numbers(tag: str, count: int) -> np.ndarray | None:
        if tag not in keys or not reader.GetMetaData(tag).strip():
            return None
        try:
            values = np.array([float(v) for v in reader.GetMetaData(tag).strip().split("\\")], dtype=np.float64)
        except ValueError:
            raise InputError(f"{name}: DICOM file {path}: tag ({tag.replace('|', ',')}) is not numeric: "
                             f"{reader.GetMetaData(tag).strip()!r}") from None
        if values.size != count or not np.all(np.isfinite(values)):
            raise InputError(f"{name}: DICOM file {path}: tag ({tag.replace('|', ',')}) should hold {count} "
                             f"number(s), got {reader.GetMetaData(tag).strip()!r}")
        return values

    position, orientation = numbers(_IMAGE_POSITION, 3), numbers(_IMAGE_ORIENTATION, 6)
    if position is None or orientation is None:
        raise InputError(f"{name}: DICOM file {path} lacks ImagePositionPatient (0020,0032) or "
                         f"ImageOrientationPatient (0020,0037); cannot place its slice")
    size = reader.GetSize()
    if len(size) > 2 and size[2] > 1:
        raise InputError(f"{name}: DICOM file {path} holds {size[2]} frames in one file (multi-frame DICOM); "
                         f"expected one file per slice and phase")
    scalar = {tag: (None if (v := numbers(tag, 1)) is None else float(v[0]))
              for tag in (_TRIGGER_TIME, _TEMPORAL_POSITION, _INSTANCE_NUMBER)}
    return _DicomFile(path, position, orientation, (int(size[0]), int(size[1])), scalar[_TRIGGER_TIME],
                      scalar[_TEMPORAL_POSITION], scalar[_INSTANCE_NUMBER])


# --- labels -----------------------------------------------------------------------------------------------------
def _labels_for_every_frame(path: Path, sequence: FrameSequence, name: str) -> dict[int, Volume]:
    count = len(sequence.frames)
    raw = _read_raw(path, name, "a 4D label image or a folder of 3D label files")
    if raw.single_3d:
        raise InputError(f"{name}: {path} is a single 3D label image but the image sequence has {count} frames; "
                         f"give a 4D label image, a folder with one label file per frame, or FRAME=PATH entries")
    if len(raw.frames) != count:
        raise InputError(f"{name}: {path} holds {len(raw.frames)} label frames but the image sequence has {count}")
    return {t: _label_volume(frame, t, frame.label or f"{path.name} frame {t}", sequence, name)
            for t, frame in enumerate(raw.frames)}


def _label_volume(frame: _RawFrame, t: int, source: str, sequence: FrameSequence, name: str) -> Volume:
    what = f"{name} for frame {t} ({source})"
    if frame.components != 1:
        raise InputError(f"{what}: has {frame.components} components per voxel; labels must be scalar")
    array = _label_array(frame.array, what)
    original = sequence.original_geometries[t]
    if not frame.geometry.matches(original, GRID_TOLERANCE_MM):
        raise InputError(f"{what}: grid {_grid_text(frame.geometry, original)} does not match the image frame {t} "
                         f"grid {_grid_text(original, frame.geometry)}")
    reference = sequence.geometry
    if t in sequence.resampled:
        array = Volume(array, frame.geometry).resampled(reference, sitk.sitkNearestNeighbor)
    return Volume(array, reference, f"{name} frame {t}")


def _label_array(array: np.ndarray, what: str) -> np.ndarray:
    if np.issubdtype(array.dtype, np.integer):
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{what}: pixel type {array.dtype} is not a label type; labels must be integers")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{what}: holds {int(np.count_nonzero(~np.isfinite(array)))} NaN or infinite values; "
                         f"labels must be integers")
    fractional = array != np.round(array)
    if np.any(fractional):
        raise InputError(f"{what}: holds non-integer values (e.g. {float(array[fractional][0]):g}); labels must be "
                         f"integers")
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    info = np.iinfo(np.int32)
    return array.astype(np.int32 if info.min <= low and high <= info.max else np.int64)


# --- helpers ---------------------------------------------------------------------------------------------------
def _read_image(path: Path, name: str) -> sitk.Image:
    require_complete_gzip(path, name)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with ITK_FILE_ACCESS:
            return reader.Execute()
    except RuntimeError as error:
        raise unreadable_image(name, path, error) from error


def _image_io(path: Path) -> str:
    """Name of the ITK ImageIO that can read ``path`` ("" when none can)."""
    try:
        with ITK_FILE_ACCESS:
            return sitk.ImageFileReader.GetImageIOFromFileName(str(path))
    except RuntimeError:
        return ""


def _spatial_geometry(image: sitk.Image, name: str, path: Path) -> Geometry:
    """The 3D grid of a 3D image, or of the frames of a 4D image (first three axes)."""
    dimension = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dimension, dimension)[:3, :3]
    try:
        return Geometry(tuple(image.GetSize()[:3]), tuple(image.GetSpacing()[:3]), tuple(image.GetOrigin()[:3]),
                        tuple(direction.ravel()))
    except (InputError, np.linalg.LinAlgError) as error:
        raise InputError(f"{name}: {path}: {error}") from None


def _is_volume_sequence(image: sitk.Image, path: Path) -> bool:
    """A Slicer .seq.nrrd read by SimpleITK: a 3D image whose pixel axis (the NRRD list axis) holds the frames."""
    if image.HasMetaDataKey("NRRD_kinds[pixel]") and image.GetMetaData("NRRD_kinds[pixel]").strip() == "list":
        return True
    return path.name.lower().endswith(".seq.nrrd") and image.GetNumberOfComponentsPerPixel() > 1


def _sequence_index(image: sitk.Image, count: int) -> tuple[list[float] | None, list[str]]:
    """Frame names and times (ms) from a .seq.nrrd's index values (``axis N index values:=...``)."""
    names = [f"frame {t}" for t in range(count)]
    values_key = next((k for k in image.GetMetaDataKeys() if re.fullmatch(r"axis \d+ index values", k)), None)
    if values_key is None:
        return None, names
    values = image.GetMetaData(values_key).split()
    if len(values) != count:
        return None, names
    label = image.GetMetaData("NRRD_labels[pixel]").strip() if image.HasMetaDataKey("NRRD_labels[pixel]") else ""
    unit = image.GetMetaData("NRRD_units[pixel]").strip() if image.HasMetaDataKey("NRRD_units[pixel]") else ""
    names = [f"frame {t} ({label or 'index'} {value}{' ' + unit if unit else ''})" for t, value in enumerate(values)]
    scale = {"ms": 1.0, "s": 1000.0}.get(unit)
    if scale is None:
        return None, names
    try:
        return [float(v) * scale for v in values], names
    except ValueError:
        return None, names


def _require_scalar_frames(raw: _RawSequence, path: Path, name: str) -> None:
    first = raw.frames[0]
    for t, frame in enumerate(raw.frames):
        if frame.components != first.components:
            raise InputError(f"{name}: frames of {path} have different numbers of components per voxel: "
                             f"{_frame_text('frame', 0, first.label)} has {first.components}, "
                             f"{_frame_text('frame', t, frame.label)} has {frame.components}")
    if first.components != 1:
        raise InputError(f"{name}: {path}: frames have {first.components} components per voxel; expected scalar "
                         f"(grey-value) frames")


def _intensity_array(array: np.ndarray, what: str) -> np.ndarray:
    if np.issubdtype(array.dtype, np.integer):
        return array
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    raise InputError(f"{what}: unsupported pixel type {array.dtype}")


def _overlap_fraction(reference: Geometry, other: Geometry, samples: int = 24) -> float:
    """Fraction of ``reference``'s physical box (voxel edges) that lies inside ``other``'s box, estimated on a
    lattice of ``samples``^3 cell centres."""
    axes = [-0.5 + (np.arange(samples) + 0.5) * n / samples for n in reference.size]
    i, j, k = np.meshgrid(*axes, indexing="ij")
    points = reference.index_to_physical(np.stack([i, j, k], axis=-1).reshape(-1, 3))
    index = other.physical_to_index(points)
    inside = np.all((index >= -0.5) & (index <= np.asarray(other.size, dtype=np.float64) - 0.5), axis=1)
    return float(np.mean(inside))


def _grid_text(geometry: Geometry, other: Geometry) -> str:
    """``geometry.describe()``, with the direction when it differs from ``other``'s."""
    text = geometry.describe()
    if not np.allclose(geometry.direction_matrix, other.direction_matrix, atol=1e-6):
        text += f", direction ({', '.join(f'{d:.3f}' for d in geometry.direction)})"
    return text


def _frame_text(name: str, t: int, label: str) -> str:
    return f"{name} frame {t}" + (f" ({label})" if label else "")
