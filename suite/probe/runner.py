"""Run the probe cases through backends, each backend in worker processes that may crash or hang.

Isolation, and why this shape: per backend one worker runs every case (importing a framework
costs seconds; one process per case would cost minutes), writing a journal line before and
after each case. If the worker dies (signal, abort) or its per-case watchdog fires, the parent
reads the journal, records the case in flight as ``crash`` or ``timeout`` (signal or exit code,
stderr tail, watchdog frames) and starts a fresh worker on the cases not yet done. So a crash
costs one extra import, never the other results. The watchdog is ``faulthandler``'s
``dump_traceback_later(exit=True)``: a C-level timer thread that ends the process even when a
framework hangs inside native code holding the GIL.

The cross-process cases (same seed / no seed in two fresh processes) run in two extra workers
of their own, unseeded cases first, so that both processes start from the same fresh state. Both
run pinned to one thread; the first then runs the thread cases, whose other half (the default thread
count) ran in the main worker: the same seed at 1 and N threads without a worker of its own.
"""
from __future__ import annotations

import datetime as _dt
import faulthandler
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from backends.base import Unsupported, api_info
from suite import __version__
from suite.probe import cases as probes
from suite.probe.cases import Case
from suite.runtime.environments import declaration
from suite.runtime.executors import dispatch
from suite.runtime.loader import BackendRef, load_for_worker
from suite.runtime.machine import machine_facts, machine_id
from suite.runtime.threads import pin_threads, thread_env
from suite.runtime.worker import DEFAULT_TIMEOUT_S, Journal, Task, WorkerResult
from suite.spec import DropoutSpec

DEFAULT_SEED = 20260101
DEFAULT_CASE_TIMEOUT_S = 30.0
PINNED_THREADS = 1  # the thread count the "process" workers pin; the main worker runs at its default
Pair = tuple[str, str]  # (api id, case id)


# ============================== child side ==============================================
def _observe(backend: Any, api: str, case: Case, x: np.ndarray, spec: DropoutSpec) -> tuple[str, str | None, dict[str, Any]]:
    """Call the API the way ``case.kind`` asks; return (outcome, finding, detail)."""
    forward: Callable[[DropoutSpec], np.ndarray] = lambda s: np.asarray(backend.forward(x, s, api=api))  # noqa: E731
    if case.kind in ("compiled", "compiled-grad"):
        return _observe_compiled(backend, api, case, x, spec)
    kind = getattr(spec, "kind", "bernoulli")
    if case.kind in ("grad-values", "grad-mask", "grad-multiplier"):
        y, grad = backend.forward_backward(x, np.ones_like(x), spec, api=api)
        y, grad = np.asarray(y), np.asarray(grad)
        if case.kind == "grad-values":
            outcome, detail = probes.classify(np.ones_like(x), grad, case.keep, kind)
            return outcome, None, detail
        outcome, detail = probes.classify(x, y, case.keep, kind)
        if case.kind == "grad-multiplier":
            return outcome, probes.grad_multiplier_finding(y, grad, 1.0 - case.keep, kind), detail
        return outcome, probes.grad_mask_finding(y, grad), detail
    y = forward(spec)
    outcome, detail = probes.classify(x, y, case.keep, kind)
    finding: str | None = None
    if case.kind == "seed-output":
        finding = probes.same_output_finding(y, forward(spec))
    elif case.kind == "seed-twice":
        finding = probes.same_mask_finding(y, forward(spec))
    elif case.kind == "device-seed":  # the same spec (and seed) on the host: the same kept positions?
        if "cpu" not in backend.devices():
            raise Unsupported(f"{backend.name}:{api} has no CPU path: no host mask to compare with")
        finding = probes.same_mask_finding(y, forward(spec.replace(device="cpu")))
    elif case.kind == "process":
        detail = probes.summarize(y, values=False)  # unseeded: counts would differ run to run
        detail["mask_digest"] = probes.mask_digest(y)
    elif case.kind == "broadcast":
        finding = probes.broadcast_finding(y, spec.broadcast_axes)
        detail["requested_axes"] = list(spec.broadcast_axes)
    elif case.kind == "keep-share":
        finding = probes.keep_share_finding(y, float(case.rate))
    elif case.kind == "kept-value":
        finding = probes.kept_value_finding(y, case.keep)
    elif case.kind == "rate-resolution":
        finding, measured = probes.resolution_finding(y, float(case.rate))
        detail.update(measured)
    elif case.kind == "seed-neighbours":  # issue 25: seed s+1's mask against seed s's, at every shift
        if spec.seed is None:
            raise Unsupported(f"{backend.name}:{api} takes no seed")
        finding, shift = probes.seed_neighbour_finding(y, forward(spec.replace(seed=spec.seed + 1)))
        detail.update(shift)
    elif case.kind == "threads":
        detail = probes.summarize(y, values=False)
        detail["mask_digest"] = probes.mask_digest(y)
    elif case.fill == "nan-row":
        finding = probes.nan_input_finding(x, y)
    return outcome, finding, detail


