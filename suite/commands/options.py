"""Argument types and checks shared by the subcommands; all run before any framework import."""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from suite.runtime.loader import UsageError, validate_apis  # noqa: F401 - re-exported for the subcommands


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, except where there is none to show (None, False, [])."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or "default" in text.lower() or default is None or default is False
                or default == [] or default is argparse.SUPPRESS or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """A probability: a number in [0, 1] (NaN refused)."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (thread counts, epochs, seeds counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def writable_path(text: str) -> Path:
    """An output file whose folder exists (or can be made) and accepts a new file, checked up front."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, expected a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {exc.strerror or exc}") from None
    return path


def default_jobs() -> int:
    """Workers at once for stages that time nothing (env, run's verify and probe): they mostly wait on
    framework imports, so the number of CPUs, at least 2."""
    return max(2, os.cpu_count() or 1)


def add_jobs_option(parser: argparse.ArgumentParser, what: str, default: str = "the number of CPUs, at least 2") -> None:
    parser.add_argument("--jobs", type=positive_int, default=None, metavar="N", help=f"{what} at once (default: {default})")


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """--backend/--api/--timeout, the same for every command that runs backends."""
    parser.add_argument("--backend", action="append", default=[], metavar="NAME|module:attr",
                        help="backend to run (repeatable); default: every known backend")
    parser.add_argument("--api", action="append", default=[], metavar="BACKEND:API",
                        help="only these API ids (repeatable); without --backend, only their backends start")
    parser.add_argument("--timeout", type=positive_float, default=600.0, metavar="S", help="per-worker timeout in seconds")


def add_executor_options(parser: argparse.ArgumentParser) -> None:
    """--executor/--address/--nodes, the same for every command that can run on a cluster."""
    from suite.runtime.executors import LOCAL, known_executors  # noqa: PLC0415 - keeps `--help` import-light

    parser.add_argument("--executor", default=LOCAL, metavar="NAME|module:attr",
                        help=f"where workers run: {', '.join(known_executors())} (default {LOCAL}: this machine); "
                             "a cluster runs every backend once on each machine kind of the selected nodes")
    parser.add_argument("--address", metavar="HOST:PORT", help="the cluster's head (default: the engine's own default)")
    parser.add_argument("--nodes", action="append", default=[], metavar="KEY=VALUE|KEY",
                        help="only nodes with this label (KEY=VALUE) or label/custom resource (KEY); repeatable, all must hold")
