"""Reading a 4D cycle into frames on one grid: 4D files, .seq.nrrd, frame folders, DICOM folders, labels."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from INRCardiacRegistrationLib.core.geometry import Geometry
from INRCardiacRegistrationLib.core.volume import Volume
from INRCardiacRegistrationLib.fileio.frame_sequence import (
    FrameSequence,
    natural_sort_key,
    read_4d_frames,
    read_frame_labels,
    read_frame_sequence,
)

SUNNYBROOK = Path(__file__).resolve().parents[3] / "shared" / "data" / "sunnybrook" / "SCD0000101"
FRAMES = 4


def _rotation(a: float, b: float) -> np.ndarray:
    ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
    return np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]]) @ np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])


# An oblique grid with non-unit, anisotropic spacing: 8 x 7 x 6 voxels (i, j, k).
GRID = Geometry((8, 7, 6), (0.75, 1.25, 2.5), (-20.5, 13.25, 40.0), tuple(_rotation(0.4, -0.3).ravel()))


def _frames(dtype=np.int16, count: int = FRAMES, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-300, 1200, size=(count, *GRID.array_shape)).astype(dtype)


def _labels(count: int = FRAMES, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4, size=(count, *GRID.array_shape)).astype(np.uint8)


def _write_4d(path: Path, frames: np.ndarray, geometry: Geometry = GRID) -> Path:
    sitk.WriteImage(sitk.JoinSeries([Volume(f, geometry).to_sitk() for f in frames]), str(path))
    return path


def _write_3d(path: Path, array: np.ndarray, geometry: Geometry = GRID) -> Path:
    Volume(array, geometry).write(path)
    return path


def _write_seq_nrrd(path: Path, frames: np.ndarray, geometry: Geometry = GRID, times_ms=None,
                    compress: bool = False) -> Path:
    """A Slicer volume sequence exactly as vtkMRMLVolumeSequenceStorageNode writes it (list axis last)."""
    nrrd_type = {np.dtype(np.int16): "short", np.dtype(np.uint8): "unsigned char",
                 np.dtype(np.float32): "float"}[frames.dtype]
    columns = geometry.index_to_physical_matrix.T  # rows: the LPS step of one voxel along i, j, k

    def vector(v):
        return "(" + ",".join(repr(float(x)) for x in v) + ")"

    times = times_ms if times_ms is not None else [37.5 * t for t in range(len(frames))]
    header = [
        "NRRD0004",
        "# Complete NRRD file format specification at:",
        "# http://teem.sourceforge.net/nrrd/format.html",
        f"type: {nrrd_type}",
        "dimension: 4",
        "space: left-posterior-superior",
        f"sizes: {geometry.size[0]} {geometry.size[1]} {geometry.size[2]} {len(frames)}",
        f"space directions: {vector(columns[0])} {vector(columns[1])} {vector(columns[2])} none",
        "kinds: domain domain domain list",
        'labels: "" "" "" "time"',
        'units: "" "" "" "ms"',
        "endian: little",
        f"encoding: {'gzip' if compress else 'raw'}",
        f"space origin: {vector(geometry.origin)}",
        "DataNodeClassName:=vtkMRMLScalarVolumeNode",
        "axis 3 index type:=numeric",
        "axis 3 index values:=" + " ".join(repr(float(t)) for t in times),
    ]
    data = np.ascontiguousarray(frames).astype(frames.dtype.newbyteorder("<")).tobytes()  # (t, k, j, i): i fastest
    path.write_bytes(("\n".join(header) + "\n\n").encode("ascii") + (gzip.compress(data) if compress else data))
    return path


def _assert_frames(sequence: FrameSequence, frames: np.ndarray, geometry: Geometry = GRID,
                   tolerance_mm: float = 1e-4) -> None:
    assert len(sequence.frames) == len(frames) == len(sequence.frame_names) == len(sequence.original_geometries)
    assert sequence.resampled == [] and sequence.warnings == []
    for t, volume in enumerate(sequence.frames):
        assert volume.array.dtype == frames.dtype
        np.testing.assert_array_equal(volume.array, frames[t])
        assert volume.geometry == sequence.frames[0].geometry
        assert volume.geometry.matches(geometry, tolerance_mm)
        np.testing.assert_allclose(volume.geometry.spacing, geometry.spacing, atol=1e-5)
        np.testing.assert_allclose(volume.geometry.direction, geometry.direction, atol=1e-5)


# --- input kinds --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_4d_image_round_trips(tmp_path, suffix):
    frames = _frames()
    sequence = read_frame_sequence(_write_4d(tmp_path / f"cycle{suffix}", frames))
    _assert_frames(sequence, frames)
    assert sequence.source.startswith("4D ") and sequence.source.endswith(" image")
    assert sequence.frame_names == [f"frame {t}" for t in range(FRAMES)]
    assert sequence.trigger_times_ms is None


def test_float_frames_become_float32(tmp_path):
    frames = _frames(np.float64) + 0.25
    sequence = read_frame_sequence(_write_4d(tmp_path / "cycle.mha", frames))
    assert all(f.array.dtype == np.float32 for f in sequence.frames)
    np.testing.assert_array_equal(sequence.frames[2].array, frames[2].astype(np.float32))


@pytest.mark.parametrize("compress", [False, True])
def test_slicer_volume_sequence_round_trips(tmp_path, compress):
    frames = _frames()
    path = _write_seq_nrrd(tmp_path / "cycle.seq.nrrd", frames, times_ms=[0.0, 40.0, 80.5, 121.0], compress=compress)
    sequence = read_frame_sequence(path)
    _assert_frames(sequence, frames, tolerance_mm=1e-9)
    assert sequence.source == "Slicer volume sequence (.seq.nrrd)"
    assert sequence.trigger_times_ms == [0.0, 40.0, 80.5, 121.0]
    assert sequence.frame_names[2] == "frame 2 (time 80.5 ms)"


def test_folder_of_frames_in_natural_order(tmp_path):
    frames = _frames()
    folder = tmp_path / "frames"
    folder.mkdir()
    names = ["frame1.nii.gz", "frame2.nrrd", "frame9.mha", "frame10.nii.gz"]  # lexicographic order differs
    for name, array in zip(names, frames, strict=True):
        _write_3d(folder / name, array)
    _write_3d(folder / ".hidden.nii.gz", np.zeros((3, 3, 3), np.int16), Geometry((3, 3, 3), (1, 1, 1), (0, 0, 0)))
    (folder / "notes.txt").write_text("acquired at end-expiration\n")
    sequence = read_frame_sequence(folder)
    _assert_frames(sequence, frames)
    assert sequence.frame_names == names
    assert sequence.source == "folder of 4 3D frames"
    assert sorted(["frame10", "frame2", "Frame1", "frame9"], key=natural_sort_key) == \
        ["Frame1", "frame2", "frame9", "frame10"]


def _write_dicom_phases(folder: Path, frames: np.ndarray, geometry: Geometry = GRID, temporal_only: bool = False,
                        seed: int = 3, constant_trigger: bool = False) -> list[Path]:
    """One DICOM file per (slice, phase), names and instance numbers shuffled, trigger times differing a little
    between slices (each slice its own breath-hold)."""
    folder.mkdir()
    phases, slices = frames.shape[0], frames.shape[1]
    order = np.random.default_rng(seed).permutation(phases * slices)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    paths = []
    for t in range(phases):
        image = Volume(frames[t], geometry).to_sitk()
        for k in range(slices):
            number = int(order[t * slices + k])
            piece = image[:, :, k:k + 1]  # one slice, keeps its own origin (-> ImagePositionPatient)
            tags = {"0008|0060": "MR", "0008|0016": "1.2.840.10008.5.1.4.1.1.4", "0020|000d": "1.2.826.0.1.3680043.9",
                    "0020|000e": "1.2.826.0.1.3680043.9.1", "0008|0018": f"1.2.826.0.1.3680043.9.1.{t}.{k}",
                    "0020|0013": str(number + 1)}
            if temporal_only or constant_trigger:
                tags["0020|0100"] = str(t + 1)
            if constant_trigger:
                tags["0018|1060"] = "0"
            elif not temporal_only:
                tags["0018|1060"] = f"{t * 50.0 + 1.3 * k:.2f}"
            for tag, value in tags.items():
                piece.SetMetaData(tag, value)
            path = folder / f"IM{number:04d}.dcm"
            writer.SetFileName(str(path))
            writer.Execute(piece)
            paths.append(path)
    return paths


@pytest.mark.parametrize("temporal_only", [False, True])
def test_dicom_folder_grouped_into_phases(tmp_path, temporal_only):
    frames = _frames(count=3)
    _write_dicom_phases(tmp_path / "dicom", frames, temporal_only=temporal_only)
    (tmp_path / "dicom" / "README.txt").write_text("not an image\n")
    sequence = read_frame_sequence(tmp_path / "dicom")
    _assert_frames(sequence, frames, tolerance_mm=1e-3)
    if temporal_only:
        assert sequence.source == "DICOM folder: 6 slices x 3 phases grouped by temporal position"
        assert sequence.trigger_times_ms is None
    else:
        assert sequence.source == "DICOM folder: 6 slices x 3 phases grouped by trigger time"
        np.testing.assert_allclose(sequence.trigger_times_ms, [50.0 * t + 1.3 * 2.5 for t in range(3)], atol=0.01)
        assert sequence.frame_names[1] == "phase 1 (trigger time 53.2 ms)"


def test_dicom_constant_trigger_time_falls_back_to_temporal_position(tmp_path):
    """Some scanners write one TriggerTime for every phase: the phases are then ordered by the next tag."""
    frames = _frames(count=3)
    _write_dicom_phases(tmp_path / "dicom", frames, constant_trigger=True)
    sequence = read_frame_sequence(tmp_path / "dicom")
    _assert_frames(sequence, frames, tolerance_mm=1e-3)
    assert sequence.source.endswith("grouped by temporal position")


@pytest.mark.skipif(not SUNNYBROOK.is_dir(), reason=f"Sunnybrook DICOM data not present at {SUNNYBROOK}")
def test_sunnybrook_dicom_folder():
    sequence = read_frame_sequence(SUNNYBROOK)
    assert sequence.source == "DICOM folder: 12 slices x 20 phases grouped by trigger time"
    assert len(sequence.frames) == 20 and sequence.warnings == [] and sequence.resampled == []
    geometry = sequence.geometry
    assert geometry.size == (256, 256, 12)
    np.testing.assert_allclose(geometry.spacing, (1.367188, 1.367188, 10.0), atol=1e-3)
    times = np.asarray(sequence.trigger_times_ms)
    assert np.all(np.diff(times) > 0) and 0 < times[0] < 40 and 700 < times[-1] < 800

    # Against the files themselves (README: file N holds slice (N-1)//20, phase (N-1)%20): every file of phase t
    # is the slice of frame t that lies at the file's ImagePositionPatient.
    slice_origins = geometry.index_to_physical(np.array([[0, 0, k] for k in range(12)], dtype=np.float64))
    positions, trigger_times = {}, {}
    for number in range(1, 241):
        image = sitk.ReadImage(str(SUNNYBROOK / f"{number}.dcm"))
        slice_index, phase = (number - 1) // 20, (number - 1) % 20
        position = np.array([float(v) for v in image.GetMetaData("0020|0032").split("\\")])
        positions.setdefault(slice_index, position)
        np.testing.assert_allclose(position, positions[slice_index], atol=1e-3)  # one position per slice
        trigger_times[number] = float(image.GetMetaData("0018|1060"))
        if phase:  # the phase order within a slice is the trigger-time order
            assert trigger_times[number] > trigger_times[number - 1]
        k = int(np.argmin(np.linalg.norm(slice_origins - position, axis=1)))
        assert np.linalg.norm(slice_origins[k] - position) < 0.01
        np.testing.assert_array_equal(sequence.frames[phase].array[k], sitk.GetArrayFromImage(image)[0])
    assert len({tuple(np.round(p, 2)) for p in positions.values()}) == 12


# --- resampling ---------------------------------------------------------------------------------------------
def _shifted(geometry: Geometry, shift_voxels: tuple[float, float, float]) -> Geometry:
    origin = geometry.index_to_physical(np.asarray(shift_voxels, dtype=np.float64))
    return Geometry(geometry.size, geometry.spacing, tuple(origin), geometry.direction)


def test_shifted_frame_is_resampled_with_a_warning(tmp_path):
    ramp = np.broadcast_to(np.arange(8, dtype=np.float32) * 10.0, GRID.array_shape).copy()  # 10 per voxel along i
    folder = tmp_path / "frames"
    folder.mkdir()
    shifted = _shifted(GRID, (1.5, 0.0, 0.0))
    for t in range(3):
        _write_3d(folder / f"f{t}.mha", ramp + t, shifted if t == 2 else GRID)
    with pytest.warns(UserWarning, match=r"image frame 2 \(f2\.mha\) lies on another grid") as caught:
        sequence = read_frame_sequence(folder)
    assert sequence.resampled == [2]
    assert len(sequence.warnings) == 1 and str(caught[0].message) == sequence.warnings[0]
    assert shifted.describe() in sequence.warnings[0] and GRID.describe() in sequence.warnings[0]
    assert sequence.original_geometries[2] == shifted and sequence.frames[2].geometry == sequence.frames[0].geometry
    np.testing.assert_array_equal(sequence.frames[1].array, ramp + 1)  # untouched
    # reference voxel i lies at i - 1.5 on the shifted frame, whose value there is 10 (i - 1.5) + 2
    resampled = sequence.frames[2].array
    np.testing.assert_allclose(resampled[:, :, 2:], ramp[:, :, 2:] - 15.0 + 2, atol=1e-4)
    np.testing.assert_allclose(resampled[:, :, :1], 2.0)  # outside the shifted frame: its minimum


def test_integer_frame_resampled_keeps_its_dtype(tmp_path):
    frames = _frames(count=2)
    folder = tmp_path / "frames"
    folder.mkdir()
    _write_3d(folder / "a.nrrd", frames[0])
    _write_3d(folder / "b.nrrd", frames[1], _shifted(GRID, (0.0, 0.5, 0.0)))
    with pytest.warns(UserWarning, match="frame 1"):
        sequence = read_frame_sequence(folder)
    assert sequence.frames[1].array.dtype == np.int16 and sequence.resampled == [1]


def test_reference_frame_sets_the_grid(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    shifted = _shifted(GRID, (0.0, 0.0, 1.0))
    _write_3d(folder / "a.mha", _frames()[0])
    _write_3d(folder / "b.mha", _frames()[1], shifted)
    with pytest.warns(UserWarning, match=r"image frame 0 \(a\.mha\)"):
        sequence = read_frame_sequence(folder, reference_frame=1)
    assert sequence.resampled == [0] and sequence.geometry == shifted


def test_frame_too_far_away_cannot_be_resampled(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    _write_3d(folder / "a.mha", _frames()[0])
    _write_3d(folder / "b.mha", _frames()[1], _shifted(GRID, (0.0, 0.0, 3.5)))  # 6 slices, overlap 2.5 of 6
    message = r"image frame 1 \(b\.mha\) cannot be resampled onto the reference grid: it covers only 42%"
    with pytest.raises(ValueError, match=message) as error:
        read_frame_sequence(folder)
    assert GRID.describe() in str(error.value)


# --- errors ---------------------------------------------------------------------------------------------------
def test_missing_path(tmp_path):
    with pytest.raises(ValueError, match=r"not found: .*nowhere\.nii\.gz"):
        read_frame_sequence(tmp_path / "nowhere.nii.gz")


def test_unreadable_file(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match=r"broken\.nii\.gz is not an image SimpleITK can read .* convert it") as caught:
        read_frame_sequence(path)
    assert "ImageIO" not in str(caught.value)  # the user's words, not ITK's


def test_single_3d_image(tmp_path):
    path = _write_3d(tmp_path / "ed.nii.gz", _frames()[0])
    with pytest.raises(ValueError, match=r"ed\.nii\.gz is a single 3D image; a whole-cycle registration needs a 4D "
                                         r"sequence: a 4D NIfTI/NRRD, a \.seq\.nrrd, a folder of 3D frames or a "
                                         r"DICOM folder"):
        read_frame_sequence(path)


def test_fewer_than_two_frames(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    _write_3d(folder / "only.nii.gz", _frames()[0])
    with pytest.raises(ValueError, match=r"frames holds only 1 frame"):
        read_frame_sequence(folder)


def test_2d_image(tmp_path):
    path = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.Image([8, 7], sitk.sitkInt16), str(path))
    with pytest.raises(ValueError, match=r"slice\.nrrd is a 2D image"):
        read_frame_sequence(path)


def test_5d_image(tmp_path):
    path = tmp_path / "five.nrrd"
    header = ("NRRD0004\ntype: unsigned char\ndimension: 5\nsizes: 2 2 2 2 2\n"
              "kinds: domain domain domain domain domain\nendian: little\nencoding: raw\n\n")
    path.write_bytes(header.encode("ascii") + bytes(32))
    with pytest.raises(ValueError, match=r"five\.nrrd is a 5D image"):
        read_frame_sequence(path)


def test_frames_with_different_numbers_of_components(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    _write_3d(folder / "a.nrrd", _frames()[0])
    vector = sitk.Compose([Volume(_frames()[1], GRID).to_sitk()] * 3)
    sitk.WriteImage(vector, str(folder / "b.nrrd"))
    with pytest.raises(ValueError, match=r"different numbers of components.*a\.nrrd.* 1.*b\.nrrd.* 3"):
        read_frame_sequence(folder)


def test_reference_frame_out_of_range(tmp_path):
    path = _write_4d(tmp_path / "cycle.nii.gz", _frames())
    with pytest.raises(ValueError, match=r"reference_frame 4 is out of range for the 4 frames of .*cycle\.nii\.gz"):
        read_frame_sequence(path, reference_frame=4)


def test_dicom_mixed_with_other_images(tmp_path):
    _write_dicom_phases(tmp_path / "dicom", _frames(count=2))
    _write_3d(tmp_path / "dicom" / "extra.nii.gz", _frames()[0])
    with pytest.raises(ValueError, match=r"holds both DICOM files .* and other image files \(extra\.nii\.gz"):
        read_frame_sequence(tmp_path / "dicom")


def test_dicom_positions_with_different_phase_counts(tmp_path):
    paths = _write_dicom_phases(tmp_path / "dicom", _frames(count=3))
    paths[1 * 6 + 4].unlink()  # phase 1 of slice 4
    with pytest.raises(ValueError, match=r"different numbers of phases: position .* mm has 2 .*other 5 positions "
                                         r"have 3"):
        read_frame_sequence(tmp_path / "dicom")


def test_dicom_uneven_slice_gaps_warn(tmp_path):
    paths = _write_dicom_phases(tmp_path / "dicom", _frames(count=2))
    normal = GRID.direction_matrix[:, 2]
    for path in paths[5::6]:  # the last slice of each phase, moved 1 mm further along the normal
        image = sitk.ReadImage(str(path))
        image.SetOrigin(tuple(np.asarray(image.GetOrigin()) + normal))
        image.EraseMetaData("0020|0032")  # else the writer keeps the old ImagePositionPatient
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(path))
        writer.Execute(image)
    with pytest.warns(UserWarning, match=r"slice gaps are uneven \(2\.500 to 3\.500 mm\)"):
        sequence = read_frame_sequence(tmp_path / "dicom")
    assert len(sequence.frames) == 2 and "uneven" in sequence.warnings[0]


# --- labels -----------------------------------------------------------------------------------------------
@pytest.fixture
def sequence(tmp_path) -> FrameSequence:
    return read_frame_sequence(_write_4d(tmp_path / "cycle.nii.gz", _frames()))


def test_no_labels(sequence):
    assert read_frame_labels(None, sequence) == {}


@pytest.mark.parametrize("as_list", [False, True])
def test_4d_labels(tmp_path, sequence, as_list):
    labels = _labels()
    path = _write_4d(tmp_path / "labels.nii.gz", labels)
    result = read_frame_labels([str(path)] if as_list else path, sequence)
    assert sorted(result) == list(range(FRAMES))
    for t, volume in result.items():
        assert volume.array.dtype == np.uint8 and volume.geometry == sequence.geometry
        np.testing.assert_array_equal(volume.array, labels[t])


def test_labels_seq_nrrd(tmp_path, sequence):
    labels = _labels()
    result = read_frame_labels(_write_seq_nrrd(tmp_path / "labels.seq.nrrd", labels, compress=True), sequence)
    np.testing.assert_array_equal(result[3].array, labels[3])


def test_labels_folder(tmp_path, sequence):
    labels = _labels()
    folder = tmp_path / "labels"
    folder.mkdir()
    for t in (0, 1, 2, 3):  # 1, 2, 4, 11: natural order differs from name order
        _write_3d(folder / f"seg{[1, 2, 4, 11][t]}.nii.gz", labels[t])
    result = read_frame_labels(folder, sequence)
    for t in range(FRAMES):
        np.testing.assert_array_equal(result[t].array, labels[t])


def test_labels_for_some_frames(tmp_path, sequence):
    labels = _labels()
    ed = _write_3d(tmp_path / "ed.nii.gz", labels[0])
    es = _write_3d(tmp_path / "es.nrrd", labels[2])
    result = read_frame_labels([f"0={ed}", f"2={es}"], sequence)
    assert sorted(result) == [0, 2]
    np.testing.assert_array_equal(result[2].array, labels[2])
    assert sorted(read_frame_labels([f"3={ed}"], sequence)) == [3]


def test_labels_grid_mismatch(tmp_path, sequence):
    path = _write_3d(tmp_path / "es.nii.gz", _labels()[2], _shifted(GRID, (0.0, 1.0, 0.0)))
    with pytest.raises(ValueError, match=r"labels for frame 2 \(es\.nii\.gz\): grid .* does not match the image "
                                         r"frame 2 grid"):
        read_frame_labels([f"2={path}"], sequence)


def test_labels_frame_out_of_range(tmp_path, sequence):
    path = _write_3d(tmp_path / "es.nii.gz", _labels()[2])
    with pytest.raises(ValueError, match=r"frame 4 .* out of range for the 4-frame image sequence"):
        read_frame_labels([f"0={path}", f"4={path}"], sequence)


def test_labels_duplicate_frame(tmp_path, sequence):
    path = _write_3d(tmp_path / "es.nii.gz", _labels()[2])
    with pytest.raises(ValueError, match=r"frame 1 is given twice"):
        read_frame_labels([f"1={path}", f"1={path}"], sequence)


def test_labels_not_frame_assignments(tmp_path, sequence):
    path = _write_3d(tmp_path / "es.nii.gz", _labels()[2])
    with pytest.raises(ValueError, match=r"'.*es\.nii\.gz' is not FRAME=PATH"):
        read_frame_labels([f"1={path}", str(path)], sequence)


def test_labels_frame_count_must_match(tmp_path, sequence):
    with pytest.raises(ValueError, match=r"labels\.nii\.gz holds 3 label frames but the image sequence has 4"):
        read_frame_labels(_write_4d(tmp_path / "labels.nii.gz", _labels(count=3)), sequence)
    with pytest.raises(ValueError, match=r"single 3D label image .* FRAME=PATH"):
        read_frame_labels(_write_3d(tmp_path / "ed.nii.gz", _labels()[0]), sequence)


@pytest.mark.parametrize("value, message", [(0.5, "non-integer values"), (np.nan, "NaN")])
def test_float_labels(tmp_path, sequence, value, message):
    labels = _labels()[1].astype(np.float32)
    labels[2, 3, 4] = value
    path = _write_3d(tmp_path / "ed.nrrd", labels)
    with pytest.raises(ValueError, match=rf"labels for frame 1 \(ed\.nrrd\): holds .*{message}"):
        read_frame_labels([f"1={path}"], sequence)


def test_float_labels_with_integer_values(tmp_path, sequence):
    labels = _labels()[1]
    result = read_frame_labels([f"1={_write_3d(tmp_path / 'ed.nrrd', labels.astype(np.float32))}"], sequence)
    assert np.issubdtype(result[1].array.dtype, np.integer)
    np.testing.assert_array_equal(result[1].array, labels)


def test_labels_of_a_resampled_frame_follow_it(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    shifted = _shifted(GRID, (2.0, 0.0, 0.0))  # whole voxels: nearest neighbour is exact
    frames, labels = _frames(count=2), _labels(count=2)
    _write_3d(folder / "a.nii.gz", frames[0])
    _write_3d(folder / "b.nii.gz", frames[1], shifted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sequence = read_frame_sequence(folder)
    result = read_frame_labels([f"0={_write_3d(tmp_path / 'a.nii.gz', labels[0])}",
                                f"1={_write_3d(tmp_path / 'b.nii.gz', labels[1], shifted)}"], sequence)
    np.testing.assert_array_equal(result[0].array, labels[0])
    assert result[1].geometry == sequence.geometry and result[1].array.dtype == np.uint8
    np.testing.assert_array_equal(result[1].array[:, :, 2:], labels[1][:, :, :-2])
    np.testing.assert_array_equal(result[1].array[:, :, :2], 0)
    with pytest.raises(ValueError, match=r"labels for frame 1 \(a\.nii\.gz\): grid"):  # must be on b's own grid
        read_frame_labels([f"1={tmp_path / 'a.nii.gz'}"], sequence)


# --- the shared 4D reader --------------------------------------------------------------------------------------
def test_read_4d_frames_keeps_the_stored_data(tmp_path):
    frames = _frames(np.float64)
    volumes = read_4d_frames(_write_4d(tmp_path / "cycle.mha", frames), "labels")
    assert [v.name for v in volumes] == [f"labels frame {t}" for t in range(FRAMES)]
    assert volumes[1].array.dtype == np.float64 and volumes[1].geometry == GRID
    np.testing.assert_array_equal(volumes[1].array, frames[1])
    with pytest.raises(ValueError, match="single 3D image, not a 4D image"):
        read_4d_frames(_write_3d(tmp_path / "ed.nii.gz", frames[0]))


def test_truncated_gzip_is_refused(tmp_path):
    """ITK alone reads a cut-short .nii.gz as zeros without a word; the reader refuses it (4D, 3D frame, label)."""
    path = _write_4d(tmp_path / "cycle.nii.gz", _frames())
    assert len(read_frame_sequence(path)) == FRAMES
    data = path.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(cut))).shape[0] == FRAMES  # what ITK does with it
    with pytest.raises(ValueError, match="truncated"):
        read_frame_sequence(cut)
    frame = _write_3d(tmp_path / "frame.nii.gz", _frames()[0])
    whole = frame.read_bytes()
    frame.write_bytes(whole[:-12])
    with pytest.raises(ValueError, match="truncated"):
        Volume.read(frame)


def test_gzip_of_several_members_or_with_an_unexpected_size_is_read_whole(tmp_path):
    """The fast check (the trailer's size against the NIfTI header's) only decides 'complete'; anything else is
    decompressed to its end-of-stream marker: a valid two-member file passes, a cut one does not."""
    from INRCardiacRegistrationLib.core.gzip_check import require_complete_gzip

    raw = _write_3d(tmp_path / "frame.nii", _frames()[0]).read_bytes()
    two = tmp_path / "two.nii.gz"
    two.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    require_complete_gzip(two, "image")
    assert np.array_equal(Volume.read(two).array, Volume.read(tmp_path / "frame.nii").array)
    padded = tmp_path / "padded.nii.gz"  # zero padding after the stream: gzip readers skip it
    padded.write_bytes(gzip.compress(raw) + bytes(512))
    assert np.array_equal(Volume.read(padded).array, Volume.read(tmp_path / "frame.nii").array)
    other = tmp_path / "notes.txt.gz"
    other.write_bytes(gzip.compress(b"x" * 5000)[:-6])
    with pytest.raises(ValueError, match="truncated"):
        require_complete_gzip(other, "notes")
