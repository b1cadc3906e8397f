"""CLI misuse: exit 2, one line naming the bad value, never a traceback."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from suite.runtime.jsonio import ResultFileError, atomic_write_json, read_result


def dropbench(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite.cli", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize(
    "args, named",
    [
        (["verify", "--backend", "caffe"], "caffe"),
        (["verify", "--api", "numpy:nope", "--backend", "numpy"], "numpy:nope"),
        (["verify", "--timeout", "-3"], "-3"),
        (["verify", "--json", "/proc/forbidden/x.json"], "/proc/forbidden/x.json"),
        (["frobnicate"], "frobnicate"),
        (["verify", "--bogus"], "--bogus"),
    ],
)
def test_misuse_exits_2_with_one_line(args, named) -> None:
    proc = dropbench(*args)
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], proc.stderr


def test_verify_numpy_writes_json(tmp_path) -> None:
    out = tmp_path / "v.json"
    proc = dropbench("verify", "--backend", "numpy", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    payload = read_result(out, kind="verify")
    apis = {r["api"] for r in payload["records"]}
    from backends.numpy_backend import NumpyBackend

    assert apis == {f"numpy:{api}" for api in NumpyBackend.apis} and "numpy:reference" in apis
    assert payload["family_false_fail_bound"] <= 1e-6


def test_plugin_fault_makes_verify_exit_1() -> None:
    proc = dropbench("verify", "--backend", "tests.meta.plugins:GradientUnmasked")
    assert proc.returncode == 1
    assert "gradient/" in proc.stdout


def test_missing_plugin_is_reported_unavailable_not_a_traceback() -> None:
    proc = dropbench("verify", "--backend", "no_such_module:Thing")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # asked for by name, so its absence fails
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "unavailable" in proc.stdout and "no_such_module" in proc.stdout


def test_result_files_are_validated(tmp_path) -> None:
    good = tmp_path / "good.json"
    atomic_write_json(good, {"schema": 1, "kind": "verify", "records": []})
    assert read_result(good, kind="verify")["records"] == []
    cases = {
        "truncated.json": '{"schema": 1, "kind": "ver',
        "foreign.json": json.dumps({"hello": 1}),
        "future.json": json.dumps({"schema": 99, "kind": "verify"}),
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ResultFileError, match=name):
            read_result(path, kind="verify")


def test_cli_and_adapters_import_no_framework() -> None:
    """The suite must not import a framework at module level; only an adapter does, when used."""
    code = (
        "import sys, suite.cli as c, backends, importlib\n"
        "c.build_parser(c._commands())\n"
        "[importlib.import_module(ref.split(':')[0]) for ref in backends.BUILTIN.values()]\n"
        "print(','.join(m for m in ('torch', 'tensorflow', 'mxnet', 'jax', 'keras', 'tf_keras', 'cupy', 'triton',"
        " 'pandas', 'matplotlib') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
