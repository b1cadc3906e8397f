"""`dropbench` command line. Validates every option before any framework is imported."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib import metadata
from types import ModuleType
from typing import Sequence

from suite.commands.options import DefaultsFormatter
from suite.runtime.jsonio import ResultFileError
from suite.runtime.loader import UsageError

# one line per subcommand module (see suite/commands/__init__.py)
COMMAND_MODULES = (
    "suite.commands.run",
    "suite.commands.verify",
    "suite.commands.probe",
    "suite.commands.bench",
    "suite.commands.env",
    "suite.commands.report",
    "suite.commands.compare",
    "suite.commands.experiment",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports misuse in one line with exit 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _commands() -> dict[str, ModuleType]:
    modules = [importlib.import_module(name) for name in COMMAND_MODULES]
    return {module.NAME: module for module in modules}


def _version() -> str:
    """The installed distribution's version; a checkout that was never installed says so."""
    try:
        return metadata.version("dropbench")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def build_parser(commands: dict[str, ModuleType]) -> argparse.ArgumentParser:
    parser = _Parser(prog="dropbench", description="Does dropout mean the same in every framework, and how fast is it?",
                     epilog="`dropbench COMMAND --help` shows a command's options and their defaults.")
    parser.add_argument("--version", action="version", version=f"dropbench {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module in commands.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP,
                                            formatter_class=DefaultsFormatter))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    commands = _commands()
    try:
        parser = build_parser(commands)
        args = parser.parse_args(argv)
        if args.command is None:  # no command: the usage and the list of commands, misuse all the same
            parser.print_help(sys.stderr)
            return 2
        return commands[args.command].run(args)
    except (UsageError, ResultFileError) as exc:
        print(f"dropbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dropbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dropbench ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
