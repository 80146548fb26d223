"""The ``inr-cardiac`` command line. Every sub-command lives in its own module of this package that provides
``add_parser(subparsers)`` and ``run(args) -> int``; bad input ends with one clear line and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..core.vocabulary import ExitCode, InputError

# sub-command name -> module (imported lazily so that ``inr-cardiac --help`` stays fast)
COMMANDS = {
    "register": "register",
    "demo": "demo",
    "pair": "pair",
    "phantom": "phantom",
    "batch": "batch",
    "function": "function",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inr-cardiac",
        description="Track the left-ventricle myocardium through a cardiac cycle by INR registration.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        module = importlib.import_module(f"{__package__}.{module_name}")
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return ExitCode.BAD_INPUT
    module = importlib.import_module(f"{__package__}.{COMMANDS[args.command]}")
    try:
        return int(module.run(args) or 0)
    except InputError as error:  # the user's input: one line; any other exception is a defect (traceback, exit 1)
        print(f"inr-cardiac {args.command}: error: {error}{_option_hint(error)}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print(f"inr-cardiac {args.command}: interrupted", file=sys.stderr)
        return ExitCode.CANCELLED


def _option_hint(error: InputError) -> str:
    """`` (--myocardium-label)``: the option that sets what the error is about, unless the message names it."""
    from ..cycle.request import option_name

    if not error.option or error.option == "image":
        return ""
    flag = option_name(error.option)
    return "" if flag in str(error) else f" ({flag})"

