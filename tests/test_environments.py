"""Worker environments: which interpreter runs a backend, what happens when it is missing, and a real
round trip through a worker that runs in another interpreter (verify, env and bench)."""
from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path

import pytest

from suite.runtime import environments
from suite.runtime.environments import ENV_DIR_VAR, MARKER, create, definitions, launch_for, python_in, state
from suite.runtime.jsonio import atomic_write_json
from suite.runtime.loader import UsageError, resolve
from suite.runtime.worker import Task, run_task
from suite.verify.runner import run_verify

JAX_REF = "backends.jax_backend:JaxBackend"
NUMPY_REF = "backends.numpy_backend:NumpyBackend"


def dropbench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "suite.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def fake_env(root: Path, name: str, python_target: str, requirements: list[str] | None = None) -> Path:
    """An environment folder as `env create` leaves it, its interpreter a symlink to ``python_target``."""
    path = root / name
    python = python_in(path)
    python.parent.mkdir(parents=True)
    python.symlink_to(python_target)
    reqs = list(definitions()[name].requirements) if requirements is None else requirements
    atomic_write_json(path / MARKER, {"schema": 1, "kind": "environment", "name": name, "requirements": reqs,
                                      "packages": {}})
    return path


@pytest.fixture
def env_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "envs"
    monkeypatch.setenv(ENV_DIR_VAR, str(root))
    return root


# -- resolution (no process started) -------------------------------------------------------------
def test_missing_environment_makes_the_backend_unavailable_with_the_command(env_root) -> None:
    launch = launch_for(JAX_REF)
    assert launch.environment == "jax"
    assert launch.unavailable == "environment 'jax' not created: run `dropbench env create jax`"
    result = run_task(Task("verify", JAX_REF))
    assert (result.status, result.detail) == ("unavailable", launch.unavailable)


def test_present_environment_interpreter_is_used(env_root) -> None:
    path = fake_env(env_root, "jax", sys.executable)
    launch = launch_for(JAX_REF)
    assert launch.unavailable is None
    assert launch.python == str(path / "bin" / "python")
    assert launch.env["DROPBENCH_ENVIRONMENT"] == "jax"
    keras = launch_for("backends.keras3_backend:Keras3Jax")
    assert keras.python == launch.python and keras.env["KERAS_BACKEND"] == "jax"


def test_one_interpreter_maps_every_environment_to_this_one(env_root, monkeypatch: pytest.MonkeyPatch) -> None:
    """DROPBENCH_ONE_INTERPRETER=1 (the device run): jax runs here though no `jax` environment exists; the
    environment it names stays visible to the worker; any other value leaves each backend to its own."""
    monkeypatch.setenv("DROPBENCH_ONE_INTERPRETER", "1")
    launch = launch_for("backends.keras3_backend:Keras3Jax")
    assert (launch.python, launch.unavailable, launch.environment) == (sys.executable, None, None)
    assert launch.env == {"KERAS_BACKEND": "jax", "DROPBENCH_ENVIRONMENT": "jax (mapped to the one interpreter)"}
    monkeypatch.setenv("DROPBENCH_ONE_INTERPRETER", "yes")
    assert launch_for(JAX_REF).unavailable == "environment 'jax' not created: run `dropbench env create jax`"


def test_incomplete_and_stale_environments(env_root) -> None:
    path = fake_env(env_root, "jax", sys.executable, requirements=["jax==0.0.1"])
    assert state("jax").status == "stale" and launch_for(JAX_REF).unavailable is None  # runs; `env list` says so
    (path / MARKER).unlink()  # an interrupted build: no marker
    current = state("jax")
    assert current.status == "incomplete" and "dropbench env create jax" in current.detail
    assert launch_for(JAX_REF).unavailable == current.detail


def test_main_environment_backends_and_plugins_use_this_interpreter(env_root) -> None:
    for ref in (NUMPY_REF, "backends.keras3_backend:Keras3Torch"):
        assert launch_for(ref).python == sys.executable and launch_for(ref).unavailable is None
    assert launch_for("backends.keras3_backend:Keras3Tensorflow").env == {"KERAS_BACKEND": "tensorflow"}
    # a plugin module is never imported by the parent (it could crash it), so it runs here
    before = set(sys.modules)
    assert launch_for("tests.meta.raises_on_import:Thing").python == sys.executable
    assert "tests.meta.raises_on_import" not in set(sys.modules) - before


