"""The run request: everything one whole-cycle run needs, typed and checked, and the worker's command line.

A :class:`RunRequest` is the input files (:class:`InputFiles`: image, labels per frame, label values, landmarks,
annotated landmarks) plus the settings (:class:`CycleConfig`: mode, reference frame, field region, and the pairwise
:class:`~..engine.config.RegistrationConfig` built from a preset and overrides). It is frozen and validated on
construction; it round-trips ``run.json`` (:meth:`RunRequest.to_dict`/:meth:`RunRequest.from_dict`, folders written
by earlier versions included), and it reports how it differs from another request (:meth:`RunRequest.differences`,
what a resume checks).

This module is also the only place that knows how the worker's options are spelled: it adds them to a parser
(:func:`add_request_arguments`, :func:`add_worker_arguments`, :func:`add_config_arguments`), reads them back
(:func:`request_from_arguments`, :meth:`RunRequest.with_options`) and writes them (:meth:`RunRequest.to_argv`,
:func:`worker_command`). The Slicer module, the MRML export, the cohort manifest, ``demo`` and the phantom build
requests; nothing else turns settings into command-line text. Importable without torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.vocabulary import InputError
from ..engine.config import PRESETS, RegistrationConfig, field_help, field_names, overrides_of, preset

MODES = ("non-sequential", "sequential")
FIELD_REGIONS = ("heart", "full")
CHAINS = (1, 2)
# The margin of the heart field region, over which each written field falls to zero (cycle/field_region.py): the
# linear ramp cannot fold while the displacement there stays below its width, and the LV base moves 10-15 mm.
FIELD_MARGIN_MM = 20.0
WORKER_MODULE = "INRCardiacRegistrationLib.cli"
"""``python -m WORKER_MODULE register ...`` runs the worker."""


# --- the parts -------------------------------------------------------------------------------------------------
def absolute_path(path: str | Path | None, base: Path | None = None) -> str | None:
    """``path`` made absolute (relative to ``base``, else the current folder); None for no path."""
    if path is None or str(path).strip() == "":
        return None
    path = Path(str(path).strip()).expanduser()
    return str((path if path.is_absolute() or base is None else base / path).resolve())


def label_spec(item: str | Path, base: Path | None = None, option: str = "labels") -> str:
    """A label spec with an absolute path (relative paths against ``base``, else the current folder):
    ``FRAME=PATH`` (FRAME >= 0) keeps its frame; anything else is a path (a 4D label image or a folder).
    ``option``: the request field errors name."""
    frame, sep, path = str(item).partition("=")
    if sep and frame.strip().lstrip("-").isdigit():
        if int(frame) < 0:
            raise InputError(f"label spec {item!r}: frame indices are 0-based, got {frame.strip()}", option=option)
        if not path.strip():
            raise InputError(f"label spec {item!r} names no file after '='", option=option)
        return f"{int(frame)}={absolute_path(path, base)}"
    return absolute_path(item, base)


@dataclass(frozen=True)
class InputFiles:
    """Where a run's inputs are (absolute paths) and which label values mean what.

    ``image``: a 4D NIfTI/NRRD/MHA, a Slicer ``.seq.nrrd``, a folder of 3D frames or a DICOM folder;
    ``labels``: label specs, each a 4D label image, a folder of per-frame label files, or ``FRAME=PATH`` (0-based);
    ``myocardium_label``: the LV-myocardium value (None: the label maps' only non-zero value); ``heart_label``:
    values whose union on the reference frame is the sampling mask (empty: the myocardium plus a margin);
    ``landmarks``: reference-frame landmarks (LPS mm); ``landmarks_annotated``: CSV ``frame,landmark,x,y,z`` (LPS mm);
    ``blood_pool_label``: the LV-cavity value in the reference label map, for the cardiac function (volumes, EF) and
    the Jacobian penalty inside the cavity (``blood_pool_jacobian``); ``rv_label``: the RV-cavity value in the
    reference label map, which orients the AHA segments of the strain (from the RV insertion; it does not change the
    registration); ``evaluation_labels``: label specs (as ``labels``) of frames whose myocardium (the same value) is
    used only to score the run (Dice, HD95 in metrics.csv): never in the loss, never in the sampling mask.
    """

    image: str | None = None
    labels: tuple[str, ...] = ()
    myocardium_label: int | None = None
    heart_label: tuple[int, ...] = ()
    landmarks: str | None = None
    landmarks_annotated: str | None = None
    blood_pool_label: int | None = None
    rv_label: int | None = None
    evaluation_labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "image", absolute_path(self.image))
        for name in ("labels", "evaluation_labels"):
            specs = getattr(self, name)
            specs = (specs,) if isinstance(specs, str | Path) else tuple(specs or ())
            object.__setattr__(self, name, tuple(label_spec(item, option=name) for item in specs))
        object.__setattr__(self, "landmarks", absolute_path(self.landmarks))
        object.__setattr__(self, "landmarks_annotated", absolute_path(self.landmarks_annotated))
        object.__setattr__(self, "heart_label", tuple(_label_value(v, "heart_label") for v in self.heart_label or ()))
        for name in ("myocardium_label", "blood_pool_label", "rv_label"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _label_value(getattr(self, name), name))

    def to_dict(self) -> dict:
        """As stored in ``run.json`` under ``inputs`` (empty lists as None)."""
        return {"image": self.image, "labels": list(self.labels) or None, "myocardium_label": self.myocardium_label,
                "heart_label": list(self.heart_label) or None, "landmarks": self.landmarks,
                "landmarks_annotated": self.landmarks_annotated, "blood_pool_label": self.blood_pool_label,
                "rv_label": self.rv_label, "evaluation_labels": list(self.evaluation_labels) or None}

    @classmethod
    def from_dict(cls, data: dict) -> InputFiles:
        known = {item.name for item in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in (data or {}).items() if key in known})


def _label_value(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit() \
            or int(value) < 1:
        raise InputError(f"'{name}' must be label values >= 1, got {value!r}", option=name)
    return int(value)


INPUT_FIELDS = tuple(item.name for item in dataclasses.fields(InputFiles))


@dataclass(frozen=True)
class CycleConfig:
    """How a whole cycle is registered: the pairwise hyper-parameters plus the cycle's own settings.

    ``mode``: ``non-sequential`` (reference -> t for every t, the paper) or ``sequential`` (t-1 -> t, composed).
    ``field_region``: ``"heart"`` writes each transform on the reference grid cropped to the sampling mask and
    the landmarks plus ``field_margin_mm`` (a network is meaningless far outside where it was trained, and
    full-resolution fields of the whole scan are huge); ``"full"`` uses the whole reference grid. Either way the
    written field falls smoothly to zero at its grid's edge (over the margin), so that ITK, SimpleITK and Slicer
    all apply it as the identity outside it (:mod:`.field_region`). ``preset``: the preset
    ``registration`` was built from (a name: the settings themselves are what counts). ``chains``: 1 (default): one
    chain of warm-started pairs around the whole cycle; 2 (non-sequential mode): after the first pair, the frames
    after the reference and those before it (backwards around the cycle) are registered by two chains at once, each
    warm-starting from its previous frame (both from the first pair at their start). The sequential mode always
    runs one chain.
    """

    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    mode: str = "non-sequential"
    reference_frame: int = 0
    field_region: str = "heart"
    field_margin_mm: float = FIELD_MARGIN_MM
    preset: str = "paper"
    chains: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"'mode' must be one of {MODES}, got {self.mode!r}", option="mode")
        if isinstance(self.reference_frame, bool) or not isinstance(self.reference_frame, int) \
                or self.reference_frame < 0:
            raise InputError(f"'reference_frame' must be an integer >= 0, got {self.reference_frame!r}",
                             option="reference_frame")
        if self.field_region not in FIELD_REGIONS:
            raise InputError(f"'field_region' must be one of {FIELD_REGIONS}, got {self.field_region!r}",
                             option="field_region")
        if not (isinstance(self.field_margin_mm, int | float) and math.isfinite(self.field_margin_mm)
                and self.field_margin_mm >= 0):
            raise InputError(f"'field_margin_mm' must be >= 0, got {self.field_margin_mm!r}", option="field_margin_mm")
        if self.preset not in PRESETS:
            raise InputError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}", option="preset")
        if isinstance(self.chains, bool) or self.chains not in CHAINS:
            raise InputError(f"'chains' must be one of {CHAINS}, got {self.chains!r}", option="chains")

    @classmethod
    def from_preset(cls, name: str = "paper", *, mode: str = "non-sequential", reference_frame: int = 0,
                    field_region: str = "heart", field_margin_mm: float = FIELD_MARGIN_MM,
                    **overrides) -> CycleConfig:
        """The preset ``name`` with ``overrides`` (any :class:`RegistrationConfig` field) and the cycle settings."""
        return cls(preset(name, **overrides), mode=mode, reference_frame=reference_frame, field_region=field_region,
                   field_margin_mm=field_margin_mm, preset=name)

    @property
    def overrides(self) -> dict:
        """The registration fields that differ from the preset."""
        return overrides_of(self.registration, self.preset)

    def cycle_dict(self) -> dict:
        """The cycle's own settings (``run.json``'s ``cycle``)."""
        return {name: getattr(self, name) for name in CYCLE_FIELDS}

    def to_dict(self) -> dict:
        return {"registration": self.registration.to_dict(), **self.cycle_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> CycleConfig:
        """The settings of :meth:`to_dict`; keys it does not know are left out, missing ones take their defaults."""
        cycle = {key: value for key, value in data.items() if key in CYCLE_FIELDS}
        return cls(RegistrationConfig.from_dict(data.get("registration") or {}), **cycle)

    def with_changes(self, **changes) -> CycleConfig:
        """A copy with cycle settings, ``preset`` and registration fields changed. A new preset keeps the overrides
        made so far (fields given here win)."""
        cycle = {key: changes.pop(key) for key in CYCLE_FIELDS if key in changes}
        name = cycle.get("preset", self.preset)
        if name != self.preset:
            registration = preset(name, **{**self.overrides, **changes})
        else:
            registration = self.registration.replace(**changes) if changes else self.registration
        return dataclasses.replace(self, registration=registration, **cycle)


CYCLE_FIELDS = tuple(item.name for item in dataclasses.fields(CycleConfig) if item.name != "registration")
"""The cycle's own settings (``run.json``'s ``cycle``): mode, reference frame, field region and margin, preset,
chains."""

# Settings that may differ between a run and its resumption without changing what is computed (the preset is only
# a name: the registration settings themselves are compared). A run resumed on another device continues correctly
# but is not bit-identical to an uninterrupted one.
RESUME_IGNORED = ("device", "compile", "progress_every", "preset", "extra", "rv_label")  # not what a frame computes


@dataclass(frozen=True)
class RunRequest:
    """Everything a whole-cycle run needs: its input files and its settings (both validated)."""

    inputs: InputFiles = field(default_factory=InputFiles)
    settings: CycleConfig = field(default_factory=CycleConfig)

    @property
    def registration(self) -> RegistrationConfig:
        return self.settings.registration

    def to_dict(self) -> dict:
        """``{"inputs", "cycle", "config"}``: the request as ``run.json`` stores it."""
        return {"inputs": self.inputs.to_dict(), "cycle": self.settings.cycle_dict(),
                "config": self.settings.registration.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> RunRequest:
        """The request of a ``run.json`` (or of :meth:`to_dict`). Fields a run folder of an earlier version lacks
        take their defaults (the run used them)."""
        settings = CycleConfig.from_dict({**(data.get("cycle") or {}), "registration": data.get("config") or {}})
        return cls(InputFiles.from_dict(data.get("inputs") or {}), settings)

    def with_changes(self, **changes) -> RunRequest:
        """A copy with any input field, cycle setting, ``preset`` or registration field changed."""
        inputs = {key: changes.pop(key) for key in INPUT_FIELDS if key in changes}
        return RunRequest(dataclasses.replace(self.inputs, **inputs) if inputs else self.inputs,
                          self.settings.with_changes(**changes) if changes else self.settings)

    def differences(self, other: RunRequest, ignore: Iterable[str] = RESUME_IGNORED) -> list[str]:
        """What differs between this request (a stored run) and ``other`` (the one asked for now), one
        ``"name: A in the run, B now"`` each; fields in ``ignore`` are not compared."""
        ignored = set(ignore)
        mine, theirs = self.to_dict(), other.to_dict()
        found = []
        for part in ("inputs", "cycle", "config"):
            for key in sorted(set(mine[part]) | set(theirs[part])):
                a, b = mine[part].get(key), theirs[part].get(key)
                if key not in ignored and a != b:
                    found.append(f"{key}: {a!r} in the run, {b!r} now")
        return found

    # --- the command line --------------------------------------------------------------------------------------
    def to_argv(self) -> list[str]:
        """``IMAGE`` (when set) and the options that give exactly this request (the preset and its overrides; the
        configuration's free-form ``extra`` notes do not travel on a command line)."""
        files, settings = self.inputs, self.settings
        argv = [files.image] if files.image else []
        if files.labels:
            argv += ["--labels", *files.labels]
        if files.myocardium_label is not None:
            argv += ["--myocardium-label", str(files.myocardium_label)]
        if files.heart_label:
            argv += ["--heart-label", *map(str, files.heart_label)]
        if files.landmarks:
            argv += ["--landmarks", files.landmarks]
        if files.landmarks_annotated:
            argv += ["--landmarks-annotated", files.landmarks_annotated]
        if files.blood_pool_label is not None:
            argv += ["--blood-pool-label", str(files.blood_pool_label)]
        if files.rv_label is not None:
            argv += ["--rv-label", str(files.rv_label)]
        if files.evaluation_labels:
            argv += ["--evaluation-labels", *files.evaluation_labels]
        argv += ["--mode", settings.mode, "--reference-frame", str(settings.reference_frame),
                 "--field-region", settings.field_region, "--field-margin-mm", repr(float(settings.field_margin_mm)),
                 "--chains", str(settings.chains)]
        return argv + config_argv(settings.preset, settings.overrides)

    @classmethod
    def from_argv(cls, argv: Sequence[str], ignore_worker_options: bool = False) -> RunRequest:
        """The request ``IMAGE [options]`` asks for (InputError for unknown or invalid options). With
        ``ignore_worker_options`` the worker's own options (``--quiet``, ``--no-report`` ...) may be among them and are
        left out (a command line recorded by an earlier version)."""
        parser = _RaisingParser(prog="register", add_help=False)
        add_request_arguments(parser)
        if ignore_worker_options:
            add_worker_arguments(parser, out_required=False)
        return request_from_arguments(parser.parse_args(list(argv)))

    def with_options(self, options: Sequence[str], where: str = "options", refused: dict[str, str] | None = None,
                     launcher: str = "whoever starts the worker") -> RunRequest:
        """This request changed by command-line ``options`` (no IMAGE; later options win over earlier ones).
        ``refused``: request fields that must not be given, with who sets them instead; the worker's own options
        (``--out``, ``--resume`` ...) are always refused (they are the ``launcher``'s). InputError names ``where``."""
        parser = _RaisingParser(prog=where, add_help=False)
        add_request_arguments(parser, image=False)
        worker_flags = add_worker_arguments(parser, out_required=False)
        try:
            args = parser.parse_args(list(options))
        except InputError as error:
            raise InputError(f"{where}: {error}") from None
        worker = [flag for dest, flag in worker_flags.items()
                  if getattr(args, dest) is not None and getattr(args, dest) is not False]
        if worker:
            raise InputError(f"{where}: {worker[0]} is set by {launcher}, not by options")
        changes = request_changes(args)
        for name, owner in (refused or {}).items():
            if name in changes:
                raise InputError(f"{where}: {option_name(name)} is set by {owner}, not by options")
        try:
            return self.with_changes(**changes)
        except InputError as error:
            raise InputError(f"{where}: {error}", option=error.option) from None


# --- option spellings ------------------------------------------------------------------------------------------
_ALIASES = {  # short or paper-style names accepted besides the field names
    "iterations": ("--iterations-first",),
    "warm_start_iterations": ("--iterations-others",),
    "learning_rate": ("--lr",),
    "regularization_weight": ("--lambda",),
}


def option_name(name: str) -> str:
    """The command-line option of a request field: ``learning_rate`` -> ``--learning-rate``."""
    return "--" + name.replace("_", "-")


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the usage and exit
        raise InputError(message)


def _number_list(values) -> list[str]:
    return [repr(v) if isinstance(v, float) else str(v) for v in values]


def config_argv(preset_name: str, overrides: dict) -> list[str]:
    """``--preset NAME`` and one option per overridden registration field (values written to round-trip exactly)."""
    argv = ["--preset", preset_name]
    for name, value in overrides.items():
        argv += [option_name(name), *_number_list(value if isinstance(value, list | tuple) else [value])]
    return argv


def add_config_arguments(parser: argparse.ArgumentParser, default_preset: str = "paper") -> None:
    """``--preset`` and one option per registration field; a field not given keeps the preset's value."""
    group = parser.add_argument_group("registration parameters")
    group.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help=f"base configuration (default: {default_preset}); the options below override it")
    parser.set_defaults(default_preset=default_preset)
    presets = {name: preset(name) for name in sorted(PRESETS)}
    for item in dataclasses.fields(RegistrationConfig):
        if item.name == "extra":
            continue
        values = {name: getattr(config, item.name) for name, config in presets.items()}
        shown = ", ".join(f"{name}: {value}" for name, value in values.items()) if len(set(map(str, values.values()))) \
            > 1 else f"default: {values['paper']}"
        kwargs: dict = {"default": None, "dest": f"config_{item.name}", "metavar": item.name.upper(),
                        "help": f"{field_help(item.name)} ({shown})"}
        if isinstance(item.default, tuple):
            kwargs.update(nargs=2, type=float, metavar=("LOW", "HIGH"))
        elif isinstance(item.default, int):
            kwargs.update(type=int)
        elif isinstance(item.default, float):
            kwargs.update(type=float)
        group.add_argument(option_name(item.name), *_ALIASES.get(item.name, ()), **kwargs)