def _observe_compiled(backend: Any, api: str, case: Case, x: np.ndarray,
                      spec: DropoutSpec) -> tuple[str, str | None, dict[str, Any]]:
    """compiled: the compiled forward's mask against eager's (same seed); compiled-grad: its gradient."""
    mode = _compiled_mode(backend, api)
    if mode is None:
        raise Unsupported(f"{backend.name}:{api} has no compiled mode")
    if spec.seed is None:
        raise Unsupported(f"{backend.name}:{api} cannot be seeded per call: eager and compiled masks cannot be compared")
    if case.kind == "compiled-grad":
        y, grad = backend.forward_backward_compiled(x, np.ones_like(x), spec, api=api)
        y, grad = np.asarray(y), np.asarray(grad)
        outcome, detail = probes.classify(x, y, case.keep)
        detail["mode"] = mode
        return outcome, probes.grad_mask_finding(y, grad), detail
    eager = np.asarray(backend.forward(x, spec, api=api))
    y = np.asarray(backend.forward_compiled(x, spec, api=api))
    outcome, detail = probes.classify(x, y, case.keep)
    detail["mode"] = mode
    return outcome, probes.eager_mask_finding(eager, y), detail


def _compiled_mode(backend: Any, api: str) -> str | None:
    """The mode the adapter's forward_compiled runs (a plugin without the hook: none)."""
    if not callable(getattr(backend, "forward_compiled", None)):
        return None
    getter = getattr(backend, "compiled_mode_for_probe", None)
    return getter(api) if callable(getter) else api_info(backend, api).compiled


def run_case(backend: Any, api: str, case: Case, seed: int) -> dict[str, Any]:
    """One (api, case) record. The backend's exceptions are observations, never raised."""
    record = probes.new_record(f"{backend.name}:{api}", case)
    try:
        info = api_info(backend, api)
        layout = info.layout
        if case.device != "cpu":  # a plugin may ignore spec.device: never record a CPU run as a GPU one
            devices = list(backend.devices())
            if not any(d.startswith(case.device) for d in devices):
                raise Unsupported(f"{record['api']} sees no {case.device} device here (devices: {', '.join(devices) or 'none'})")
        record["expected"] = case.expected_for(info.kind)
        if info.kind not in case.kinds:
            raise Unsupported(f"a {'/'.join(case.kinds)} case: {info.kind} dropout has no 0/1 mask for it to read")
        if case.dtype == "bfloat16" and "bfloat16" not in info.dtypes:
            raise Unsupported(f"{record['api']} has no bfloat16 bridge in its adapter (declares {', '.join(info.dtypes)})")
        try:
            x, axes = case.make_input(layout.ndim if layout else None, layout.broadcast_axes if layout else ())
        except LookupError as exc:  # ml_dtypes missing
            raise Unsupported(str(exc)) from exc
        seed_cases = ("seed-twice", "process", "threads", "seed-output")
        use_seed = seed if case.seeded and ("seed" in info.capabilities or case.kind in seed_cases) else None
        spec_dtype = case.dtype if case.dtype in ("float16", "bfloat16") else "float32"  # int32: a layer's default dtype
        spec = DropoutSpec.unchecked(case.rate, training=case.training, broadcast_axes=axes, seed=use_seed, dtype=spec_dtype,
                                     device=case.device, kind=info.kind)
        outcome, finding, detail = _observe(backend, api, case, x, spec)
        detail["in_dtype"] = x.dtype.name
        detail["in_shape"] = list(x.shape)
        record.update(outcome=outcome, finding=finding, detail=detail)
    except Unsupported as exc:
        record.update(outcome="n/a", message=probes.short_message(exc))
    except Exception as exc:  # the framework's own behaviour: recorded, not hidden
        record.update(outcome="error", error_type=type(exc).__name__, message=probes.short_message(exc))
    return record


