"""Duet runs: OLD and NEW timed in the same run, their worker processes alternating in time.

Why: two result files taken minutes apart differ by whatever the machine did in between (a
neighbour's job, page placement, the clock); with 3 processes a side and 20 % between-process
spread no test over files can catch a 10 % slowdown. Duet benchmarking (Bulej et al., ICPE 2020)
times the two versions together and compares them pair by pair. Here a *side* is a backend
(a registry name or ``module:attr``, e.g. the same adapter in another worker environment) with its
own environment variables and thread count. ``alternate``: pair i runs one fresh process of each
side back to back, OLD first in even pairs and NEW first in odd ones (ABBA: a linear drift hits
both alike over two pairs). ``side-by-side``: the two processes of a pair run at the same time
(one thread each by default, so on two cores one each), so both see the same neighbours' load
second by second: Bulej et al.'s duet proper. ``same-process``: both backends in one worker
process per pair (two backends of different names in one environment, with the same variables: a
plugin before and after, numpy:fast against a kernel), so their cases share the interleaved sweeps
(suite/bench/interleave.py) and a pair's two figures are milliseconds apart. Each process is the
same pytest-benchmark worker ``dropbench bench`` runs (suite/bench/runner.py), so a side's
processes fold into an ordinary bench payload, and the pair index is the process index. suite/report/paired.py tests the per-pair ratios.
"""
from __future__ import annotations

import datetime as _dt
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from suite.bench.aggregate import merge_processes
from suite.bench.cases import BASELINE_BACKEND
from suite.bench.runner import BenchOptions, WorkerRun, merge, run_process
from suite.runtime.jsonio import atomic_write_json
from suite.runtime.loader import UsageError, api_ids, resolve

DUET_KIND = "duet"
DUET_SCHEMA = 1
LAYOUTS = ("alternate", "side-by-side", "same-process")
DEFAULT_PAIRS = 3
"""Pairs (fresh processes per side): 3, the budget of the two 3-process ``bench --quick`` files a
file-vs-file compare needs (6 processes a backend)."""
SIDE_BY_SIDE_PAIRS = 6
"""Side by side the pairs run two at a time, so 6 take the same wall time: on the quiet 2-core VM two
`bench --quick` files of one plugin took 18.1 s, an alternating duet of 3 pairs 15.9-17.0 s, side by side
6 pairs 19.2-20.6 s (results/calibration/intel-r-xeon-r-processor-2c-134af65a-duet-quiet/README.md, "Budget")."""


def default_pairs(layout: str) -> int:
    return SIDE_BY_SIDE_PAIRS if layout == "side-by-side" else DEFAULT_PAIRS


Progress = Callable[[str], None]


@dataclass(frozen=True)
class Side:
    """One side of the duet: what runs, with which extra environment and threads."""

    ref: str  # backend name or module:attr
    also: tuple[str, ...] = ()  # more backends in the same worker process (calibrate.py times four plugins a side)
    env: dict[str, str] = field(default_factory=dict)
    threads: int | None = None  # None: the run's --threads

    def describe(self) -> str:
        extra = [f"{k}={v}" for k, v in sorted(self.env.items())]
        if self.threads:
            extra.append(f"threads={self.threads}")
        return " + ".join((self.ref, *self.also)) + (f" [{', '.join(extra)}]" if extra else "")

    @property
    def refs(self) -> tuple[str, ...]:
        return (self.ref, *self.also)