def config_changes(args: argparse.Namespace) -> dict:
    """The registration fields given on the command line (``--preset`` not included)."""
    changes = {}
    for name in field_names():
        value = getattr(args, f"config_{name}", None)
        if value is not None:
            changes[name] = tuple(value) if isinstance(value, list) else value
    return changes


def config_from_arguments(args: argparse.Namespace) -> RegistrationConfig:
    """The preset named by ``--preset`` (else the parser's default preset) with every given field applied."""
    return preset(args.preset or getattr(args, "default_preset", "paper"), **config_changes(args))


def add_request_arguments(parser: argparse.ArgumentParser, image: bool = True) -> None:
    """The request's options: IMAGE (positional, when ``image``), labels and landmarks, the cycle settings and the
    registration parameters. Every default is None: :func:`request_changes` sees what was given."""
    if image:
        parser.add_argument("image", nargs="?", metavar="IMAGE",
                            help="4D NIfTI/NRRD/MHA, a Slicer .seq.nrrd, a folder of 3D frames (natural order) or a "
                                 "DICOM folder with all phases (optional with --resume: taken from RUN_DIR/run.json)")
    inputs = parser.add_argument_group("labels and landmarks")
    inputs.add_argument("--labels", action="append", nargs="+", metavar="SPEC",
                        help="a 4D label image, a folder of per-frame label files, or FRAME=PATH (repeatable) for "
                             "only some frames (0-based); frames without a myocardium label get no SDF term")
    inputs.add_argument("--evaluation-labels", action="append", nargs="+", metavar="SPEC",
                        help="label maps used only to score the run (Dice, HD95 of the myocardium, same value as "
                             "--myocardium-label), never in the loss or the sampling mask: FRAME=PATH (repeatable), "
                             "a 4D label image or a folder; in a frame that has both, these are scored")
    inputs.add_argument("--myocardium-label", type=int, metavar="N",
                        help="LV-myocardium value in the label maps (default: their only non-zero value)")
    inputs.add_argument("--blood-pool-label", type=int, metavar="N",
                        help="LV-cavity value in the reference label map: the run then also writes the cardiac "
                             "function (LV volume per frame, EDV, ESV, EF, strain; function.json, function.csv)")
    inputs.add_argument("--rv-label", type=int, metavar="N",
                        help="RV-cavity value in the reference label map: orients the AHA segments of the strain "
                             "from the RV insertion (default: the septum towards the patient's right-anterior)")
    inputs.add_argument("--heart-label", type=int, nargs="+", metavar="N",
                        help="label value(s) forming the heart mask of the reference frame, where training points "
                             "are drawn (dilated by --mask-dilation-voxels); default: the reference myocardium "
                             "dilated by --myocardium-margin-mm")
    inputs.add_argument("--landmarks", type=Path, metavar="FILE",
                        help="landmarks on the reference frame: Slicer .mrk.json, .fcsv or CSV landmark,x,y,z "
                             "(LPS mm); a CSV frame,landmark,x,y,z gives its reference-frame rows")
    inputs.add_argument("--landmarks-annotated", type=Path, metavar="CSV",
                        help="annotated positions per frame for TRE: CSV frame,landmark,x,y,z (LPS mm)")
    cycle = parser.add_argument_group("cycle")
    cycle.add_argument("--mode", choices=MODES, default=None,
                       help="non-sequential: reference -> t for every t; sequential: t-1 -> t, composed "
                            "(default: non-sequential)")
    cycle.add_argument("--reference-frame", type=int, default=None, metavar="K",
                       help="the reference frame (0-based, default 0 = ED)")
    cycle.add_argument("--field-region", choices=FIELD_REGIONS, default=None,
                       help="grid of the written transforms: the reference grid cropped to the sampling mask and "
                            "landmarks plus --field-margin-mm (default), or the whole reference grid")
    cycle.add_argument("--field-margin-mm", type=float, default=None, metavar="MM",
                       help="margin (mm) around the heart field region, over which each written field falls to "
                            f"zero (default {FIELD_MARGIN_MM:g})")
    cycle.add_argument("--chains", type=int, choices=CHAINS, default=None,
                       help="1 (default): one chain of warm-started pairs around the cycle; 2 (non-sequential "
                            "mode): the frames after the reference and those before it as two chains at once (on 2 "
                            "CPU cores little faster and slightly less accurate: docs/benchmarks.md)")
    add_config_arguments(parser)


