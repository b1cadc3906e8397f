"""pytest plumbing for the dropout benchmarks.

* Timed or smoke: pyproject's addopts carry ``--benchmark-disable`` so that a plain ``pytest``
  only smoke-tests the benchmarks (each case once, smallest size). ``--benchmark-only`` turns
  timing on: pytest-benchmark refuses it next to --benchmark-disable, so tests/conftest.py
  sets ``--benchmark-enable`` (its documented override) whenever --benchmark-only is given
  (``dropbench bench`` always passes --benchmark-enable itself).
* The plan: ``DROPBENCH_BENCH_PLAN`` (JSON, set by ``dropbench bench`` for its worker) or, by
  hand, every built-in backend on cpu and cuda at DEFAULT_SIZES.
* Outcomes: with a plan from ``dropbench bench``, every case's outcome (and each benchmark's
  stats, so a crashing worker keeps what it timed) goes to a JSON-lines file, and the id of the
  case being run to a pipe for live progress.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

import pytest

from suite.bench_run import pin_threads
from suite.loader import load
from suite.timing import ENV_PLAN, BaselineCase, Case, Plan, default_plan, plan_baselines, plan_cases

_SESSION = pytest.StashKey["BenchSession"]()
_CURRENT: dict[str, "BenchSession"] = {}  # logstart/logreport hooks get no config: the session's BenchSession


@dataclass
class BackendState:
    name: str
    backend: Any | None
    reason: str | None
    versions: dict[str, str] = field(default_factory=dict)
    threads: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # the worker label: registry name of a built-in (keras3-jax), else the backend's name


def worker_label(requested: str | None, name: str) -> str:
    """keras3-jax and keras3-torch are one backend ("keras3") in two processes: a registry name
    (no ":") tells the processes apart; a ``module:attr`` plugin goes by its own name."""
    return requested if requested and ":" not in requested else name


class BenchSession:
    """The plan of this pytest process, its loaded backends and its outcome/progress channels."""

    def __init__(self, plan: Plan, smoke: bool) -> None:
        self.plan = plan
        self.smoke = smoke
        self.states: dict[str, BackendState] = {}
        self.cases_by_node: dict[str, Case | BaselineCase] = {}
        self._outcomes: TextIO | None = open(plan.outcomes, "a", encoding="utf-8") if plan.outcomes else None
        self._progress: TextIO | None = None
        if plan.progress_fd is not None:
            try:
                self._progress = os.fdopen(plan.progress_fd, "w", buffering=1, encoding="utf-8")
            except OSError:
                self._progress = None

    # -- backends --------------------------------------------------------------------------
    def state(self, ref: str, requested: str | None = None) -> BackendState:
        """Load ``ref`` once: adapter, availability, pinned threads, versions (never raises)."""
        if ref in self.states:
            return self.states[ref]
        name = requested or ref
        try:
            backend = load(ref)
        except Exception as exc:
            state = BackendState(name, None, f"loading {ref} failed: {type(exc).__name__}: {exc}")
        else:
            name = str(getattr(backend, "name", name))
            label = worker_label(requested, name)
            threads = pin_threads(label, self.plan.threads) if self.plan.threads else {"requested": None}
            reason = None
            if not backend.available():
                getter = getattr(backend, "unavailable_reason", None)
                reason = (getter() if callable(getter) else None) or f"{name} reports itself unavailable"
            versions = dict(backend.versions()) if reason is None else {}
            state = BackendState(name, backend if reason is None else None, reason, versions, threads, label)
        self.states[ref] = state
        self.write({"event": "backend", "name": name, "worker": state.label or name, "ref": ref,
                    "available": state.backend is not None,
                    "reason": state.reason, "versions": state.versions, "threads": state.threads})
        return state

    @property
    def worker(self) -> str:
        """Whose process this is: the backend's own name in a dropbench worker, "pytest" by hand."""
        if self.plan.outcomes and len(self.plan.backends) == 1:
            requested, ref = self.plan.backends[0]
            state = self.state(ref, requested)
            return state.label or state.name
        return self.plan.worker

    def api_lists(self) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
        """Declared API names and backend names per ref. A worker loads (and pins) its backend
        here, first; by hand only adapter modules are imported, frameworks wait for a case."""
        lists, names = {}, {}
        for requested, ref in self.plan.backends:
            if self.plan.outcomes:  # a dropbench worker: one backend, checked up front
                state = self.state(ref, requested)
                backend = state.backend
            else:
                try:
                    backend = load(ref)
                except Exception:
                    backend = None
            if backend is None:
                lists[ref] = () if self.plan.outcomes else ("*",)  # by hand: one case that skips with the reason
                continue
            lists[ref], names[ref] = tuple(backend.apis), str(backend.name)
        return lists, names

    # -- channels --------------------------------------------------------------------------
    def write(self, event: dict[str, Any]) -> None:
        if self._outcomes is not None:
            self._outcomes.write(json.dumps(event, default=str) + "\n")
            self._outcomes.flush()

    def announce(self, case_id: str) -> None:
        if self._progress is not None:
            try:
                self._progress.write(case_id + "\n")
            except OSError:
                self._progress = None

    def close(self) -> None:
        for handle in (self._outcomes, self._progress):
            if handle is not None:
                try:
                    handle.close()
                except OSError:
                    pass


