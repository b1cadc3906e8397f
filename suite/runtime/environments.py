"""Worker environments: which interpreter runs a backend's worker, and building those interpreters.

Some frameworks cannot share one interpreter (MXNet 1.9.1 needs numpy < 2; JAX 0.10 needs numpy 2).
A backend class may declare ``environment = "jax"`` (None: the interpreter running dropbench) and
``worker_env = {"KERAS_BACKEND": "jax"}`` (variables its worker needs before any import). The
environments are defined in ``backends/environments.toml`` and built outside the repository, in
``$DROPBENCH_ENV_DIR`` (default ``~/.cache/dropbench/envs``), by ``dropbench env create NAME``.

The exchange with a worker in another environment is the one every worker uses (suite/runtime/worker.py,
suite/bench/runner.py): command-line arguments and environment variables in, JSON files out (schema 1,
written atomically), plus JSON-lines journals/outcome logs; no pickles, so the two interpreters need
not share any package version. The worker imports ``suite`` and ``backends`` from the repository
through PYTHONPATH, so both must work under numpy 1.26 and numpy 2.

The parent never imports a framework here: :func:`launch_for` reads the two class attributes of a
built-in adapter (a module under ``backends.``, which imports no framework at module level); any
other ``module:attr`` runs in the main interpreter, since importing a plugin in the parent could
crash it.
"""
from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import tomllib

from backends import ENVIRONMENTS_FILE
from suite.runtime.jsonio import ResultFileError, atomic_write_json, atomic_write_text, read_result
from suite.runtime.loader import UsageError

DEFINITIONS_FILE = ENVIRONMENTS_FILE
ENV_DIR_VAR = "DROPBENCH_ENV_DIR"
ENVIRONMENT_VAR = "DROPBENCH_ENVIRONMENT"  # set in a worker started in a named environment (informational)
ONE_INTERPRETER_VAR = "DROPBENCH_ONE_INTERPRETER"
"""Set to 1: every backend's worker runs in the interpreter that runs dropbench, whatever environment it names.
Why: a machine whose one Python already holds every framework (the GPU machine: jax next to torch and cupy,
no registry to build a `jax` environment from) runs them all as they are; .ci/gpu-run sets it."""
ONE_INTERPRETER_NOTE = "mapped to the one interpreter"
MARKER = "dropbench-env.json"  # written last by `env create`: an environment without it is incomplete
BUILTIN_PACKAGE = "backends."


@dataclass(frozen=True)
class EnvDefinition:
    name: str
    description: str
    backends: tuple[str, ...]
    requirements: tuple[str, ...]


@dataclass(frozen=True)
class EnvState:
    """Where an environment is and whether a worker can use it."""

    name: str
    path: Path
    status: str  # ready | stale | missing | incomplete | undefined
    detail: str = ""
    packages: dict[str, str] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        return python_in(self.path)

    @property
    def usable(self) -> bool:
        """ready, or built from an older requirements list (still runs; `env list` says so)."""
        return self.status in ("ready", "stale")


@dataclass(frozen=True)
class Launch:
    """How to start one backend's worker: interpreter, extra variables, or why it cannot start."""

    python: str
    env: dict[str, str]
    environment: str | None = None  # None: the interpreter running dropbench
    unavailable: str | None = None  # set: do not start a worker; report the backend unavailable with this


# -- definitions and locations -------------------------------------------------------------------
def definitions(path: Path = DEFINITIONS_FILE) -> dict[str, EnvDefinition]:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    return {name: EnvDefinition(name, str(raw.get("description", "")), tuple(raw.get("backends", ())),
                                tuple(raw["requirements"]))
            for name, raw in data.get("env", {}).items()}


def env_root() -> Path:
    """``$DROPBENCH_ENV_DIR`` or ``~/.cache/dropbench/envs``: outside the repository, shared by checkouts."""
    configured = os.environ.get(ENV_DIR_VAR)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "dropbench" / "envs"


def python_in(path: Path) -> Path:
    """The interpreter of a virtual environment (POSIX bin/python, Windows Scripts/python.exe)."""
    windows = path / "Scripts" / "python.exe"
    return windows if os.name == "nt" else path / "bin" / "python"


def create_command(name: str) -> str:
    return f"dropbench env create {name}"


def state(name: str, defs: dict[str, EnvDefinition] | None = None) -> EnvState:
    """The environment's status, from its folder and the marker that `env create` writes last."""
    defs = definitions() if defs is None else defs
    path = env_root() / name
    if name not in defs:
        return EnvState(name, path, "undefined", f"no environment {name!r} in {DEFINITIONS_FILE.name}")
    if not path.exists():
        return EnvState(name, path, "missing", f"environment '{name}' not created: run `{create_command(name)}`")
    marker = path / MARKER
    if not python_in(path).exists() or not marker.exists():
        return EnvState(name, path, "incomplete", f"environment '{name}' at {path} is incomplete (an interrupted "
                                                  f"build?): run `{create_command(name)}`")
    try:
        info = read_result(marker, kind="environment")
    except ResultFileError as exc:
        return EnvState(name, path, "incomplete", f"{exc}: run `{create_command(name)} --force`")
    packages = dict(info.get("packages") or {})
    if list(info.get("requirements") or []) != list(defs[name].requirements):
        return EnvState(name, path, "stale", f"built from an older requirements list: run `{create_command(name)}`",
                        packages)
    return EnvState(name, path, "ready", "", packages)


