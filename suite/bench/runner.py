"""`dropbench bench` orchestration: one pytest-benchmark worker process per backend, merged into one JSON.

Each backend runs ``pytest tests/benchmarks/test_bench_dropout.py --benchmark-json=PART`` in a
fresh interpreter with its thread pools pinned (environment + framework APIs), so one
framework's crash, hang or thread pool never touches another's numbers. The interpreter is the
one of the backend's worker environment (suite/runtime/environments.py: e.g. the ``jax`` virtual
environment, numpy 2); everything comes back as files (pytest-benchmark JSON, a JSON-lines
outcome log) and progress lines on a pipe, so the two interpreters share no Python objects. Every worker also
times the baselines (suite/bench/baselines.py) in its own process: a row's baselines are the
``baseline:*`` rows with the same ``extra_info.worker``, numel, dtype and device.

Python API (used by ``dropbench run``): :class:`BenchOptions` (validated up front, UsageError
on bad input), :func:`run_bench` (returns the merged payload, writes it when asked) and
:func:`exit_code`. Frameworks are imported only in :func:`pin_threads`, inside the worker.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from suite import __version__
from suite.bench.aggregate import merge_processes
from suite.bench.cases import (
    BASELINE_BACKEND,
    DEFAULT_RATE,
    DEFAULT_SIZES,
    DEFAULT_THREADS,
    ITEMSIZE,
    QUICK_SIZES,
    Plan,
    available_memory_bytes,
    peak_bytes,
    size_label,
)
from suite.bench.schema import BENCH_SCHEMA, READABLE, upgrade
from suite.runtime.executors import dispatch
from suite.runtime.jsonio import ResultFileError, atomic_write_json, read_result
from suite.runtime.loader import BackendRef, UsageError, resolve, validate_apis
from suite.runtime.threads import thread_env
from suite.runtime.worker import Task, WorkerResult
from suite.runtime.worker import file_stem as _safe

BENCH_FILE = Path(__file__).resolve().with_name("bench_dropout.py")
"""The benchmark module, collected from the package itself (works from a wheel, no tests/ needed)."""
PLUGIN = "suite.bench.plugin"
DEVICES = ("cpu", "cuda")
TIMING = {
    # --quick: enough rounds for a median and an IQR, bounded so that every backend together
    # stays within about a minute and a half on two cores (see the report for measurements).
    # min_time: a round lasts at least this long (iterations are added to reach it), which caps
    # the number of rounds of tiny cases (max_time / min_time) and so the size of stats.data.
    # warmup: rounds run for up to max_time before the timed ones. Without it, torch's
    # Dropout1d/2d forward+backward at 2^22 took 7 ms in the first ~7 rounds of a full run and
    # 1.8 ms after (allocator warm-up), and the short quick profile reported the 7 ms.
    # Since schema 2 the reported figure comes from the interleaved rounds that follow
    # (suite/bench/interleave.py) in several processes, so pytest-benchmark's own quick rounds
    # were cut (7 rounds / 0.1 s -> 5 / 0.05 s) to pay for the extra processes, and then to 3 rounds
    # with at most 2 warm-up rounds (warmup_iterations; pytest-benchmark's default of 100000 makes
    # the warm-up as long as the timed rounds): a 50 ms case took 12 calls before its interleaved
    # rounds, now 8 with the test's own first call (which still covers the ~7 cold calls of torch's
    # allocator); the interleaved rounds give the figure and the stability marks.
    "quick": {"min_rounds": 3, "max_time": 0.05, "min_time": 0.0002, "warmup": "on", "warmup_iterations": 2},
    "full": {"min_rounds": 10, "max_time": 0.5, "min_time": 0.0005, "warmup": "on"},
}
DEFAULT_PROCESSES = {"quick": 3, "full": 5}
"""Fresh worker processes per backend. 3 for --quick, from results/calibration/ (30 A/A pairs on the
shared 2-core VM, compare's defaults): with the first 2 processes of each run 5.7 % of unchanged rows
were flagged and 35 % of 25 %-slower 2^22 rows caught; with 3: 4.9 % and 98 %. One process (the old
rounds test): 73 % false alarms."""
DEFAULT_TIMEOUT_S = {"quick": 600.0, "full": 1800.0}
_SKIP_TAG = re.compile(r"^\[(?P<kind>[a-z-]+)\]\s*(?P<reason>.*)$", re.S)

Progress = Callable[[str], None]


# -- options ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchOptions:
    """Everything `dropbench bench` takes; :meth:`validated` fills defaults or raises UsageError."""

    backends: tuple[str, ...] = ()  # names or module:attr; empty: every known backend
    apis: tuple[str, ...] = ()  # full API ids; empty: every API
    device: str = "cpu"  # "cpu" | "cuda" | "cuda:N"
    sizes: tuple[int, ...] = ()  # empty: DEFAULT_SIZES, or QUICK_SIZES with quick
    dtypes: tuple[str, ...] = ("float32",)
    threads: int = DEFAULT_THREADS
    quick: bool = False
    json_path: str | None = None
    timeout: float | None = None  # per worker, seconds; None: DEFAULT_TIMEOUT_S
    rate: float = DEFAULT_RATE
    require_device: bool = False
    resume: bool = False  # keep json_path's finished backends, run only the rest
    bare_loop: bool = False  # also time every case and baseline with a bare loop in the same process (harness overhead)
    processes: int = 0  # fresh worker processes per backend; 0: DEFAULT_PROCESSES of the profile
    interleave: bool = True  # interleaved rounds after pytest-benchmark's (suite/bench/interleave.py)

    @property
    def profile(self) -> str:
        return "quick" if self.quick else "full"

    def validated(self) -> "BenchOptions":
        """Defaults filled in, every value checked before any worker starts (UsageError names the value)."""
        if self.resume and not self.json_path:
            raise UsageError("--resume needs --json PATH: the result file to resume")
        if self.device not in DEVICES and not re.fullmatch(r"cuda:\d+", self.device):
            raise UsageError(f"unknown device {self.device!r}; choose cpu or cuda")
        dtypes = tuple(dict.fromkeys(self.dtypes)) or ("float32",)
        for dtype in dtypes:
            if dtype not in ITEMSIZE:
                raise UsageError(f"unknown dtype {dtype!r}; choose from {', '.join(ITEMSIZE)}")
        sizes = tuple(dict.fromkeys(self.sizes)) or (QUICK_SIZES if self.quick else DEFAULT_SIZES)
        for n in sizes:
            if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
                raise UsageError(f"size must be a positive number of elements, got {n!r}")
        check_memory(max(sizes), max(dtypes, key=ITEMSIZE.__getitem__))
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or not 1 <= self.threads <= 4096:
            raise UsageError(f"threads must be an integer >= 1, got {self.threads!r}")
        if not (isinstance(self.rate, (int, float)) and 0.0 <= self.rate <= 1.0):
            raise UsageError(f"rate must be in [0, 1], got {self.rate!r}")
        processes = self.processes or DEFAULT_PROCESSES[self.profile]
        if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= 100:
            raise UsageError(f"processes must be an integer from 1 to 100, got {self.processes!r}")
        timeout = DEFAULT_TIMEOUT_S[self.profile] if self.timeout is None else self.timeout
        if not (isinstance(timeout, (int, float)) and 0 < timeout < math.inf):
            raise UsageError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        refs = resolve(list(self.backends))
        validate_apis(refs, list(self.apis))
        return replace(self, sizes=sizes, dtypes=dtypes, timeout=float(timeout), processes=processes)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["sizes_label"] = [size_label(n) for n in self.sizes]
        return out


def check_memory(numel: int, dtype: str) -> None:
    """UsageError with the estimate when one case of ``numel`` elements cannot fit in memory."""
    need, have = peak_bytes(numel, dtype), available_memory_bytes()
    if have and need > have:
        raise UsageError(f"size {size_label(numel)} ({numel} elements) needs about {need / 2**30:.1f} GiB "
                         f"({need // (numel * ITEMSIZE[dtype])} arrays of {dtype}) but about "
                         f"{have / 2**30:.1f} GiB of memory is available")


# -- one worker ---------------------------------------------------------------------------------
@dataclass
class WorkerRun:
    """What came back from one backend's worker, whatever happened to it."""

    name: str  # the backend's own name once its worker loaded it, else what was asked for
    ref: str  # what was asked for (--backend): a built-in name or module:attr
    status: str = "ok"  # ok | unavailable | crash | timeout | skipped
    worker: str = ""  # the rows' extra_info.worker (keras3-jax, keras3-torch: one name, several workers)
    python: str = ""  # the interpreter that ran the worker
    reason: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    threads: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    pytest_json: dict[str, Any] | None = None
    benchmarks: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)  # skipped / failed / interrupted cases
    reported: bool = False  # the worker's conftest wrote its backend event (it got as far as loading)
    ran_on: dict[str, Any] = field(default_factory=lambda: {"executor": "local"})  # executor and node
    processes: int = 1  # fresh worker processes whose rows were folded together

    @classmethod
    def from_payload(cls, entry: dict[str, Any], payload: dict[str, Any]) -> "WorkerRun":
        """A backend of an earlier merged payload, as merge() wants it (for --resume)."""
        worker = entry["worker"]
        return cls(entry["backend"], entry["ref"], status=entry["status"], worker=worker, python=entry["python"],
                   reason=entry["reason"], versions=entry["versions"], threads=entry["threads"],
                   seconds=entry["seconds"], ran_on=entry.get("ran_on") or {"executor": "local"},
                   pytest_json={k: payload[k] for k in ("machine_info", "commit_info", "version") if k in payload},
                   benchmarks=[b for b in payload["benchmarks"] if b["extra_info"].get("worker") == worker],
                   cases=[c for c in payload["skipped"] if c.get("worker") == worker], reported=True,
                   processes=int(entry.get("processes", 1)))

    def backend_entry(self) -> dict[str, Any]:
        own = [b for b in self.benchmarks if b["extra_info"].get("backend") != BASELINE_BACKEND]
        return {"backend": self.name, "ref": self.ref, "worker": self.worker or self.name, "python": self.python,
                "status": self.status, "reason": self.reason, "versions": self.versions,
                "threads": self.threads, "seconds": round(self.seconds, 2), "processes": self.processes,
                "benchmarks": len(own),
                "baselines": len(self.benchmarks) - len(own),
                "skipped": sum(c["status"] == "skipped" for c in self.cases),
                "errors": sum(c["status"] != "skipped" for c in self.cases), "ran_on": self.ran_on}


