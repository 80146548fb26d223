"""The ``inr-cardiac`` command line. Every sub-command lives in its own ``*_command`` module that provides
``add_parser(subparsers)`` and ``run(args) -> int``; bad input ends with one clear line and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# sub-command name -> module (imported lazily so that ``inr-cardiac --help`` stays fast)
COMMANDS = {
    "register": "register_command",
    "demo": "demo_command",
    "pair": "pair_command",
    "phantom": "phantom_command",
    "batch": "batch_command",
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
        return 2
    module = importlib.import_module(f"{__package__}.{COMMANDS[args.command]}")
    try:
        return int(module.run(args) or 0)
    except ValueError as error:
        print(f"inr-cardiac {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"inr-cardiac {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
