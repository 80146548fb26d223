"""Atomic file writing: write to a temporary file beside the target, then rename it into place, so readers
(and a resumed run) never see a half-written file."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

COMPOUND_SUFFIXES = (".nii.gz", ".seq.nrrd", ".mrk.json", ".seg.nrrd")


def file_suffix(path: str | Path) -> str:
    """The suffix that names a file's format, lower case: ``.nii.gz`` for ``x.nii.gz``, else ``Path.suffix``."""
    name = Path(path).name.lower()
    return next((suffix for suffix in COMPOUND_SUFFIXES if name.endswith(suffix)), Path(name).suffix)


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[str]:
    """Yield a temporary file name in ``path``'s folder; on success it replaces ``path``, on error it is removed.

    ``suffix`` (default: :func:`file_suffix` of ``path``) keeps writers that choose the format by extension
    (SimpleITK) working.
    The file gets the usual permissions (``0666 & ~umask``), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=file_suffix(path) if suffix is None else suffix,
                                         dir=path.parent)
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_process_umask())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


_UMASK = threading.Lock()


def _process_umask() -> int:
    """The process's umask (reading it means setting it: one thread at a time, or another thread could read 0)."""
    with _UMASK:
        umask = os.umask(0)
        os.umask(umask)
    return umask


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8", newline="") as stream:
        stream.write(text)
    return Path(path)