def plan_for(backend: Any, mode: str, apis: Iterable[str] | None, cases: Iterable[str] | None,
             device: str = "cpu") -> list[Pair]:
    """(api id, case id) pairs in run order: API by API; cross-process cases case by case, unseeded first."""
    wanted_apis = set(apis) if apis else None
    wanted_cases = set(cases) if cases else None
    ids = [f"{backend.name}:{a}" for a in backend.apis if wanted_apis is None or f"{backend.name}:{a}" in wanted_apis]
    chosen = [c for c in probes.cases_for(device) if (wanted_cases is None or c.id in wanted_cases)
              and (c.cross_process if mode == "process" else not c.cross_process)]
    if mode == "process":
        # unseeded first: nothing may seed the stream before them; the thread cases (run here at one
        # thread, in the main worker at the default count) last, after the fresh-state cases
        chosen = [c for c in chosen if c.cross_process]
        chosen.sort(key=lambda c: c.seeded)
        threads = [c for c in probes.CASES if c.cross_threads and (wanted_cases is None or c.id in wanted_cases)]
        return [(a, c.id) for c in chosen for a in ids] + [(a, c.id) for c in threads for a in ids]
    return [(a, c.id) for a in ids for c in chosen]


def worker_task(task: Task) -> dict[str, Any]:
    """Child side (suite.runtime.worker TASKS["probe"]): run the planned cases of one backend."""

    options = task.options
    journal = Journal(task)
    backend, payload = load_for_worker(task.ref)
    if backend is None:
        journal.write(header={**payload, "apis": [], "plan": []})
        return payload
    todo = options.get("todo")
    plan = ([tuple(p) for p in todo] if todo is not None else
            plan_for(backend, options["mode"], options.get("apis"), options.get("cases"), options.get("device") or "cpu"))
    payload["apis"] = [f"{backend.name}:{a}" for a in backend.apis]
    if options.get("threads"):
        payload["threads"] = pin_threads(backend, int(options["threads"]))
    journal.write(header={**payload, "plan": plan})
    watchdog_path = options.get("watchdog")
    watchdog = open(watchdog_path, "w", encoding="utf-8") if watchdog_path else None
    case_timeout = float(options.get("case_timeout") or DEFAULT_CASE_TIMEOUT_S)
    for api_id, case_id in plan:
        journal.write(start=[api_id, case_id])
        if watchdog is not None:
            limit = max(case_timeout, probes.BY_ID[case_id].timeout_s or 0.0)
            faulthandler.dump_traceback_later(limit, exit=True, file=watchdog)
        record = run_case(backend, api_id.split(":", 1)[1], probes.BY_ID[case_id], int(options["seed"]))
        if watchdog is not None:
            faulthandler.cancel_dump_traceback_later()
        journal.write(record=record)
        payload["records"].append(record)
    return payload


# ============================== parent side ==============================================
@dataclass
class BackendRun:
    """What one backend's workers produced: header facts, records by (api, case), failures."""

    name: str
    status: str = "ok"  # ok | unavailable | crash | timeout
    reason: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    apis: list[str] = field(default_factory=list)
    plan: list[Pair] = field(default_factory=list)
    records: dict[Pair, dict[str, Any]] = field(default_factory=dict)
    workers: int = 0
    ran_on: list[dict[str, Any]] = field(default_factory=list)  # which executor and node ran each worker
    threads: dict[str, Any] | None = None  # what pin_threads reported (threads workers)


def _read_journal(events: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[Pair], list[dict[str, Any]]]:
    header, started, done = None, [], []
    for entry in events:
        if "header" in entry:
            header = entry["header"]
        elif "start" in entry:
            started.append(tuple(entry["start"]))
        elif "record" in entry:
            done.append(entry["record"])
    return header, started, done


def _failure_record(pair: Pair, result: WorkerResult, watchdog_text: str, case_timeout: float) -> dict[str, Any]:
    record = probes.new_record(pair[0], probes.BY_ID[pair[1]])
    if watchdog_text.strip():
        frames = [ln.strip() for ln in watchdog_text.splitlines() if ln.strip().startswith("File ")][:3]
        record.update(outcome="timeout", message=probes.short_message(
            f"no result after {case_timeout:g} s (watchdog); innermost frames: {' | '.join(frames)}", 600))
    elif result.status == "timeout":
        record.update(outcome="timeout", message=probes.short_message(result.detail, 600))
    else:
        record.update(outcome="crash", message=probes.short_message(result.detail, 600))
    return record