def pytest_configure(config: pytest.Config) -> None:
    # tests/conftest.py (loaded first, also for `pytest tests/benchmarks`) has already turned
    # --benchmark-only into --benchmark-enable
    smoke = bool(config.getoption("benchmark_disable", default=False)) and not config.getoption(
        "benchmark_enable", default=False)
    text = os.environ.get(ENV_PLAN)
    plan = Plan.from_env(text) if text else default_plan(smoke)
    if smoke:
        plan = replace(plan, sizes=(min(plan.sizes),))
    config.stash[_SESSION] = BenchSession(plan, smoke)


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(_SESSION, None)
    if session is not None:
        session.close()


def _session(config: pytest.Config) -> BenchSession:
    return config.stash[_SESSION]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = _session(metafunc.config)
    if "case" in metafunc.fixturenames:
        cases = plan_cases(session.plan, *session.api_lists())
        metafunc.parametrize("case", cases, ids=[c.test_id for c in cases])
    if "baseline" in metafunc.fixturenames:
        baselines = plan_baselines(replace(session.plan, worker=session.worker))
        if session.plan.outcomes and not any(session.state(ref, name).backend is not None
                                             for name, ref in session.plan.backends):
            baselines = []  # a worker whose backend cannot run has nothing to compare
        metafunc.parametrize("baseline", baselines, ids=[b.test_id for b in baselines])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    session = _session(config)
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        for key in ("case", "baseline"):
            if isinstance(params.get(key), (Case, BaselineCase)):  # not the NOTSET of an empty parameter set
                session.cases_by_node[item.nodeid] = params[key]


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    session = _CURRENT.get("session")
    case = session.cases_by_node.get(nodeid) if session else None
    if case is not None:
        session.announce(case.test_id)


def pytest_sessionstart(session: pytest.Session) -> None:
    _CURRENT["session"] = _session(session.config)


def _reason(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        text = str(report.longrepr[2])
        return text[len("Skipped: "):] if text.startswith("Skipped: ") else text
    lines = [line for line in report.longreprtext.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E ")]
    return (errors[-1] if errors else (lines[-1] if lines else report.outcome))[:600].lstrip("E ").strip()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    session = _CURRENT.get("session")
    case = session.cases_by_node.get(report.nodeid) if session else None
    if case is None:
        return
    if report.when == "call" or not report.passed:
        info = {"backend": "baseline", "api": case.api_id} if isinstance(case, BaselineCase) else {
            "backend": case.backend, "api": case.api_id, "direction": case.direction, "mode": case.mode}
        info.update({"numel": case.numel, "dtype": case.dtype, "device": case.device})
        session.write({"event": "case", "id": case.test_id, "when": report.when, "outcome": report.outcome,
                       "reason": None if report.passed else _reason(report), "case": info})


@pytest.fixture(scope="session")
def bench(request: pytest.FixtureRequest) -> BenchSession:
    return _session(request.config)


@pytest.fixture
def timed(benchmark: Any, bench: BenchSession, request: pytest.FixtureRequest) -> Any:
    """pytest-benchmark's fixture; afterwards its stats also go to the outcome log (crash salvage)."""
    yield benchmark
    stats = getattr(benchmark, "stats", None)
    if stats is not None and bench.plan.outcomes:
        bench.write({"event": "stats", "id": request.node.callspec.id, "benchmark": stats.as_dict(include_data=True)})
