"""The first hour with the CLI (issue 16): --version, help without a command, help text and defaults for
every option, and backend selection by API id and by the API id's prefix."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from suite.cli import _commands, build_parser
from suite.runtime.jsonio import read_result
from suite.runtime.loader import UsageError, resolve, select

ROOT = Path(__file__).resolve().parents[1]


def dropbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite.cli", *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_no_command_prints_the_usage_and_the_commands() -> None:
    proc = dropbench()
    assert proc.returncode == 2
    assert "usage: dropbench" in proc.stderr and "experiment" in proc.stderr and "verify" in proc.stderr, proc.stderr


def test_version() -> None:
    proc = dropbench("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("dropbench "), proc


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _options(child, (*path, name))
        elif action.option_strings and action.dest not in ("help", "version"):
            yield path, parser, action


def test_every_option_of_every_subcommand_has_help_and_shows_its_default() -> None:
    options = list(_options(build_parser(_commands())))
    assert len(options) > 60  # the walk reached the nested experiment/env subcommands
    for path, parser, action in options:
        where = f"dropbench {' '.join(path)} {action.option_strings[0]}"
        assert action.help, f"{where} has no help text"
        if action.default not in (None, False, [], argparse.SUPPRESS):
            assert "default" in parser._get_formatter()._get_help_string(action).lower(), f"{where} hides its default"


def test_experiment_ensemble_help_shows_defaults() -> None:
    proc = dropbench("experiment", "ensemble", "--help")
    assert proc.returncode == 0
    assert "(default: 1,2,4,8,16,32" in " ".join(proc.stdout.split()), proc.stdout
    assert "(default: 200)" in proc.stdout  # --repeats


def test_an_api_id_selects_only_its_backend() -> None:
    assert select([], ["torch:nn.Dropout2d"]) == ["torch"]
    assert select([], ["keras3:jax", "numpy:fast"]) == ["numpy", "keras3-jax"]
    assert select(["numpy"], []) == ["numpy"]


def test_the_api_id_prefix_is_a_backend_name() -> None:
    assert [r.name for r in resolve(["keras3"])] == ["keras3-jax", "keras3-torch", "keras3-tensorflow", "keras3-numpy"]
    assert select(["keras3"], ["keras3:jax"]) == ["keras3-jax"]


@pytest.mark.parametrize("names, apis, said", [
    (["jax"], ["keras3:jax"], "add --backend keras3-jax"),  # the API runs in another worker: say which
    (["numpy", "torch"], ["torch:nn.Dropout"], "--backend numpy runs none"),
    ([], ["torch:nope"], "unknown api 'torch:nope'"),
])
def test_mismatched_backend_and_api_is_a_clear_usage_error(names, apis, said) -> None:
    with pytest.raises(UsageError, match=said.replace("(", r"\(")):
        select(names, apis)


def test_verify_with_only_api_starts_only_that_backend(tmp_path: Path) -> None:
    out = tmp_path / "v.json"
    proc = dropbench("verify", "--api", "numpy:reference", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [b["backend"] for b in read_result(out, kind="verify")["backends"]] == ["numpy"]