def request_changes(args: argparse.Namespace) -> dict:
    """Every request field given on the command line parsed with :func:`add_request_arguments`."""
    changes: dict = {}
    for name in (*INPUT_FIELDS, *CYCLE_FIELDS, "preset"):
        value = getattr(args, name, None)
        if name in ("labels", "evaluation_labels") and value:
            value = [item for group in value for item in group]
        if value is not None:
            changes[name] = value
    return {**changes, **config_changes(args)}


def request_from_arguments(args: argparse.Namespace, stored: RunRequest | None = None,
                           source: str = "run.json") -> RunRequest:
    """The request a parsed command line asks for.

    Without ``stored``: a new request (IMAGE required). With ``stored`` (``--resume`` without IMAGE: the request of
    the run being continued, read from ``source``): the stored request; options given must agree with it, and input
    files may not be given at all. The device is not part of what a run computes: it is ``--device`` when given,
    else ``auto`` (a run started on ``cuda:1`` resumes on a machine with one GPU, or none).
    """
    changes = request_changes(args)
    if stored is None:
        if changes.get("image") is None:
            raise InputError("IMAGE is required (or use --resume with a run folder that has run.json)")
        return RunRequest().with_changes(**changes)
    given = [option_name(name) for name in INPUT_FIELDS if name in changes]
    if given:
        raise InputError(f"--resume without IMAGE takes the inputs from {source}: drop {', '.join(given)} or give "
                         "IMAGE and all inputs again")
    request = stored.with_changes(**{"device": RegistrationConfig().device, **changes})
    differences = stored.differences(request)
    if differences:
        raise InputError(f"the options differ from the run's settings in {source} ({'; '.join(differences[:3])}); "
                         "a resumed run keeps its settings (only --device may change)")
    return request


