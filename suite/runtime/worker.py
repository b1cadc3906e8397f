"""The one worker runtime: every backend's work runs in a process of its own, started here.

Why one: verify, probe, bench and the experiments all need the same guarantees, so they share one
launcher instead of three. A crash or a hang costs only that worker; a hung worker's children die
with it (each worker leads its own process group, and the whole group is killed on timeout or
Ctrl-C); whatever the worker wrote to its journal before it died is kept.

Parent side: :func:`run_task` writes a typed :class:`Task` to a file, starts the interpreter of the
backend's environment (:func:`suite.runtime.environments.launch_for`) on it, follows its progress
pipe, enforces the timeout and returns a :class:`WorkerResult` (the envelope the child wrote, the
journal events, the exit and the output tail). It never raises for the child's faults.

Child side: ``python -m suite.runtime.worker TASK.json`` runs ``TASKS[task.kind](task)`` and writes
its payload inside the result envelope, atomically. The bench worker is a pytest process instead
(``suite.bench.plugin`` reads the same task file and writes the same envelope).
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from suite.runtime.environments import launch_for
from suite.runtime.jsonio import ResultFileError, atomic_write_json, read_jsonl, read_result

TASKS = {
    "verify": "suite.verify.runner:worker_task",
    "probe": "suite.probe.runner:worker_task",
    "env": "suite.commands.env:worker_task",
    "experiment-train": "suite.experiments.train:worker_task",
}
"""Child-side entry points by task kind (``bench`` is the pytest plugin, not listed here)."""
DEFAULT_TIMEOUT_S = 600.0
ENVELOPE_KIND = "worker"
REPO_ROOT = Path(__file__).resolve().parents[2]
"""The folder that holds ``suite`` and ``backends`` (a checkout, or site-packages when installed)."""


@dataclass(frozen=True)
class Task:
    """One unit of work for one backend, as the child reads it from its task file.

    ``kind``: a key of :data:`TASKS` or "bench"; ``ref``: the backend (``module:attr``, or a
    registry name where the task resolves it itself); ``options``: JSON-able, the task's own;
    ``out``: where the child writes its envelope; ``journal``: JSON lines the child appends as it
    goes (salvage after a crash); ``progress_fd``: a pipe for live progress lines, or None.
    """

    kind: str
    ref: str
    options: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    out: str = ""
    journal: str | None = None
    progress_fd: int | None = None

    def write(self, path: Path) -> None:
        atomic_write_json(path, {"schema": 1, "kind": "task", "task": asdict(self)})

    @classmethod
    def read(cls, path: str | Path) -> "Task":
        raw = read_result(path, kind="task")["task"]
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


@dataclass(frozen=True)
class WorkerResult:
    status: str  # ok | crash | timeout | unavailable (its environment is not built: no worker started)
    payload: dict[str, Any] | None
    detail: str
    events: list[dict[str, Any]] = field(default_factory=list)  # the journal, in the order written
    returncode: int | None = None
    seconds: float = 0.0
    python: str = ""
    output: str = ""  # the tail of the worker's stdout and stderr
    where: dict[str, Any] = field(default_factory=lambda: {"executor": "local"})  # which executor and node ran it


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: quiet framework start-up, and plugins and the harness importable."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
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


_LIVE: set[subprocess.Popen] = set()  # workers started by run_task and not yet reaped (any thread)
_LIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()  # set by stop_workers(): run_task starts no new worker


def stop_workers() -> int:
    """Ctrl-C while other threads wait on workers: start no new one and SIGKILL every running group.
    Returns how many were killed; :func:`allow_workers` lifts the stop."""
    with _LIVE_LOCK:  # with run_task's registration under the same lock, no worker slips between the two
        _STOPPING.set()
        live = list(_LIVE)
    for proc in live:
        kill_group(proc)
    return len(live)


def allow_workers() -> None:
    _STOPPING.clear()


def kill_group(proc: subprocess.Popen) -> None:
    """The worker and everything it started (it leads its own session); only ours, by id."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def default_command(python: str, task_file: Path) -> list[str]:
    return [python, "-m", "suite.runtime.worker", str(task_file)]