def pytest_command(part_json: Path, profile: str, python: str, task_file: Path) -> list[str]:
    """The worker's pytest command line: the installed engine (plugin and benchmark module), its own
    empty config (so no project's pytest settings apply), and --benchmark-enable over any addopts."""
    timing = TIMING[profile]
    config = task_file.with_name("pytest.ini")
    config.write_text("[pytest]\n", encoding="utf-8")
    return [python, "-m", "pytest", str(BENCH_FILE), "-q", "-p", "no:cacheprovider", "-p", PLUGIN,
            "-c", str(config), "--rootdir", str(task_file.parent), f"--dropbench-task={task_file}",
            "--benchmark-enable", "--benchmark-only", "--benchmark-sort=name",
            f"--benchmark-json={part_json}", f"--benchmark-min-rounds={timing['min_rounds']}",
            f"--benchmark-max-time={timing['max_time']}", f"--benchmark-min-time={timing['min_time']}",
            f"--benchmark-warmup={timing['warmup']}"] + \
        ([f"--benchmark-warmup-iterations={timing['warmup_iterations']}"] if "warmup_iterations" in timing else [])


def run_worker(ref: BackendRef, options: BenchOptions, parts: Path, progress: Progress | None = None) -> WorkerRun:
    """Run one backend's benchmarks in ``options.processes`` fresh pytest processes, one after another,
    and fold them into one row per case (suite/bench/aggregate.py); never raises for the children's
    faults. A process that crashes keeps what the earlier ones measured and ends the backend's run."""
    runs: list[WorkerRun] = []
    for process in range(options.processes):
        run = run_process(ref, options, parts, process, progress)
        runs.append(run)
        if run.status != "ok":
            break
    first, last = runs[0], runs[-1]
    merged = merge_processes([r.benchmarks for r in runs if r.benchmarks])
    seen: set[Any] = set()
    cases = []
    for r in runs:
        for case in r.cases:
            if case.get("id") not in seen:
                seen.add(case.get("id"))
                cases.append(case)
    out = replace(first, benchmarks=merged, cases=cases, seconds=sum(r.seconds for r in runs),
                  pytest_json=first.pytest_json or last.pytest_json, processes=len(runs))
    if last is not first and last.status != "ok":
        out.status = last.status
        out.reason = f"process {len(runs)} of {options.processes}: {last.reason}"
    return out