def parse_env(items: list[str]) -> dict[str, str]:
    """KEY=VALUE strings to a dict (UsageError naming a malformed one)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not key.replace("_", "").isalnum():
            raise UsageError(f"environment setting must be KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def side_apis(ref: str, apis: tuple[str, ...]) -> tuple[str, ...]:
    """The API ids of ``ref`` whose name (after "backend:") is one of ``apis``' names: OLD and NEW may
    be two backends (numpy:fast against calib25:fast). Empty when ``apis`` is, or the plugin cannot be
    loaded here (its worker then times every API it has)."""
    if not apis:
        return ()
    wanted = {a.split(":", 1)[-1] for a in apis}
    try:
        ids = api_ids(resolve([ref])[0].ref)
    except UsageError:
        raise
    except Exception:  # a plugin that cannot load here: its worker will report it
        return ()
    mine = tuple(i for i in ids if i.split(":", 1)[-1] in wanted)
    if not mine:
        raise UsageError(f"--api {', '.join(apis)}: {ref} has none of these APIs (it has {', '.join(ids)})")
    return mine


def pair_order(pairs: int) -> list[tuple[int, str]]:
    """(pair, side) in run order: old, new, new, old, old, new, ..."""
    out = []
    for i in range(pairs):
        out += [(i, "old"), (i, "new")] if i % 2 == 0 else [(i, "new"), (i, "old")]
    return out


def _load() -> float | None:
    """The 1-minute load average now (None where the OS has none): compare quotes the calibration of a
    loaded machine when the duet ran on one (suite/report/paired.py, QUIET_LOAD)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def run_duet(old: Side, new: Side, options: BenchOptions, pairs: int = DEFAULT_PAIRS, *,
             progress: Progress | None = None, json_path: str | None = None, layout: str = "alternate") -> dict[str, Any]:
    """Time both sides, ``pairs`` processes each, alternating or side by side; returns (and writes) the
    duet payload: ``old`` and ``new`` are ordinary merged bench payloads whose process i belong to pair i."""
    if not 2 <= pairs <= 100:
        raise UsageError(f"pairs must be an integer from 2 to 100, got {pairs!r}")
    if layout not in LAYOUTS:
        raise UsageError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    sides = {"old": old, "new": new}
    opts = {}
    for name, side in sides.items():
        o = replace(options, backends=side.refs, apis=tuple(a for r in side.refs for a in side_apis(r, options.apis)),
                    processes=pairs,
                    threads=side.threads or options.threads, json_path=None, resume=False)
        opts[name] = o.validated()
    refs = {name: [resolve([r])[0] for r in side.refs] for name, side in sides.items()}
    if layout == "same-process":
        _check_same_process(old, new, opts)
    started = _dt.datetime.now(_dt.timezone.utc)
    runs: dict[str, list[WorkerRun]] = {"old": [], "new": []}
    loads = [_load()]
    order = pair_order(pairs)
    with tempfile.TemporaryDirectory(prefix="dropbench-duet-") as tmp:
        def one(pair: int, name: str) -> WorkerRun:
            parts = Path(tmp) / name
            parts.mkdir(exist_ok=True)
            return run_process(refs[name][0], opts[name], parts, pair, progress, env=sides[name].env,
                               also=tuple(refs[name][1:]))

        if layout == "alternate":
            for step, (pair, name) in enumerate(order, 1):
                if progress:
                    progress(f"duet pair {pair + 1}/{pairs}: {name.upper()} {sides[name].describe()} ({step}/{len(order)})")
                runs[name].append(one(pair, name))
                loads.append(_load())
        elif layout == "same-process":
            both = replace(opts["old"], apis=opts["old"].apis + opts["new"].apis if opts["old"].apis and opts["new"].apis else ())
            for pair in range(pairs):
                if progress:
                    progress(f"duet pair {pair + 1}/{pairs}: OLD {old.describe()} and NEW {new.describe()} in one process")
                parts = Path(tmp) / "both"
                parts.mkdir(exist_ok=True)
                run = run_process(refs["old"][0], both, parts, pair, progress, env={**old.env, **new.env},
                                  also=(*refs["old"][1:], *refs["new"]))
                for name, side in sides.items():
                    runs[name].append(_only(run, {backend_name(r) for r in side.refs}))
                loads.append(_load())
        else:
            with ThreadPoolExecutor(max_workers=2) as pool:
                for pair in range(pairs):
                    if progress:
                        progress(f"duet pair {pair + 1}/{pairs}: OLD {old.describe()} and NEW {new.describe()} side by side")
                    futures = {name: pool.submit(one, pair, name) for name in sides}
                    for name, future in futures.items():
                        runs[name].append(future.result())
                    loads.append(_load())
        for name in sides:
            for pair, run in enumerate(runs[name]):
                if run.status != "ok":
                    raise DuetFailed(f"{name.upper()} ({sides[name].describe()}) process {pair + 1}: {run.status}: {run.reason}")
    payload: dict[str, Any] = {"schema": DUET_SCHEMA, "kind": DUET_KIND, "pairs": pairs, "layout": layout,
                               "order": [[p, s] for p, s in order] if layout == "alternate" else
                               [[p, "old+new"] for p in range(pairs)],
                               "sides": {n: {"ref": s.ref, "also": list(s.also), "env": s.env, "threads": opts[n].threads}
                                         for n, s in sides.items()},
                               "loadavg_1min": [x for x in loads if x is not None]}
    for name in sides:
        first = runs[name][0]
        folded = replace(first, benchmarks=merge_processes([r.benchmarks for r in runs[name]]),
                         seconds=sum(r.seconds for r in runs[name]), processes=len(runs[name]))
        payload[name] = merge(opts[name], [folded], started, complete=True)
    if json_path:
        atomic_write_json(json_path, payload)
    return payload


