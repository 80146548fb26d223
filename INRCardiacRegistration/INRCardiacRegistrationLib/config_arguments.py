"""Command-line options generated from :class:`RegistrationConfig`, so the CLI and the config never drift.

``--preset paper|fast`` picks the base; every field can be overridden (``--iterations 500``, ``--alpha 1``,
``--quantiles 0.01 0.99`` ...). Only options the user gave override the preset.
"""

from __future__ import annotations

import argparse
import dataclasses

from .registration_config import PRESETS, RegistrationConfig, preset

_HELP = {
    "iterations": "optimiser iterations of a pair trained from scratch (the first pair of a cycle)",
    "warm_start_iterations": "optimiser iterations of a pair warm-started from the previous pair",
    "points": "random points per iteration",
    "width": "SIREN units per hidden layer",
    "depth": "SIREN hidden layers",
    "omega": "SIREN frequency factor",
    "learning_rate": "Adam learning rate",
    "alpha": "weight of the SDF term in [0, 1] (frames without a label use 0)",
    "regularization_weight": "lambda of the Jacobian-determinant penalty",
    "tau": "clip of the Jacobian-determinant penalty",
    "jacobian": "Jacobian computation: analytic or autograd",
    "jacobian_points": "points per iteration that carry the Jacobian penalty (0 = all)",
    "seed": "random seed",
    "device": "auto, cpu or cuda[:N]",
    "normalization": "intensity normalisation: quantile or window",
    "quantiles": "low/high quantiles mapped to -1/+1",
    "window": "fixed intensity window (HU) mapped to -1/+1",
    "sdf_clip_mm": "SDF clip distance in mm",
    "mask_dilation_voxels": "heart-mask dilation (voxels) for sampling",
    "myocardium_margin_mm": "sampling margin (mm) around the myocardium when no heart mask is given",
    "coordinate_margin": "margin factor of the normalised coordinate box",
    "progress_every": "iterations between progress reports",
    "local_ncc_mm": "0: global image NCC (paper); > 0: local NCC in cubes of this edge in mm (e.g. 10 for cine MRI)",
    "local_ncc_points": "points per cube of the local NCC",
}
_SKIPPED = {"extra"}
# Short or paper-style names accepted besides the field names.
_ALIASES = {
    "iterations": ("--iterations-first",),
    "warm_start_iterations": ("--iterations-others",),
    "learning_rate": ("--lr",),
    "regularization_weight": ("--lambda",),
}


def option_name(name: str) -> str:
    """The command-line option of a field or setting: ``learning_rate`` -> ``--learning-rate``."""
    return "--" + name.replace("_", "-")


def _options_argv(preset_name: str, fields: dict) -> list[str]:
    argv = ["--preset", preset_name]
    for name, value in fields.items():
        values = value if isinstance(value, list | tuple) else [value]
        argv += [option_name(name), *[str(v) for v in values]]
    return argv


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--preset`` and one option per configuration field (default: keep the preset's value)."""
    group = parser.add_argument_group("registration parameters")
    group.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                       help="base configuration (default: paper); options below override it")
    defaults = RegistrationConfig()
    for field in dataclasses.fields(RegistrationConfig):
        if field.name in _SKIPPED:
            continue
        option = option_name(field.name)
        value = getattr(defaults, field.name)
        kwargs: dict = {"default": None, "dest": f"config_{field.name}", "metavar": field.name.upper(),
                        "help": f"{_HELP.get(field.name, field.name)} (paper: {value})"}
        if isinstance(value, tuple):
            kwargs.update(nargs=2, type=float, metavar=("LOW", "HIGH"))
        elif isinstance(value, bool):
            kwargs.update(type=lambda s: s.lower() in ("1", "true", "yes"))
        elif isinstance(value, int):
            kwargs.update(type=int)
        elif isinstance(value, float):
            kwargs.update(type=float)
        group.add_argument(option, *_ALIASES.get(field.name, ()), **kwargs)


def config_from_arguments(args: argparse.Namespace) -> RegistrationConfig:
    """The preset named by ``args.preset`` with every given option applied (validated)."""
    overrides = {}
    for field in dataclasses.fields(RegistrationConfig):
        value = getattr(args, f"config_{field.name}", None)
        if value is not None:
            overrides[field.name] = tuple(value) if isinstance(value, list) else value
    return preset(args.preset, **overrides)


def config_argv(args: argparse.Namespace) -> list[str]:
    """The options (``--preset`` and every given field) that reproduce ``args``' configuration on another command
    line built with :func:`add_config_arguments`."""
    names = [field.name for field in dataclasses.fields(RegistrationConfig)]
    given = {name: getattr(args, f"config_{name}", None) for name in names}
    return _options_argv(args.preset, {name: value for name, value in given.items() if value is not None})


def settings_argv(preset_name: str = "paper", **fields) -> list[str]:
    """``--preset`` and one option per given :class:`RegistrationConfig` field (``learning_rate=1e-4`` ->
    ``--learning-rate 0.0001``), checked first: unknown names and invalid values raise ValueError here rather than
    in the worker. The Slicer module builds its worker command line with this."""
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(RegistrationConfig)} | set(fields) & _SKIPPED)
    if unknown:
        raise ValueError(f"unknown registration parameter(s) {unknown}")
    preset(preset_name, **fields)  # validates the values
    return _options_argv(preset_name, fields)