def run_backend(ref: BackendRef, mode: str, *, apis: set[str] | None, cases: list[str] | None, seed: int,
                timeout: float = DEFAULT_TIMEOUT_S, case_timeout: float = DEFAULT_CASE_TIMEOUT_S,
                device: str = "cpu") -> BackendRun:
    """Run one backend's cases of ``mode`` ("main" or "process"), resuming after crashes and hangs.

    "process" workers start with the BLAS/OpenMP variables at 1 and pin the framework's pools to 1
    (backend.pin_threads) before any case runs: both cross-process runs at one thread, and the thread
    cases there against the main worker's run at the default count. One worker fewer per backend than
    a separate thread worker (a framework import costs seconds).
    """
    threads = PINNED_THREADS if mode == "process" else None
    run = BackendRun(ref.name)
    todo: list[Pair] | None = None
    with tempfile.TemporaryDirectory(prefix="dropbench-probe-") as tmp:
        for attempt in range(10_000):  # each retry removes at least one case, so this ends
            watchdog = Path(tmp) / f"watchdog-{attempt}.txt"
            options = {"mode": mode, "apis": sorted(apis) if apis else None, "cases": cases, "seed": seed,
                       "todo": todo, "watchdog": str(watchdog), "case_timeout": case_timeout, "device": device,
                       "threads": threads}
            result = dispatch(Task("probe", ref.ref, options, name=ref.name), timeout=timeout,
                              env=thread_env(threads) if threads else None)
            if result.status == "unavailable":  # its environment is not built: no worker started
                run.status, run.reason = "unavailable", result.detail
                return run
            run.workers += 1
            run.ran_on.append(result.where)
            header, started, done = _read_journal(result.events)
            if header is not None and attempt == 0:
                run.name = header.get("backend", ref.name)
                run.versions, run.apis = header.get("versions", {}), header.get("apis", [])
                run.threads = header.get("threads")
                run.plan = [tuple(p) for p in header.get("plan", [])]
                if not header.get("available", True):
                    run.status, run.reason = "unavailable", header.get("reason")
                    return run
            for record in done:
                run.records[(record["api"], record["case"])] = record
            if result.status == "ok":
                break
            in_flight = [p for p in started if p not in run.records]
            if header is None or not in_flight:  # died while loading, or after the last case
                if header is None or any(p not in run.records for p in run.plan):
                    run.status, run.reason = result.status, result.detail
                break
            watchdog_text = watchdog.read_text(encoding="utf-8", errors="replace") if watchdog.exists() else ""
            run.records[in_flight[-1]] = _failure_record(in_flight[-1], result, watchdog_text, case_timeout)
            todo = [p for p in run.plan if p not in run.records]
            if not todo:
                break
    return run


def merge_process_runs(first: BackendRun, second: BackendRun) -> dict[Pair, dict[str, Any]]:
    """Cross-process records: the first process's observation, finding = same mask in both or not."""
    merged: dict[Pair, dict[str, Any]] = {}
    for pair, record in first.records.items():
        if not probes.BY_ID[pair[1]].cross_process:
            continue
        record = dict(record)
        other = second.records.get(pair)
        if record["outcome"] not in probes.NO_OUTPUT:
            if other is None:
                record.update(outcome=second.status if second.status in ("crash", "timeout") else "crash",
                              message=probes.short_message(f"second process gave no result: {second.reason}", 600))
            elif other["outcome"] in ("crash", "timeout", "error"):
                record.update(outcome=other["outcome"], error_type=other["error_type"],
                              message=probes.short_message(f"second process: {other['message']}", 600))
            else:
                a, b = (record.get("detail") or {}).get("mask_digest"), (other.get("detail") or {}).get("mask_digest")
                record["finding"] = probes.SAME_MASK if a == b else probes.NEW_MASK
        if record.get("detail"):
            record["detail"] = {k: v for k, v in record["detail"].items() if k != "mask_digest"}
        merged[pair] = record
    return merged


