"""The cohort manifest: one CSV row per patient, read and checked before any work starts.

Columns (header row required; order free; other columns, e.g. clinical notes, are ignored)::

    patient              required; the run folder's name: letters, digits, ``.``, ``_``, ``-`` (unique)
    image                required; what ``inr-cardiac register`` reads: a 4D NIfTI/NRRD/MHA, a .seq.nrrd, a
                         folder of 3D frames or a DICOM folder
    labels               optional; a 4D label image, a folder, or ``FRAME=PATH`` items separated by ``;``
    landmarks            optional; reference-frame landmarks (.mrk.json, .fcsv, CSV; LPS mm)
    landmarks_annotated  optional; CSV frame,landmark,x,y,z (LPS mm) of annotated positions, for TRE
    options              optional; ``register`` options for this patient only, shell-quoted, e.g.
                         ``--myocardium-label 1 --heart-label 1 2 3 --alpha 1``; they come after the batch's
                         common ``--options`` and win over them

Relative paths are relative to the manifest's folder. Paths are not opened here: a missing or unreadable file
fails only its patient (reported with the reason), not the cohort. Options are checked with ``register``'s own
parser and configuration, so a typo stops the batch before anything runs.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import functools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("patient", "image", "labels", "landmarks", "landmarks_annotated", "options")
_PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# register options that the manifest's columns or the batch itself set
_RESERVED = {"labels": "the labels column", "landmarks": "the landmarks column",
             "landmarks_annotated": "the landmarks_annotated column", "resume": "the batch (it resumes by itself)",
             "lock_wait": "the batch", "exit_with_parent": "the batch", "cancel_file": "the batch"}


@dataclass(frozen=True)
class CohortPatient:
    """One manifest row: absolute input paths and the ``register`` options of this patient."""

    patient: str
    image: str
    labels: tuple[str, ...] = ()
    landmarks: str | None = None
    landmarks_annotated: str | None = None
    options: tuple[str, ...] = ()
    row: int = 0

    def register_options(self, common: list[str] | tuple[str, ...] = ()) -> list[str]:
        """The ``register`` options after IMAGE: inputs from the columns, then ``common``, then the row's own."""
        argv: list[str] = []
        if self.labels:
            argv += ["--labels", *self.labels]
        if self.landmarks:
            argv += ["--landmarks", self.landmarks]
        if self.landmarks_annotated:
            argv += ["--landmarks-annotated", self.landmarks_annotated]
        return [*argv, *common, *self.options]


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit
        raise ValueError(message)


@functools.cache
def _register_parser() -> _RaisingParser:
    """``inr-cardiac register``'s own parser, raising ValueError instead of exiting (built once)."""
    from . import register_command

    parser = _RaisingParser(prog="inr-cardiac", add_help=False)
    register_command.add_parser(parser.add_subparsers(dest="command"))
    return parser


def check_register_options(options: list[str], where: str) -> argparse.Namespace:
    """Parse ``options`` with ``register``'s parser and build its configuration (ValueError names ``where``)."""
    from . import register_command

    try:
        args = _register_parser().parse_args(["register", "IMAGE", "--out", "RUN_DIR", *options])
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    if args.out != Path("RUN_DIR"):
        raise ValueError(f"{where}: --out is set by the batch (COHORT_DIR/runs/PATIENT), not by options")
    for key, owner in _RESERVED.items():
        if getattr(args, key) not in (None, False, 0.0):
            raise ValueError(f"{where}: --{key.replace('_', '-')} is set by {owner}, not by options")
    register_command.apply_cycle_defaults(args)
    try:
        register_command.cycle_config_from_arguments(args)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    return args


def split_options(text: str | None, where: str) -> tuple[str, ...]:
    """Shell-style split of an options string (``--alpha 1 --heart-label '1 2'`` style quoting)."""
    try:
        return tuple(shlex.split(text or ""))
    except ValueError as error:
        raise ValueError(f"{where}: cannot split options {text!r}: {error}") from None


def _path(text: str, base: Path) -> str:
    path = Path(text.strip()).expanduser()
    return str((path if path.is_absolute() else base / path).resolve())


def _labels(text: str, base: Path) -> tuple[str, ...]:
    items = []
    for item in (part.strip() for part in text.split(";")):
        if not item:
            continue
        frame, sep, path = item.partition("=")
        items.append(f"{frame.strip()}={_path(path, base)}" if sep and frame.strip().isdigit() else _path(item, base))
    return tuple(items)


def read_manifest(path: str | Path, common_options: list[str] | tuple[str, ...] = ()) -> list[CohortPatient]:
    """The patients of a manifest CSV, in file order, with every row's options checked (together with
    ``common_options``, the batch's options for all patients). Raises ValueError naming the row and column."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"manifest not found: {path}")
    base = path.resolve().parent
    with open(path, encoding="utf-8-sig", newline="") as stream:
        reader = csv.DictReader(stream)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [name for name in ("patient", "image") if name not in header]
        if missing:
            raise ValueError(f"{path}: the header must name the columns patient and image (missing: "
                             f"{', '.join(missing)}); columns: {', '.join(COLUMNS)}")
        for name in header:
            close = difflib.get_close_matches(name, COLUMNS, n=1, cutoff=0.8)
            if name not in COLUMNS and close:
                raise ValueError(f"{path}: unknown column {name!r}; did you mean {close[0]!r}?")
        rows = [(reader.line_num, {key.strip(): (value or "").strip() for key, value in row.items() if key})
                for row in reader]  # line_num: the file's line (DictReader skips blank lines)
    patients: list[CohortPatient] = []
    seen: dict[str, int] = {}
    for number, row in rows:
        if not any(row.values()) or row.get("patient", "").startswith("#"):
            continue
        where = f"{path.name} line {number}"
        patient = row.get("patient", "")
        if not _PATIENT_ID.match(patient):
            raise ValueError(f"{where}: patient {patient!r} must be letters, digits, '.', '_' or '-' (it names the "
                             "run folder)")
        if patient.lower() in seen:
            raise ValueError(f"{where}: patient {patient!r} already on line {seen[patient.lower()]}")
        seen[patient.lower()] = number
        if not row.get("image"):
            raise ValueError(f"{where}: patient {patient} has no image")
        options = split_options(row.get("options"), where)
        check_register_options([*common_options, *options], where)
        patients.append(CohortPatient(
            patient=patient, image=_path(row["image"], base),
            labels=_labels(row.get("labels", ""), base),
            landmarks=_path(row["landmarks"], base) if row.get("landmarks") else None,
            landmarks_annotated=_path(row["landmarks_annotated"], base) if row.get("landmarks_annotated") else None,
            options=options, row=number))
    if not patients:
        raise ValueError(f"{path}: no patients (one row per patient under a header with patient,image,...)")
    return patients