def test_verify_reports_missing_environment_and_fails_only_when_asked_by_name(env_root) -> None:
    named = run_verify(resolve(["jax"]), required=True)
    assert named.backends == [{"backend": "jax", "ref": "jax", "status": "unavailable", "versions": {},
                               "reason": "environment 'jax' not created: run `dropbench env create jax`",
                               "ran_on": {"executor": "local"}}]
    assert named.exit_code() == 1 and named.records == []
    assert run_verify(resolve(["jax"]), required=False).exit_code() == 0


# -- a worker in another interpreter --------------------------------------------------------------
@pytest.fixture(scope="module")
def foreign_root(tmp_path_factory) -> Path:
    """An environment root whose "jax" is a separate virtual environment (its own sys.prefix), built like
    `env create` leaves one; it reaches this interpreter's packages through a .pth instead of pip."""
    root = tmp_path_factory.mktemp("foreign")
    path = root / "jax"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    purelib = subprocess.run([str(python_in(path)), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "main-packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    atomic_write_json(path / MARKER, {"schema": 1, "kind": "environment", "name": "jax", "packages": {},
                                      "requirements": list(definitions()["jax"].requirements)})
    return root


@pytest.fixture
def numpy_in_foreign_env(foreign_root, monkeypatch) -> Path:
    """The numpy backend declared to live in environment "jax", which is the foreign interpreter."""
    monkeypatch.setenv(ENV_DIR_VAR, str(foreign_root))
    real = environments.declaration
    monkeypatch.setattr(environments, "declaration", lambda ref: ("jax", {}) if ref == NUMPY_REF else real(ref))
    return foreign_root / "jax"


def test_worker_in_a_foreign_interpreter_round_trips(numpy_in_foreign_env) -> None:
    result = run_task(Task("env", NUMPY_REF))
    assert result.status == "ok", result.detail
    assert result.payload["python"].startswith(f"{numpy_in_foreign_env} ")  # the worker's sys.prefix
    assert result.payload["available"] and result.payload["apis"]
    report = run_verify(resolve(["numpy"]), {"numpy:reference"})
    assert report.backends[0]["python"].startswith(f"{numpy_in_foreign_env} ")
    assert report.records and {r["status"] for r in report.records} <= {"pass", "skip"}


def test_bench_worker_in_a_foreign_interpreter(numpy_in_foreign_env, tmp_path) -> None:
    from suite.bench.runner import BenchOptions, exit_code, run_bench

    out = tmp_path / "bench.json"
    payload = run_bench(BenchOptions(backends=("numpy",), apis=("numpy:reference",), sizes=(4096,), quick=True,
                                     json_path=str(out)))
    entry = payload["backends"][0]
    assert entry["status"] == "ok" and entry["python"] == str(numpy_in_foreign_env / "bin" / "python"), entry
    assert entry["benchmarks"] == 2 and entry["baselines"] == 2  # forward and forward_backward; copy and rng32
    assert exit_code(payload) == 0
    assert json.loads(out.read_text())["kind"] == "bench"


# -- building -------------------------------------------------------------------------------------
def test_create_builds_marks_and_then_is_idempotent(env_root, monkeypatch) -> None:
    empty = environments.EnvDefinition("empty", "no packages", (), ())
    monkeypatch.setattr(environments, "definitions", lambda path=None: {"empty": empty})
    said: list[str] = []
    built = create("empty", quiet=True, say=said.append)
    assert built.status == "ready" and built.python.exists()
    marker = json.loads((built.path / MARKER).read_text())
    assert marker["kind"] == "environment" and marker["requirements"] == [] and "pip" in marker["packages"]
    stamp = (built.path / MARKER).stat().st_mtime_ns
    assert create("empty", quiet=True, say=said.append).status == "ready"
    assert (built.path / MARKER).stat().st_mtime_ns == stamp and "up to date" in said[-1]
    with pytest.raises(UsageError, match="'nope'"):
        create("nope", say=said.append)


def test_env_cli_list_and_bad_name(env_root) -> None:
    listed = dropbench("env", "list", env={ENV_DIR_VAR: str(env_root)})
    assert listed.returncode == 0 and "jax" in listed.stdout and "missing" in listed.stdout
    assert "dropbench env create jax" in listed.stdout
    bad = dropbench("env", "create", "nope")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "'nope'" in bad.stderr