def run_task(task: Task, *, timeout: float = DEFAULT_TIMEOUT_S, env: dict[str, str] | None = None,
             command: Callable[[str, Path], Sequence[str]] = default_command, workdir: str | Path | None = None,
             progress: Callable[[str], None] | None = None, ok_codes: Sequence[int] = (0,)) -> WorkerResult:
    """Run ``task`` in a fresh interpreter of its backend's environment; never raises for the child's faults.

    ``command(python, task_file)`` builds the command line (default: this module's child side).
    ``workdir`` keeps the task, envelope, journal and log (default: a temporary folder, removed).
    ``progress`` receives every line the child writes to its progress pipe. A worker that exits
    with a code outside ``ok_codes`` or writes no envelope has crashed.
    """
    launch = launch_for(task.ref)
    if launch.unavailable is not None:
        return WorkerResult("unavailable", None, launch.unavailable)
    with tempfile.TemporaryDirectory(prefix="dropbench-worker-") as tmp:
        folder = Path(workdir) if workdir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        stem = file_stem(task.name or task.kind)
        out, journal, log = (folder / f"{stem}.result.json", folder / f"{stem}.journal.jsonl", folder / f"{stem}.log")
        task_file = folder / f"{stem}.task.json"
        for path in (out, journal):
            path.unlink(missing_ok=True)
        if _STOPPING.is_set():
            return WorkerResult("crash", None, "not started: the command is being interrupted")
        read_fd, write_fd = os.pipe()
        task = replace(task, out=str(out), journal=str(journal), progress_fd=write_fd)
        task.write(task_file)
        last: list[str] = []
        started = time.monotonic()
        try:
            with open(log, "w", encoding="utf-8") as log_handle:
                proc = subprocess.Popen(list(command(launch.python, task_file)), stdout=log_handle,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=worker_env({**launch.env, **(env or {})}), pass_fds=(write_fd,),
                                        start_new_session=True)
        except OSError as exc:
            os.close(read_fd)
            return WorkerResult("crash", None, f"could not start {launch.python}: {exc}", python=launch.python)
        finally:
            os.close(write_fd)
        reader = threading.Thread(target=_follow, args=(read_fd, last, progress), daemon=True)
        reader.start()
        timed_out = False
        with _LIVE_LOCK:
            _LIVE.add(proc)
            if _STOPPING.is_set():  # stopped while it was starting
                kill_group(proc)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(proc)
            code = proc.wait()
        except BaseException:  # Ctrl-C: the worker leads its own session and would not see it
            kill_group(proc)
            proc.wait()
            raise
        else:
            kill_group(proc)  # the worker is gone; anything it left running goes with it
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
        reader.join(timeout=5)
        seconds = time.monotonic() - started
        output = tail_text(log.read_text(encoding="utf-8", errors="replace"), 8, 1000) if log.exists() else ""
        events = read_jsonl(journal)
        during = f" during {last[0]}" if last else ""
        common = dict(events=events, returncode=code, seconds=seconds, python=launch.python, output=output)
        if timed_out:
            return WorkerResult("timeout", None, f"no result after {timeout:g} s{during}; output: {output}", **common)
        if code not in ok_codes or not out.exists():
            return WorkerResult("crash", None, f"worker {describe_exit(code)}{during}; output: {output}", **common)
        try:
            envelope = read_result(out, kind=ENVELOPE_KIND)
        except ResultFileError as exc:
            return WorkerResult("crash", None, f"worker wrote an unreadable result: {exc}", **common)
        return WorkerResult("ok", envelope, "", **common)


def _follow(read_fd: int, last: list[str], progress: Callable[[str], None] | None) -> None:
    with os.fdopen(read_fd, "r", encoding="utf-8", errors="replace") as pipe:
        for line in pipe:
            last[:] = [line.strip()]
            if progress:
                progress(line.strip())


def file_stem(name: str) -> str:
    """A file stem for a backend name ("pkg.mod:Attr" -> "pkg.mod_Attr")."""
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in name) or "task"


# -- child side ---------------------------------------------------------------------------------
class Journal:
    """JSON lines the parent reads after a crash, flushed line by line (and progress lines)."""

    def __init__(self, task: Task) -> None:
        self._handle = open(task.journal, "a", encoding="utf-8", buffering=1) if task.journal else None
        self._progress = None
        if task.progress_fd is not None:
            try:
                self._progress = os.fdopen(task.progress_fd, "w", buffering=1, encoding="utf-8")
            except OSError:
                self._progress = None

    def write(self, **entry: Any) -> None:
        if self._handle is not None:
            self._handle.write(json.dumps(entry, default=str) + "\n")
            self._handle.flush()

    def announce(self, line: str) -> None:
        if self._progress is not None:
            try:
                self._progress.write(line + "\n")
            except OSError:
                self._progress = None

    def close(self) -> None:
        for handle in (self._handle, self._progress):
            if handle is not None:
                try:
                    handle.close()
                except OSError:
                    pass


def write_envelope(task: Task, payload: dict[str, Any]) -> None:
    """The result envelope every worker writes last (its absence means the worker died)."""
    atomic_write_json(task.out, {"schema": 1, "kind": ENVELOPE_KIND, "task": task.kind, **payload})


def main(argv: list[str] | None = None) -> int:
    task = Task.read((argv if argv is not None else sys.argv[1:])[0])
    module_name, _, func_name = TASKS[task.kind].partition(":")
    func = getattr(importlib.import_module(module_name), func_name)
    write_envelope(task, func(task))
    return 0


if __name__ == "__main__":
    sys.exit(main())
