"""The cohort manifest: one CSV row per patient, read and checked before any work starts.

Columns (header row required; order free; other columns, e.g. clinical notes, are ignored)::

    patient              required; the run folder's name: letters, digits, ``.``, ``_``, ``-`` (unique)
    image                required; what ``inr-cardiac register`` reads: a 4D NIfTI/NRRD/MHA, a .seq.nrrd, a
                         folder of 3D frames or a DICOM folder
    labels               optional; a 4D label image, a folder, or ``FRAME=PATH`` items separated by ``;``
    landmarks            optional; reference-frame landmarks (.mrk.json, .fcsv, CSV; LPS mm)
    landmarks_annotated  optional; CSV frame,landmark,x,y,z (LPS mm) of annotated positions, for TRE
    evaluation_labels    optional; labels that only score the run (Dice, HD95 in metrics.csv), never used by it: as
                         ``labels`` (e.g. the ES frame's expert label, ``11=es.nii.gz``)
    options              optional; ``register`` options for this patient only, shell-quoted as on the
                         command line (label values, alpha, preset ...); they come after the batch's common
                         options and win over them

Relative paths are relative to the manifest's folder. Paths are not opened here: a missing or unreadable file
fails only its patient (reported with the reason), not the cohort. Each row becomes a run request
(:class:`~..cycle.request.RunRequest`), whose options are checked as it is built, so a typo stops the batch
before anything runs.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..core.text_files import read_text
from ..core.vocabulary import InputError
from ..cycle.request import InputFiles, RunRequest, absolute_path, label_spec

COLUMNS = ("patient", "image", "labels", "landmarks", "landmarks_annotated", "evaluation_labels", "options")
_PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# request fields that the manifest's columns set (the worker's own options are the batch's: always refused)
_RESERVED = {"image": "the image column", "labels": "the labels column", "landmarks": "the landmarks column",
             "landmarks_annotated": "the landmarks_annotated column",
             "evaluation_labels": "the evaluation_labels column"}


@dataclass(frozen=True)
class CohortPatient:
    """One manifest row: the patient's run request (input files from the columns, settings from the options) and
    the row's own options as written (for messages)."""

    patient: str
    request: RunRequest
    options: tuple[str, ...] = ()
    row: int = 0

    @property
    def image(self) -> str:
        return self.request.inputs.image


def split_options(text: str | None, where: str) -> tuple[str, ...]:
    """Shell-style split of an options string (quotes group words, as in a shell)."""
    try:
        return tuple(shlex.split(text or ""))
    except ValueError as error:
        raise InputError(f"{where}: cannot split options {text!r}: {error}") from None


def _labels(text: str, base: Path, option: str = "labels") -> tuple[str, ...]:
    return tuple(label_spec(item, base, option) for item in (part.strip() for part in text.split(";")) if item)


def read_manifest(path: str | Path, common_options: list[str] | tuple[str, ...] = ()) -> list[CohortPatient]:
    """The patients of a manifest CSV, in file order, with every row's options checked (together with
    ``common_options``, the batch's options for all patients). Raises ValueError naming the row and column."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"manifest not found: {path}")
    base = path.resolve().parent
    with io.StringIO(read_text(path, "manifest", encoding="utf-8-sig"), newline="") as stream:
        reader = csv.DictReader(stream)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [name for name in ("patient", "image") if name not in header]
        if missing:
            raise InputError(f"{path}: the header must name the columns patient and image (missing: "
                             f"{', '.join(missing)}); columns: {', '.join(COLUMNS)}")
        for name in header:
            close = difflib.get_close_matches(name, COLUMNS, n=1, cutoff=0.8)
            if name not in COLUMNS and close:
                raise InputError(f"{path}: unknown column {name!r}; did you mean {close[0]!r}?")
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
            raise InputError(f"{where}: patient {patient!r} must be letters, digits, '.', '_' or '-' (it names the "
                             "run folder)")
        if patient.lower() in seen:
            raise InputError(f"{where}: patient {patient!r} already on line {seen[patient.lower()]}")
        seen[patient.lower()] = number
        if not row.get("image"):
            raise InputError(f"{where}: patient {patient} has no image")
        options = split_options(row.get("options"), where)
        files = InputFiles(image=absolute_path(row["image"], base), labels=_labels(row.get("labels", ""), base),
                           landmarks=absolute_path(row["landmarks"], base) if row.get("landmarks") else None,
                           landmarks_annotated=absolute_path(row["landmarks_annotated"], base)
                           if row.get("landmarks_annotated") else None,
                           evaluation_labels=_labels(row.get("evaluation_labels", ""), base, "evaluation_labels"))
        request = RunRequest(files).with_options([*common_options, *options], where, _RESERVED, "the batch")
        patients.append(CohortPatient(patient=patient, request=request, options=options, row=number))
    if not patients:
        raise InputError(f"{path}: no patients (one row per patient under a header with patient,image,...)")
    return patients