def backend_name(ref: str) -> str:
    """The backend's own name (what its API ids start with); imports the adapter module, not its framework."""
    return api_ids(resolve([ref])[0].ref)[0].split(":", 1)[0]


def _check_same_process(old: Side, new: Side, opts: dict[str, BenchOptions]) -> None:
    """UsageError unless the two sides can share one worker process."""
    from suite.runtime.environments import declaration  # noqa: PLC0415

    why = []
    try:
        names = [backend_name(r) for r in old.refs], [backend_name(r) for r in new.refs]
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin that cannot load here
        raise UsageError(f"--same-process: cannot load {old.ref} or {new.ref} here to check them: {exc}") from None
    if set(names[0]) & set(names[1]):
        why.append(f"both are named {sorted(set(names[0]) & set(names[1]))[0]!r} (their rows would be one)")
    if len({repr(declaration(resolve([r])[0].ref)) for r in (*old.refs, *new.refs)}) > 1:
        why.append("they run in different worker environments")
    if opts["old"].threads != opts["new"].threads:
        why.append("their thread counts differ")
    if old.env and new.env and any(old.env.get(k, v) != v for k, v in new.env.items()):
        why.append("their environment variables contradict each other")
    if why:
        raise UsageError(f"--same-process cannot time {old.describe()} and {new.describe()} in one process: "
                         + "; ".join(why) + " (use the default alternating layout or --side-by-side)")


def _only(run: WorkerRun, names: set[str]) -> WorkerRun:
    """The rows of backends ``names`` from a process that timed both sides (the baselines go with each side)."""
    rows = [b for b in run.benchmarks if b["extra_info"].get("backend") in names | {BASELINE_BACKEND}]
    return replace(run, name=sorted(names)[0], benchmarks=rows)


class DuetFailed(RuntimeError):
    """A process of one side did not finish: the pairs cannot be judged (the message says which)."""


def read_duet(payload: dict[str, Any], source: str) -> dict[str, Any]:
    """A duet payload checked for the parts compare needs (ValueError naming what is missing)."""
    if payload.get("kind") != DUET_KIND or payload.get("schema") != DUET_SCHEMA:
        raise ValueError(f"{source}: not a duet result (kind {payload.get('kind')!r}, schema {payload.get('schema')!r})")
    for side in ("old", "new"):
        if not isinstance(payload.get(side), dict) or "benchmarks" not in payload[side]:
            raise ValueError(f"{source}: no {side!r} side")
    return payload