# --- the worker --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerOptions:
    """How the worker runs (not what it computes): ``resume`` a run folder (or start it), ``quiet`` (no progress
    bar), ``report`` (write report.png), wait up to ``lock_wait_s`` for a folder another worker holds, stop when
    process ``exit_with_parent`` ends (0: the starting process) or one of ``cancel_files`` exists."""

    resume: bool = False
    quiet: bool = True
    report: bool = True
    lock_wait_s: float = 0.0
    exit_with_parent: int | None = None
    cancel_files: tuple[str, ...] = ()

    def to_argv(self) -> list[str]:
        argv = ["--resume"] if self.resume else []
        argv += ["--quiet"] if self.quiet else []
        argv += [] if self.report else ["--no-report"]
        argv += ["--lock-wait", repr(float(self.lock_wait_s))] if self.lock_wait_s else []
        argv += ["--exit-with-parent", str(self.exit_with_parent)] if self.exit_with_parent is not None else []
        for path in self.cancel_files:
            argv += ["--cancel-file", str(path)]
        return argv

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> WorkerOptions:
        return cls(resume=bool(args.resume), quiet=bool(args.quiet), report=not args.no_report,
                   lock_wait_s=float(args.lock_wait or 0.0), exit_with_parent=args.exit_with_parent,
                   cancel_files=tuple(str(p) for p in args.cancel_file or ()))