# -- which interpreter runs a backend --------------------------------------------------------------
def declaration(ref: str) -> tuple[str | None, dict[str, str]]:
    """(environment, worker_env) that a built-in adapter class declares; (None, {}) for anything else."""
    module_name, _, attr = ref.partition(":")
    if not module_name.startswith(BUILTIN_PACKAGE) or not attr:
        return None, {}
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception:  # the worker loads it again and reports the failure with the backend
        return None, {}
    environment = getattr(obj, "environment", None)
    extra = getattr(obj, "worker_env", None) or {}
    return (str(environment) if environment else None), {str(k): str(v) for k, v in dict(extra).items()}


def one_interpreter() -> bool:
    """Whether ``DROPBENCH_ONE_INTERPRETER`` is 1 (any other value, or unset: each backend's own environment)."""
    return os.environ.get(ONE_INTERPRETER_VAR, "").strip() == "1"


def launch_for(ref: str) -> Launch:
    """The interpreter and variables for ``ref``'s worker; never imports a framework, never raises."""
    environment, extra = declaration(ref)
    if environment is None:
        return Launch(sys.executable, extra)
    if one_interpreter():  # the environment's name is kept in the worker's variables: it shows on the record
        return Launch(sys.executable, {**extra, ENVIRONMENT_VAR: f"{environment} ({ONE_INTERPRETER_NOTE})"})
    current = state(environment)
    extra = {**extra, ENVIRONMENT_VAR: environment}
    if not current.usable:
        return Launch(sys.executable, extra, environment, current.detail)
    return Launch(str(current.python), extra, environment)


# -- building --------------------------------------------------------------------------------------
class EnvCreateError(RuntimeError):
    """A step of `env create` failed; the message names the step and ends with its output's tail."""


def _run(cmd: list[str], step: str, quiet: bool) -> None:
    """Run one build step; its output goes to the terminal, or is kept for the error message when quiet."""
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, text=True, capture_output=quiet)
    if proc.returncode != 0:
        tail = " | ".join(line for line in ((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()[-6:])
        raise EnvCreateError(f"{step} failed (exit code {proc.returncode}): {' '.join(cmd)}" + (f"; {tail}" if tail else ""))


def freeze(python: Path) -> dict[str, str]:
    """name -> version of every distribution in the environment (importlib.metadata, no pip needed)."""
    code = ("import json, importlib.metadata as m; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise EnvCreateError(f"listing the packages of {python} failed: {proc.stderr.strip()[-300:]}")
    return dict(sorted(json.loads(proc.stdout).items(), key=lambda kv: kv[0].lower()))


def create(name: str, *, force: bool = False, quiet: bool = False,
           say: Callable[[str], None] = print) -> EnvState:
    """Build (or confirm) the environment ``name``; UsageError for an unknown name, EnvCreateError on failure.

    Up to date (same requirements, marker present): nothing is done unless ``force``. Anything else
    (missing, interrupted, stale) is rebuilt from scratch. The marker is written last, so an
    interrupted build is never mistaken for a usable environment.
    """
    defs = definitions()
    if name not in defs:
        raise UsageError(f"unknown environment {name!r}; choose from {', '.join(defs) or '(none defined)'}")
    current = state(name, defs)
    if current.status == "ready" and not force:
        say(f"environment '{name}' is up to date at {current.path} (--force rebuilds it)")
        return current
    path = current.path
    if path.exists():
        ours = (path / MARKER).exists() or (path / "pyvenv.cfg").exists()  # built, or a build interrupted
        if not ours and not force:
            raise EnvCreateError(f"{path} exists but is not a virtual environment; remove it or use --force")
        say(f"removing {path} ({'forced rebuild' if force else current.status})")
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    requirements = defs[name].requirements
    say(f"creating environment '{name}' in {path} with {sys.executable} -m venv")
    _run([sys.executable, "-m", "venv", str(path)], "python -m venv", quiet)
    python = python_in(path)
    req_file = path / "requirements.txt"
    atomic_write_text(req_file, f"# dropbench environment '{name}', from {DEFINITIONS_FILE.name}\n"
                      + "\n".join(requirements) + "\n")
    say(f"installing {len(requirements)} pinned requirement(s): {', '.join(requirements)}")
    _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
          "-r", str(req_file)], "pip install", quiet)
    packages = freeze(python)
    atomic_write_json(path / MARKER, {
        "schema": 1, "kind": "environment", "name": name, "requirements": list(requirements),
        "python": subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                                 capture_output=True, text=True).stdout.strip(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "packages": packages,
    })
    done = state(name, defs)
    say(f"environment '{name}' ready: {done.python}")
    return done