def merge_thread_runs(main: dict[Pair, dict[str, Any]], pinned: BackendRun) -> dict[Pair, dict[str, Any]]:
    """Thread cases: the main worker's observation (default threads), finding = the same mask as with 1 thread or not."""
    merged: dict[Pair, dict[str, Any]] = {}
    for pair, record in main.items():
        if not probes.BY_ID[pair[1]].cross_threads:
            continue
        record = dict(record)
        other = pinned.records.get(pair)
        if record["outcome"] not in probes.NO_OUTPUT:
            if other is None:
                record.update(outcome=pinned.status if pinned.status in ("crash", "timeout", "unavailable") else "crash",
                              message=probes.short_message(f"the 1-thread (first process) worker gave no result: {pinned.reason}", 600))
            elif other["outcome"] in ("crash", "timeout", "error"):
                record.update(outcome=other["outcome"], error_type=other["error_type"],
                              message=probes.short_message(f"1-thread worker: {other['message']}", 600))
            else:
                a, b = (record.get("detail") or {}).get("mask_digest"), (other.get("detail") or {}).get("mask_digest")
                record["finding"] = probes.SAME_AT_THREADS if a == b else probes.NEW_AT_THREADS
        detail = {k: v for k, v in (record.get("detail") or {}).items() if k != "mask_digest"}
        if pinned.threads is not None:
            detail["pinned"] = pinned.threads
        record["detail"] = detail or None
        merged[pair] = record
    return merged


def _process_only(cases: list[str] | None) -> list[str]:
    """The cross-process case ids among ``cases`` (all when None): the second process needs no thread cases."""
    return [c.id for c in probes.CASES if c.cross_process and (not cases or c.id in cases)]


@dataclass
class ProbeReport:
    seed: int
    backends: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0
    device: str = "cpu"  # "cuda": the GPU cases ran too

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "kind": "probe",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "dropbench": __version__,
            "seed": self.seed,
            "machine": {"id": machine_id(), **machine_facts()},
            "elapsed_s": round(self.elapsed_s, 1),
            "versions": self.versions,
            "backends": self.backends,
            "cases": [{"id": c.id, "why": c.why, "rate": c.rate_repr(), "dtype": c.dtype, "shape": list(c.shape),
                       "convention": c.convention, "checks": list(c.checks),
                       **({"device": c.device} if c.device != "cpu" else {})}
                      for c in probes.cases_for(self.device)],
            "records": self.records,
        }


def run_probe(refs: list[BackendRef], apis: set[str] | None = None, cases: list[str] | None = None, *,
              seed: int = DEFAULT_SEED, timeout: float = DEFAULT_TIMEOUT_S,
              case_timeout: float = DEFAULT_CASE_TIMEOUT_S, device: str = "cpu") -> ProbeReport:
    """Every selected (api, case) of every backend; records in backend, API, case order.
    ``device`` "cuda" adds the GPU cases (n/a, with the reason, for an API that sees no GPU)."""
    started = time.perf_counter()
    report = ProbeReport(seed=seed, versions={"python": platform.python_version()}, device=device)
    order = {c.id: i for i, c in enumerate(probes.cases_for(device))}
    kw = dict(apis=apis, cases=cases, seed=seed, timeout=timeout, case_timeout=case_timeout, device=device)
    wants_process = any(c.cross_process for c in probes.CASES if not cases or c.id in cases)
    wants_threads = any(c.cross_threads for c in probes.CASES if not cases or c.id in cases)
    for ref in refs:
        main = run_backend(ref, "main", **kw)
        records = dict(main.records)
        workers = main.workers
        if main.status == "ok" and (wants_process or wants_threads):
            first = run_backend(ref, "process", **kw)
            workers += first.workers
            if wants_process:
                second = run_backend(ref, "process", **{**kw, "cases": _process_only(cases)})
                records.update(merge_process_runs(first, second))
                workers += second.workers
            if wants_threads:
                records.update(merge_thread_runs(records, first))
        report.backends.append({"backend": main.name, "ref": ref.name, "status": main.status, "reason": main.reason,
                                "apis": main.apis, "workers": workers, "ran_on": main.ran_on})
        environment = declaration(ref.ref)[0]
        # a worker environment has its own numpy, keras, ...: its versions are marked, never mixed in
        report.versions.update({(f"{k} ({environment} env)" if environment else k): v for k, v in main.versions.items()})
        api_order = {a: i for i, a in enumerate(main.apis)}
        report.records.extend(sorted(records.values(), key=lambda r: (api_order.get(r["api"], 1 << 30), r["api"], order[r["case"]])))
    report.elapsed_s = time.perf_counter() - started
    return report