def add_worker_arguments(parser: argparse.ArgumentParser, out_required: bool = True) -> dict[str, str]:
    """The worker's own options: ``--out`` and how it runs (:class:`WorkerOptions`). Returns ``{dest: option}`` of
    the options it added."""
    group = parser.add_argument_group("running")
    actions = [
        parser.add_argument("--out", required=out_required, type=Path, metavar="RUN_DIR",
                            help="run folder (new, or with --resume)"),
        group.add_argument("--resume", action="store_true",
                           help="continue the cancelled or crashed run in RUN_DIR, keeping its finished frames"),
        group.add_argument("--lock-wait", type=float, default=None, metavar="S",
                           help="if another worker is writing RUN_DIR, wait up to S seconds for it to end (default "
                                "0: fail at once, exit code 1)"),
        group.add_argument("--exit-with-parent", type=int, nargs="?", const=0, default=None, metavar="PID",
                           help="stop cleanly (as on cancel) when process PID (default: the one that started this "
                                "one) ends; batch runs use it so that killing the batch leaves no orphan"),
        group.add_argument("--cancel-file", action="append", type=Path, metavar="PATH",
                           help="also stop cleanly when PATH exists (repeatable; unlike RUN_DIR/cancel it is never "
                                "removed); batch runs pass the cohort's cancel file"),
        group.add_argument("--no-report", action="store_true", help="do not write report.png"),
        group.add_argument("--quiet", action="store_true", help="no progress bar"),
    ]
    return {action.dest: action.option_strings[0] for action in actions}


def worker_command(python: str | Path, run_dir: str | Path, request: RunRequest | None = None,
                   options: WorkerOptions | None = None) -> list[str]:
    """The argv that runs the worker (``python -m INRCardiacRegistrationLib.cli register``) on ``request`` into
    ``run_dir``. ``request`` None: resume from the run folder's own ``run.json`` (``options.resume`` must be set)."""
    options = options if options is not None else WorkerOptions()
    if request is None and not options.resume:
        raise ValueError("a worker without a request can only resume a run folder")
    return [str(python), "-m", WORKER_MODULE, "register", *(request.to_argv() if request else []), "--out",
            str(run_dir), *options.to_argv()]