def run_process(ref: BackendRef, options: BenchOptions, parts: Path, process: int,
                progress: Progress | None = None, env: dict[str, str] | None = None,
                also: tuple[BackendRef, ...] = ()) -> WorkerRun:
    """One fresh pytest worker process of one backend (``env``: extra variables, a duet side's; ``also``:
    backends timed in the same process, same interpreter, their cases interleaved with ``ref``'s)."""
    stem = _safe(ref.name) + (f".p{process}" if process else "")
    part_json = parts / f"{stem}.pytest.json"
    part_json.unlink(missing_ok=True)
    plan = Plan(backends=((ref.name, ref.ref), *((r.name, r.ref) for r in also)), sizes=options.sizes, dtypes=options.dtypes,
                devices=(options.device,), apis=tuple(options.apis), rate=options.rate, threads=options.threads,
                worker=ref.name, bare_loop=options.bare_loop, interleave=options.profile if options.interleave else None,
                process=process)
    task = Task("bench", ref.ref, {"plan": plan.to_json()}, name=stem)
    where = f" (process {process + 1}/{options.processes})" if options.processes > 1 else ""
    result = dispatch(task, timed=True, timeout=options.timeout, env={**thread_env(options.threads), **(env or {})},
                      workdir=parts,
                      # next to the task file: the work folder may be on another node (--executor)
                      command=lambda python, task_file: pytest_command(task_file.with_name(part_json.name),
                                                                       options.profile, python, task_file),
                      progress=(lambda line: progress(f"{ref.name}: running {line}{where}")) if progress else None,
                      ok_codes=(0, 1, 5))
    if result.status == "unavailable":  # its environment is not built: no worker, the reason says how to build it
        return WorkerRun(ref.name, ref.name, status="unavailable", reason=result.detail, worker=ref.name,
                         ran_on=result.where)
    run = WorkerRun(ref.name, ref.name, seconds=result.seconds, python=result.python, ran_on=result.where)
    _collect(run, part_json, result.events)
    log = parts / f"{stem}.log"
    if result.status in ("timeout", "crash") or not run.reported:
        run.status = result.status if result.status != "ok" else "crash"
        run.reason = (result.detail if result.status != "ok" else "worker ended before loading its backend"
                      f"; output: {result.output}") + f" (log {log})"
        _mark_interrupted(run, result, run.status)
    else:
        _settle_status(run, result.returncode or 0)
    return run


