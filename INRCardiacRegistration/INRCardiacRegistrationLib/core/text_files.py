"""Reading the text and JSON files users give us, with errors that say which file and what is wrong with it."""

from __future__ import annotations

import json
from pathlib import Path

from .vocabulary import InputError


def read_text(path: str | Path, what: str = "file", encoding: str = "utf-8") -> str:
    """The text of ``path``; :class:`InputError` naming ``what`` and the file when it is missing, unreadable or not
    text in ``encoding`` (e.g. a Latin-1 export: save it as UTF-8)."""
    path = Path(path)
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise InputError(f"{what}: file not found: {path}") from None
    except UnicodeDecodeError as error:
        name = "UTF-8" if encoding.lower().startswith("utf-8") else encoding
        raise InputError(f"{what}: {path} is not {name} text (byte {error.start}: "
                         f"{error.object[error.start:error.start + 1]!r}); save it as UTF-8") from None
    except OSError as error:
        raise InputError(f"{what}: cannot read {path}: {error.strerror or error}") from None


def read_json(path: str | Path, what: str = "file") -> object:
    """The JSON document in ``path``; :class:`InputError` naming ``what`` and the file when it cannot be read or is
    not valid JSON."""
    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as error:
        raise InputError(f"{what}: {path} is not a valid JSON file ({error})") from None
