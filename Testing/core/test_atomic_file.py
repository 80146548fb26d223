"""Atomic writing: a temporary file beside the target, renamed into place only once it is complete."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from INRCardiacRegistrationLib.core.atomic_file import atomic_path, file_suffix, write_text_atomic


@contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


class Boom(Exception):
    pass


def test_text_is_written_as_utf8_with_newlines_as_given(tmp_path):
    text = "frame,dice\r\n0,0.95\nmyocarde \u00e9paissi \u2013 \u0394t = 3 ms\n"
    target = tmp_path / "metrics.csv"
    assert write_text_atomic(target, text) == target
    assert target.read_bytes() == text.encode("utf-8")
    assert sorted(os.listdir(tmp_path)) == ["metrics.csv"]


def test_write_accepts_a_string_path_and_creates_parent_folders(tmp_path):
    target = tmp_path / "run" / "frames" / "frame_000.json"
    result = write_text_atomic(str(target), "{}\n")
    assert result == target and isinstance(result, Path)
    assert target.read_text(encoding="utf-8") == "{}\n"


def test_existing_file_is_replaced(tmp_path):
    target = tmp_path / "run.json"
    target.write_text("old and longer content\n", encoding="utf-8")
    write_text_atomic(target, "new\n")
    assert target.read_text(encoding="utf-8") == "new\n"
    assert sorted(os.listdir(tmp_path)) == ["run.json"]


def test_target_keeps_its_old_content_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "labels" / "frame_003.nii.gz"
    target.parent.mkdir()
    target.write_bytes(b"old")
    with atomic_path(target) as temporary:
        temporary = Path(temporary)
        assert temporary.parent == target.parent  # same folder: the rename stays on one file system
        assert temporary.name.startswith(".tmp-") and temporary.name.endswith(".nii.gz")
        assert temporary.exists() and temporary.read_bytes() == b""
        temporary.write_bytes(b"new, half")
        assert target.read_bytes() == b"old"  # readers still see the complete old file
        temporary.write_bytes(b"new, whole")
    assert target.read_bytes() == b"new, whole"
    assert not temporary.exists()
    assert os.listdir(target.parent) == ["frame_003.nii.gz"]


def test_error_inside_the_context_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "metrics.csv"
    target.write_text("frame\n0\n", encoding="utf-8")
    with pytest.raises(Boom), atomic_path(target) as temporary:
        Path(temporary).write_text("frame\n0\n1\n", encoding="utf-8")
        raise Boom
    assert target.read_text(encoding="utf-8") == "frame\n0\n"
    assert os.listdir(tmp_path) == ["metrics.csv"]


def test_error_without_an_old_file_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "summary.txt"
    with pytest.raises(Boom), atomic_path(target) as temporary:
        Path(temporary).write_text("partial", encoding="utf-8")
        raise Boom
    assert not target.exists()
    assert os.listdir(target.parent) == []


def test_writer_that_removes_its_temporary_is_an_error_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(FileNotFoundError), atomic_path(target) as temporary:
        os.remove(temporary)
    assert target.read_text(encoding="utf-8") == "old"


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_file_gets_the_usual_permissions_not_mkstemps(tmp_path, mask, mode):
    target = tmp_path / "report.txt"
    with umask(mask):
        write_text_atomic(target, "x")
        current = os.umask(mask)  # the umask is left as it was
        os.umask(current)
    assert current == mask
    assert stat.S_IMODE(target.stat().st_mode) == mode


def test_explicit_suffix_overrides_the_targets(tmp_path):
    with atomic_path(tmp_path / "field.h5", suffix=".nrrd") as temporary:
        assert temporary.endswith(".nrrd")
        Path(temporary).write_bytes(b"x")
    assert (tmp_path / "field.h5").read_bytes() == b"x"


def test_simpleitk_chooses_the_format_from_the_temporary_name(tmp_path):
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    target = tmp_path / "label.nii.gz"
    with atomic_path(target) as temporary:
        sitk.WriteImage(sitk.GetImageFromArray(array), temporary, useCompression=True)
    assert target.read_bytes()[:2] == b"\x1f\x8b"  # gzip: the compressed NIfTI, not another format
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(target))), array)


@pytest.mark.parametrize("name, suffix", [
    ("frame_000.nii.gz", ".nii.gz"),
    ("FRAME.NII.GZ", ".nii.gz"),
    ("cine.seq.nrrd", ".seq.nrrd"),
    ("landmarks/frame_001.mrk.json", ".mrk.json"),
    ("heart.seg.nrrd", ".seg.nrrd"),
    ("image.nrrd", ".nrrd"),
    ("frame.json", ".json"),
    ("archive.tar.gz", ".gz"),  # not a compound suffix the module knows
    ("transform.H5", ".h5"),
    ("lock", ""),
    ("run.nii.gz/notes.txt", ".txt"),  # only the file name counts
])
def test_file_suffix(name, suffix):
    assert file_suffix(name) == suffix
    assert file_suffix(Path("/some/folder") / name) == suffix
