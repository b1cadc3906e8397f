"""The pytest-benchmark engine of dropbench, as a pytest plugin inside the installed package.

Why a plugin and not a conftest: ``dropbench bench`` must work from a wheel, where no tests/
folder exists. Its worker runs ``pytest -p suite.bench.plugin <suite/bench/bench_dropout.py>
--dropbench-task TASK.json``; from a checkout, tests/conftest.py loads the same hooks, so
``pytest --benchmark-only`` times the same cases by hand.

* Timed or smoke: pyproject's addopts carry ``--benchmark-disable`` so that a plain ``pytest``
  only smoke-tests the benchmarks (each case once, smallest size). ``--benchmark-only`` turns
  timing on: pytest-benchmark refuses it next to --benchmark-disable, so this plugin sets
  ``--benchmark-enable`` (its documented override) whenever --benchmark-only is given, before
  anything reads it (also for ``pytest tests/benchmarks``).
* The plan: from the worker's task file (``--dropbench-task``, written by ``dropbench bench``) or,
  by hand, every built-in backend on cpu and cuda at DEFAULT_SIZES.
* Outcomes: in a worker, every case's outcome (and each benchmark's stats, so a crashing worker
  keeps what it timed) goes to the task's journal, the id of the case being run to its progress
  pipe, and the result envelope is written when the session ends.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from backends.base import api_info
from suite.bench.cases import BaselineCase, Case, Plan, available_memory_bytes, default_plan, group_name, plan_baselines, plan_cases
from suite.bench.interleave import GroupScheduler, Schedule, group_closers
from suite.runtime.loader import load
from suite.runtime.threads import pin_threads
from suite.runtime.worker import Journal, Task, write_envelope

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


def _compiled_mode(backend: Any, api: str) -> str | None:
    try:
        return api_info(backend, api).compiled
    except Exception:  # a broken declaration fails the case itself, with the reason
        return None


def worker_label(requested: str | None, name: str) -> str:
    """keras3-jax and keras3-torch are one backend ("keras3") in two processes: a registry name
    (no ":") tells the processes apart; a ``module:attr`` plugin goes by its own name."""
    return requested if requested and ":" not in requested else name


class BenchSession:
    """The plan of this pytest process, its loaded backends and its outcome/progress channels."""

    def __init__(self, plan: Plan, smoke: bool, task: Task | None = None) -> None:
        self.plan = plan
        self.smoke = smoke
        self.task = task
        self.states: dict[str, BackendState] = {}
        self.cases_by_node: dict[str, Case | BaselineCase] = {}
        self._journal = Journal(task) if task is not None else None
        schedule = Schedule.named(plan.interleave) if plan.interleave and not smoke else None
        self.interleaver = GroupScheduler(schedule, seed=1000 * plan.process, memory_cap=available_memory_bytes() / 4,
                                          announce=self.announce)

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
            threads = pin_threads(backend, self.plan.threads) if self.plan.threads else {"requested": None}
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
        if self.in_worker and len(self.plan.backends) == 1:
            requested, ref = self.plan.backends[0]
            state = self.state(ref, requested)
            return state.label or state.name
        return self.plan.worker

    def own_backend(self) -> Any | None:
        """A worker's one loaded, available backend (asked first for device baselines); None by hand."""
        if not self.in_worker or len(self.plan.backends) != 1:
            return None
        requested, ref = self.plan.backends[0]
        return self.state(ref, requested).backend

    def api_lists(self) -> tuple[dict[str, tuple[str, ...]], dict[str, str], dict[str, dict[str, str | None]]]:
        """Declared API names, backend names and compiled modes per ref. A worker loads (and pins) its
        backend here, first; by hand only adapter modules are imported, frameworks wait for a case."""
        lists, names, modes = {}, {}, {}
        for requested, ref in self.plan.backends:
            if self.in_worker:  # a dropbench worker: one backend, checked up front
                state = self.state(ref, requested)
                backend = state.backend
            else:
                try:
                    backend = load(ref)
                except Exception:
                    backend = None
            if backend is None:
                lists[ref] = () if self.in_worker else ("*",)  # by hand: one case that skips with the reason
                continue
            lists[ref], names[ref] = tuple(backend.apis), str(backend.name)
            modes[ref] = {api: _compiled_mode(backend, api) for api in backend.apis}
        return lists, names, modes

    # -- channels --------------------------------------------------------------------------
    @property
    def in_worker(self) -> bool:
        """A dropbench worker (one backend, outcomes journalled), not a hand-run pytest."""
        return self.task is not None

    def write(self, event: dict[str, Any]) -> None:
        if self._journal is not None:
            self._journal.write(**event)

    def announce(self, case_id: str) -> None:
        if self._journal is not None:
            self._journal.announce(case_id)

    def finish(self, exitstatus: int) -> None:
        """The envelope, written last: its presence tells the parent the session ended on its own."""
        if self.task is not None and self.task.out:
            write_envelope(self.task, {"backend": self.plan.worker, "exitstatus": int(exitstatus)})

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--dropbench-task", default=None, metavar="TASK.json",
                     help="dropbench worker task file (written by `dropbench bench`); omit when running by hand")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("benchmark_only", default=False):
        config.option.benchmark_enable = True  # wins over addopts' --benchmark-disable
    smoke = bool(config.getoption("benchmark_disable", default=False)) and not config.getoption(
        "benchmark_enable", default=False)
    task_file = config.getoption("dropbench_task", default=None)
    task = Task.read(task_file) if task_file else None
    if task is not None:
        plan = Plan.from_json(task.options["plan"])
    else:
        plan = default_plan(smoke)
    if smoke:
        plan = replace(plan, sizes=(min(plan.sizes),))
    config.stash[_SESSION] = BenchSession(plan, smoke, task)


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark serializes the extra_info dicts
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    bench = session.config.stash.get(_SESSION, None)
    if bench is not None:
        bench.interleaver.flush_all()  # a group whose closing test never ran (interrupted, -x)
        bench.finish(exitstatus)


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
        if session.in_worker and not any(session.state(ref, name).backend is not None
                                             for name, ref in session.plan.backends):
            baselines = []  # a worker whose backend cannot run has nothing to compare
        metafunc.parametrize("baseline", baselines, ids=[b.test_id for b in baselines])


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: the run order is final
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Cases by node id, and the items grouped by size (baselines first in each group), so that a
    group's interleaved rounds run as soon as its last test has been timed and its closures freed."""
    session = _session(config)
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        for key in ("case", "baseline"):
            if isinstance(params.get(key), (Case, BaselineCase)):  # not the NOTSET of an empty parameter set
                session.cases_by_node[item.nodeid] = params[key]
    if not session.interleaver.enabled:
        return
    position = {item.nodeid: i for i, item in enumerate(items)}

    def order(item: pytest.Item) -> tuple:
        case = session.cases_by_node.get(item.nodeid)
        if case is None:
            return (1, "", 0, position[item.nodeid])
        return (0, _group(case), 0 if isinstance(case, BaselineCase) else 1, position[item.nodeid])

    items.sort(key=order)
    session.interleaver.last_of_group = group_closers(
        [(item.nodeid, _group(session.cases_by_node[item.nodeid]) if item.nodeid in session.cases_by_node else None)
         for item in items])


