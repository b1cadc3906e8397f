"""Where a worker runs: the executor seam between the runners and :func:`suite.runtime.worker.run_task`.

Why a seam: verify, probe and bench describe *what* runs (one :class:`Task` per backend); whether the
worker process starts on this machine or on a node of a cluster is the executor's business. The
runners call :func:`dispatch`, which hands the task to the executor current in this thread (this
machine's :class:`LocalExecutor` unless a command set another with :func:`running`).

A cluster executor is named like a backend: a name of ``backends.EXECUTORS`` (third-party engine
knowledge lives in ``backends/``, e.g. the Ray adapter) or ``module:attr``. Its class takes
``(address, selectors)`` and offers ``targets()`` (one :class:`Target` per machine kind of the
selected nodes) and ``close()``; a target's ``executor`` runs a task on a node of that kind, retries
it on another node of the same kind when its node dies, and says in ``WorkerResult.where`` which
node and executor produced the result.
"""
from __future__ import annotations

import contextvars
import importlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from backends import EXECUTORS
from suite.runtime.loader import UsageError
from suite.runtime.machine import reset_running_on, running_on
from suite.runtime.worker import Task, WorkerResult, run_task

LOCAL = "local"


class Executor(Protocol):
    name: str

    def run(self, task: Task, *, timed: bool = False, **kw: Any) -> WorkerResult:
        """Run ``task`` like ``run_task(task, **kw)``; ``timed``: it measures time and needs its node alone."""


class LocalExecutor:
    """Today's behaviour: the worker is a child process of this one."""

    name = LOCAL

    def run(self, task: Task, *, timed: bool = False, **kw: Any) -> WorkerResult:
        return run_task(task, **kw)


@dataclass
class Target:
    """One machine kind of a cluster: its id and facts (as its nodes report them) and an executor bound to it."""

    machine_id: str
    facts: dict[str, Any]
    nodes: list[str]
    executor: Executor
    labels: dict[str, str] = field(default_factory=dict)


class Cluster(Protocol):
    name: str

    def targets(self) -> list[Target]: ...

    def close(self) -> None: ...


_CURRENT: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("dropbench_executor", default=None)


def current() -> Executor:
    return _CURRENT.get() or LocalExecutor()


def dispatch(task: Task, *, timed: bool = False, **kw: Any) -> WorkerResult:
    """What the runners call instead of ``run_task``: the current executor runs the task."""
    return current().run(task, timed=timed, **kw)


@contextmanager
def running(target: Target) -> Iterator[None]:
    """Within this block (this thread), tasks go to ``target`` and machine facts are the target's."""
    token, facts = _CURRENT.set(target.executor), running_on(target.facts)
    try:
        yield
    finally:
        reset_running_on(facts)
        _CURRENT.reset(token)


def known_executors() -> dict[str, str]:
    return {LOCAL: f"{__name__}:LocalExecutor", **EXECUTORS}


def open_cluster(name: str, address: str | None, selectors: Sequence[str]) -> Cluster:
    """The cluster executor ``name`` connected to ``address`` (UsageError: unknown, not installed, no cluster)."""
    known = known_executors()
    ref = known.get(name) or (name if ":" in name else None)
    if ref is None:
        raise UsageError(f"unknown executor {name!r}; choose from {', '.join(known)} or give module:attr")
    module_name, _, attr = ref.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"executor {name!r} ({ref}) cannot be loaded: {exc}") from None
    return cls(address, list(selectors))


def parse_selector(text: str) -> tuple[str, str | None]:
    """``KEY=VALUE`` (a node label) or ``KEY`` (a node label or custom resource); UsageError otherwise."""
    key, sep, value = text.partition("=")
    if not key.strip() or (sep and not value.strip()):
        raise UsageError(f"bad --nodes selector {text!r}; give KEY=VALUE (a node label) or KEY (a label or resource)")
    return key.strip(), (value.strip() if sep else None)


def node_matches(labels: dict[str, str], resources: dict[str, float], selectors: Sequence[str]) -> bool:
    """Every selector holds for the node (no selector: every node)."""
    for text in selectors:
        key, value = parse_selector(text)
        if value is None:
            if key not in labels and not resources.get(key, 0) > 0:
                return False
        elif labels.get(key) != value:
            return False
    return True
