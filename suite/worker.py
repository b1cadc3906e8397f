"""Run one task for one backend in its own process, so a crash or hang costs only that backend.

Parent side: :func:`run_in_worker` starts ``python -m suite.worker TASK REF OUT OPTIONS``
with a timeout and turns a non-zero exit, a signal or a timeout into a record instead of
an exception. ``python`` is the interpreter of the backend's environment (suite/environments.py):
the exchange is arguments in, one JSON file out, so the child may run another numpy than the
parent. A backend whose environment is not built gets no worker: status ``unavailable`` with the
command that builds it. Child side: :func:`main` loads the backend, runs the task function and
writes its JSON payload atomically to OUT.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.environments import launch_for
from suite.jsonio import ResultFileError, atomic_write_json, read_result

TASKS = {
    "verify": "suite.verify:worker_task",
    "probe": "suite.probe_run:worker_task",
    "env": "suite.commands.env:worker_task",
    "experiment-train": "suite.experiments.train:worker_task",
}
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class WorkerResult:
    status: str  # ok | crash | timeout | unavailable (its environment is not built: no worker started)
    payload: dict[str, Any] | None
    detail: str


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: quiet TensorFlow, and the current folder importable for plugins."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    repo_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), repo_root, env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def tail_text(text: str, lines: int = 6, limit: int = 800) -> str:
    """The last non-blank lines of a worker's output on one line: the evidence kept for a crash."""
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-limit:]


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def run_in_worker(task: str, ref: str, options: dict[str, Any], *, timeout: float = DEFAULT_TIMEOUT_S,
                  env: dict[str, str] | None = None) -> WorkerResult:
    """Run ``task`` for backend ``ref`` in a fresh interpreter of its environment; never raises for the child's faults."""
    launch = launch_for(ref)
    if launch.unavailable is not None:
        return WorkerResult("unavailable", None, launch.unavailable)
    with tempfile.TemporaryDirectory(prefix="dropbench-worker-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [launch.python, "-m", "suite.worker", task, ref, str(out), json.dumps(options)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  env=worker_env({**launch.env, **(env or {})}), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            return WorkerResult("timeout", None, f"no result after {timeout:g} s; stderr: {tail_text(stderr)}")
        if proc.returncode != 0 or not out.exists():
            return WorkerResult("crash", None, f"worker {describe_exit(proc.returncode)}; stderr: {tail_text(proc.stderr)}")
        try:
            return WorkerResult("ok", read_result(out, kind="worker"), "")
        except ResultFileError as exc:
            return WorkerResult("crash", None, f"worker wrote an unreadable result: {exc}")


def main(argv: list[str] | None = None) -> int:
    task, ref, out, options = (argv if argv is not None else sys.argv[1:])[:4]
    module_name, _, func_name = TASKS[task].partition(":")
    func = getattr(importlib.import_module(module_name), func_name)
    payload = func(ref, json.loads(options))
    atomic_write_json(out, {"schema": 1, "kind": "worker", **payload})
    return 0


if __name__ == "__main__":
    sys.exit(main())