def _group(case: Case | BaselineCase) -> str:
    return group_name(case.numel, case.dtype, case.device)


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    session = _CURRENT.get("session")
    case = session.cases_by_node.get(nodeid) if session else None
    if case is not None:
        session.write({"event": "start", "id": case.test_id})
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


def register_interleaved(bench: BenchSession, timed: Any, case: Case | BaselineCase, step: Any,
                         nbytes: float = 0.0) -> None:
    """After pytest-benchmark timed ``step``: keep it for its group's interleaved rounds (not in smoke runs)."""
    if timed.disabled or not bench.interleaver.enabled:
        return
    stats = getattr(getattr(timed, "stats", None), "stats", None)
    per_call = float(stats.median) if stats is not None and stats.rounds else None
    bench.interleaver.add(_group(case), case.test_id, step, per_call, timed.extra_info,
                          baseline=case.api if isinstance(case, BaselineCase) else None, nbytes=nbytes)
    timed.extra_info["process"] = bench.plan.process


@pytest.fixture(scope="session")
def bench(request: pytest.FixtureRequest) -> BenchSession:
    return _session(request.config)


@pytest.fixture
def timed(benchmark: Any, bench: BenchSession, request: pytest.FixtureRequest) -> Any:
    """pytest-benchmark's fixture; afterwards the size group's interleaved rounds when this test closes
    it, and its stats to the outcome log (crash salvage)."""
    yield benchmark
    bench.interleaver.finished(request.node.nodeid)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and bench.in_worker:
        bench.write({"event": "stats", "id": request.node.callspec.id, "benchmark": stats.as_dict(include_data=True)})