def _collect(run: WorkerRun, part_json: Path, events: list[dict[str, Any]]) -> None:
    """Benchmarks from pytest-benchmark's JSON, else salvaged from the worker's journal."""
    salvaged: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.get("event") == "backend":
            run.reported = True
            run.name = str(event.get("name") or run.name)
            run.worker = str(event.get("worker") or run.name)
            run.versions = event.get("versions") or {}
            run.threads = event.get("threads") or {}
            if not event.get("available", True):
                run.status, run.reason = "unavailable", event.get("reason")
        elif event.get("event") == "stats":
            salvaged[event["benchmark"]["fullname"]] = event["benchmark"]
        elif event.get("event") == "case" and event.get("outcome") != "passed":
            run.cases.append(_case_entry(event))
    if part_json.exists():
        try:
            run.pytest_json = json.loads(part_json.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            run.pytest_json = None
    if run.pytest_json is not None:
        run.benchmarks = list(run.pytest_json.get("benchmarks", []))
    else:
        run.benchmarks = [dict(b, extra_info={**b["extra_info"], "salvaged": True}) for b in salvaged.values()]


def _case_entry(event: dict[str, Any]) -> dict[str, Any]:
    """One case that was not timed, with the reason; skip reasons carry a "[kind]" tag."""
    reason = str(event.get("reason") or "")
    match = _SKIP_TAG.match(reason)
    kind = match.group("kind") if match else ("error" if event.get("outcome") == "failed" else "skipped")
    status = "skipped" if event.get("outcome") == "skipped" else "error"
    return {**(event.get("case") or {}), "id": event.get("id"), "status": status, "kind": kind,
            "reason": match.group("reason") if match else reason}


def _mark_interrupted(run: WorkerRun, result: WorkerResult, status: str) -> None:
    """The case that was running when the worker died is recorded, not dropped."""
    started = [e["id"] for e in result.events if e.get("event") == "start"]
    done = {c.get("id") for c in run.cases} | {b.get("param") for b in run.benchmarks}
    if started and started[-1] not in done:
        run.cases.append({"id": started[-1], "status": status, "kind": status, "reason": run.reason})


def _settle_status(run: WorkerRun, code: int) -> None:
    """ok, unless the backend is unavailable or none of its own cases could be timed (then skipped)."""
    if run.status == "unavailable":
        return
    own = [b for b in run.benchmarks if b["extra_info"].get("backend") != BASELINE_BACKEND]
    errors = [c for c in run.cases if c["status"] != "skipped"]
    skipped = [c for c in run.cases if c["status"] == "skipped" and c.get("backend") != BASELINE_BACKEND]
    if not own and not errors:
        run.status = "skipped"
        reasons = Counter(c["reason"] for c in skipped)
        run.reason = reasons.most_common(1)[0][0] if reasons else "no case selected for this backend"
        if len(reasons) > 1:
            run.reason += f" (and {len(reasons) - 1} other reason(s))"
    elif errors:
        run.reason = f"{len(errors)} case(s) failed; first: {errors[0]['id']}: {errors[0]['reason']}"
    if code == 1 and not errors:
        run.reason = (run.reason or "") + " pytest reported a failure outside the cases; see the worker log"


# -- the whole run -------------------------------------------------------------------------------
RESUMABLE = ("ok", "unavailable", "skipped")  # finished backends; crash / timeout are run again
RESUME_KEYS = ("device", "sizes", "dtypes", "threads", "quick", "rate", "apis",
               "processes", "interleave")  # must match to mix the rows


def resumed_runs(options: BenchOptions) -> tuple[dict[str, WorkerRun], _dt.datetime | None]:
    """With --resume and an existing json_path: its finished backends by ref, and when it started.

    UsageError when the file was made with other options (its rows would not be comparable);
    a corrupt or foreign file raises ResultFileError.
    """
    if not options.resume or not options.json_path or not Path(options.json_path).exists():
        return {}, None
    from suite.runtime.machine import machine_id  # noqa: PLC0415

    payload = upgrade(read_result(options.json_path, kind="bench", schemas=READABLE))
    try:
        previous, current = payload["run"], options.to_json()
        for key in RESUME_KEYS:
            now = json.loads(json.dumps(current[key]))  # tuples as the file stores them
            if previous.get(key) != now:
                raise UsageError(f"cannot resume {options.json_path}: it was made with {key}={previous.get(key)!r}, "
                                 f"this run has {key}={now!r}")
        if payload.get("machine_id") != machine_id():
            raise UsageError(f"cannot resume {options.json_path}: it was measured on machine "
                             f"{payload.get('machine_id')!r}, this is {machine_id()!r}")
        kept = {entry["ref"]: WorkerRun.from_payload(entry, payload)
                for entry in payload["backends"] if entry["status"] in RESUMABLE}
        return kept, _dt.datetime.fromisoformat(previous["started"])
    except UsageError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a file cut to our schema but not a bench run
        raise ResultFileError(f"{options.json_path}: not a complete bench result ({type(exc).__name__}: {exc})") from exc


def _machine_and_commit(runs: Iterable[WorkerRun]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """From the first worker that wrote them; generated here when every worker failed."""
    for run in runs:
        if run.pytest_json and run.pytest_json.get("machine_info"):
            pj = run.pytest_json
            return pj["machine_info"], pj.get("commit_info", {}), str(pj.get("version", ""))
    from pytest_benchmark import __version__ as pb_version  # noqa: PLC0415 - not a framework
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info  # noqa: PLC0415
    from pytest_benchmark.utils import get_commit_info  # noqa: PLC0415

    return pytest_benchmark_generate_machine_info(), get_commit_info(), pb_version


def merge(options: BenchOptions, runs: list[WorkerRun], started: _dt.datetime, complete: bool) -> dict[str, Any]:
    """One pytest-benchmark-format payload (plus our schema/kind/run/backends) from every worker."""
    from suite.runtime.machine import machine_facts, machine_id  # noqa: PLC0415

    facts = machine_facts()
    machine_info, commit_info, pb_version = _machine_and_commit(runs)
    now = _dt.datetime.now(_dt.timezone.utc)
    run_info = {**options.to_json(), "threads_default": DEFAULT_THREADS, "timing": TIMING[options.profile],
                "dropbench": __version__, "started": started.isoformat(timespec="seconds"),
                "finished": now.isoformat(timespec="seconds") if complete else None,
                "seconds": round((now - started).total_seconds(), 2), "complete": complete,
                "processes_per_backend": options.processes,
                "interleave": options.interleave,
                "baselines": "rows with backend 'baseline' and the same extra_info.worker, numel, dtype, device",
                "median": "median over processes of each process's median of interleaved per-call times "
                          "(suite/bench/aggregate.py)"}
    skipped = [dict(case, worker=run.worker or run.name) for run in runs for case in run.cases]
    return {
        "schema": BENCH_SCHEMA, "kind": "bench", "machine_id": machine_id(facts), "machine_facts": facts,
        "machine_info": machine_info, "commit_info": commit_info, "datetime": now.isoformat(),
        "version": pb_version, "run": run_info, "backends": [run.backend_entry() for run in runs],
        "benchmarks": [b for run in runs for b in run.benchmarks], "skipped": skipped,
    }


def run_bench(options: BenchOptions, progress: Progress | None = None, parts_dir: str | Path | None = None) -> dict[str, Any]:
    """Benchmark every selected backend, one worker each; returns (and writes, with json_path) the merged payload.

    The merged file is rewritten after every backend, so an interrupted run keeps what it
    measured. Each worker's raw pytest-benchmark JSON, outcome log and output go to
    ``parts_dir``; by default to ``<json>.parts`` next to json_path, removed again unless a
    worker crashed, timed out or had a failing case (then it holds the evidence).
    """
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    options = options.validated()
    refs = resolve(list(options.backends))
    kept, resumed_start = resumed_runs(options)
    kept = {ref.name: kept[ref.name] for ref in refs if ref.name in kept}  # only backends asked for this time
    if options.resume and progress:
        progress(f"resumed: kept {len(kept)} backend(s) from {options.json_path}")
    started = resumed_start or _dt.datetime.now(_dt.timezone.utc)
    runs: list[WorkerRun] = []
    with tempfile.TemporaryDirectory(prefix="dropbench-bench-") as tmp:
        parts = Path(parts_dir) if parts_dir else (Path(f"{options.json_path}.parts") if options.json_path else Path(tmp))
        parts.mkdir(parents=True, exist_ok=True)
        for index, ref in enumerate(refs, 1):
            if ref.name in kept:
                runs.append(kept[ref.name])
                if index < len(refs):
                    continue  # nothing new to write yet
            else:
                if progress:
                    progress(f"{ref.name}: starting worker ({index}/{len(refs)})")
                run = run_worker(ref, options, parts, progress)
                runs.append(run)
                if progress:
                    entry = run.backend_entry()
                    progress(f"{ref.name}: {run.status} - {entry['benchmarks']} benchmarks, {entry['baselines']} "
                             f"baselines, {entry['skipped']} skipped, {entry['errors']} errors in {run.seconds:.1f} s"
                             + (f" ({run.reason})" if run.reason else ""))
            payload = merge(options, runs, started, complete=index == len(refs))
            if options.json_path:
                atomic_write_json(options.json_path, payload)
        troubled = any(r.status in ("crash", "timeout") or r.backend_entry()["errors"] for r in runs)
        if not parts_dir and options.json_path and not troubled:
            shutil.rmtree(parts, ignore_errors=True)  # kept only when a worker needs looking into
    return payload


def device_was_seen(payload: dict[str, Any]) -> bool:
    """Whether anything (a backend or a baseline) was timed on the requested device."""
    wanted = payload["run"]["device"]
    wanted = "cuda:0" if wanted == "cuda" else wanted
    return any(b["extra_info"].get("device") == wanted for b in payload["benchmarks"])


def exit_code(payload: dict[str, Any]) -> int:
    """0: every worker ran and no case failed; 1: a crash, timeout or failed case, a backend named
    with --backend that could not run, or --require-device without the device."""
    run = payload["run"]
    named = set(run["backends"])
    for entry in payload["backends"]:
        if entry["status"] in ("crash", "timeout") or entry["errors"]:
            return 1
        if entry["status"] == "unavailable" and (entry["ref"] in named or entry["backend"] in named):
            return 1
    if run["require_device"] and not device_was_seen(payload):
        return 1
    return 0
