"""Several fresh processes per backend, folded into one row per case (result schema 2).

Why processes: on a shared machine whole processes shift together (CPU frequency, neighbours,
where the allocator put the buffers), so the rounds of one process are not independent samples of
"this code on this machine"; the process is the unit of variance (pyperf runs many fresh
processes for the same reason). Each process contributes one figure per case, the median of its
interleaved per-call times (pytest-benchmark's median where a row has no interleaved rounds), and
the row's reported figure is the median over processes, with the between-process spread next to it.

Row layout (schema 2): the pytest-benchmark entry of the first process, with

* ``stats``: pytest-benchmark's statistics recomputed over the rounds of every process pooled
  (``data`` = all pytest-benchmark rounds), except ``median``, which is the median over processes
  (``stats["median_of"] = "processes"`` says so);
* ``extra_info["processes"]``: one entry per process: ``process``, ``median`` (the process's
  figure), ``source`` ("interleaved" | "pytest-benchmark"), ``pytest_median``, ``rounds`` and
  ``data`` (its interleaved per-call times), ``ratio_copy`` / ``ratio_rng32`` (median of per-round
  ratios to the same process's interleaved baseline neighbours) and ``rel_iqr``; the same in process
  CPU time: ``cpu_median``, ``cpu_ratio_copy``, ``cpu_ratio_rng32``;
* ``extra_info["spread"]``: between-process (max - min) / median of the process figures.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

ROW_KEY = ("api", "direction", "device", "dtype", "numel", "mode", "worker")


def row_key(bench: Mapping[str, Any]) -> tuple[Any, ...]:
    info = bench["extra_info"]
    return tuple(info.get(f) for f in ROW_KEY)


def process_entry(bench: Mapping[str, Any], process: int) -> dict[str, Any]:
    """What one process measured for one case."""
    stats, info = bench.get("stats") or {}, bench["extra_info"]
    inter = info.get("interleaved") or {}
    data = inter.get("data") or []
    if data:
        median, source = float(np.median(data)), "interleaved"
    else:
        median, source = float(stats["median"]), "pytest-benchmark"
    return {"process": int(info.get("process", process)), "median": median, "source": source,
            "pytest_median": float(stats["median"]) if stats.get("median") is not None else None,
            "rounds": len(data), "data": [float(v) for v in data],
            "ratio_copy": inter.get("ratio_copy"), "ratio_rng32": inter.get("ratio_rng32"),
            "cpu_median": inter.get("cpu_median"), "cpu_ratio_copy": inter.get("cpu_ratio_copy"),
            "cpu_ratio_rng32": inter.get("cpu_ratio_rng32"),
            "rel_iqr": inter.get("rel_iqr"), "stop": inter.get("stop")}


def pooled_stats(data: Sequence[float], iterations: int) -> dict[str, Any]:
    """pytest-benchmark's field set over pooled rounds (population of all processes)."""
    a = np.asarray(data, dtype=np.float64)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    mean = float(a.mean())
    stddev = float(a.std(ddof=1)) if a.size > 1 else 0.0
    iqr = float(q3 - q1)
    return {"min": float(a.min()), "max": float(a.max()), "mean": mean, "stddev": stddev, "rounds": int(a.size),
            "median": float(med), "iqr": iqr, "q1": float(q1), "q3": float(q3),
            "iqr_outliers": int(np.sum((a < q1 - 1.5 * iqr) | (a > q3 + 1.5 * iqr))),
            "stddev_outliers": int(np.sum(np.abs(a - mean) > stddev)) if stddev else 0,
            "outliers": "", "ld15iqr": float(a[a >= q1 - 1.5 * iqr].min()),
            "hd15iqr": float(a[a <= q3 + 1.5 * iqr].max()), "ops": 1.0 / mean if mean > 0 else math.inf,
            "total": float(a.sum()), "iterations": int(iterations), "data": [float(v) for v in a]}


def spread(values: Sequence[float]) -> float | None:
    """(max - min) / median: how far apart the processes landed (None for one process)."""
    if len(values) < 2:
        return None
    med = statistics.median(values)
    return (max(values) - min(values)) / med if med > 0 else None


def merge_processes(per_process: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per case from the benchmarks of each process (in process order); a case that only some
    processes timed keeps the processes that did."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    pooled: dict[tuple[Any, ...], list[float]] = {}
    for index, benches in enumerate(per_process):
        for bench in benches:
            key = row_key(bench)
            entry = process_entry(bench, index)
            if key not in rows:
                row = {k: v for k, v in bench.items() if k != "extra_info"}
                row["extra_info"] = {k: v for k, v in bench["extra_info"].items()
                                     if k not in ("interleaved", "process")}
                row["extra_info"]["processes"] = []
                rows[key], pooled[key] = row, []
            rows[key]["extra_info"]["processes"].append(entry)
            pooled[key].extend(float(v) for v in (bench.get("stats") or {}).get("data") or [])
    out = []
    for key, row in rows.items():
        procs = row["extra_info"]["processes"]
        medians = [p["median"] for p in procs]
        stats = dict(row.get("stats") or {})
        if pooled[key]:
            stats = pooled_stats(pooled[key], int(stats.get("iterations") or 1))
        stats["median"] = float(statistics.median(medians))
        stats["median_of"] = "processes"
        row["stats"] = stats
        row["extra_info"]["spread"] = spread(medians)
        for base in ("copy", "rng32"):
            ratios = [p[f"ratio_{base}"] for p in procs if p.get(f"ratio_{base}")]
            row["extra_info"][f"ratio_{base}"] = float(statistics.median(ratios)) if ratios else None
        out.append(row)
    return out


def process_values(bench: Mapping[str, Any], normalize: str = "none", clock: str = "wall") -> list[float]:
    """The per-process figures of one row: seconds, or the ratio to the same process's interleaved
    baseline (``normalize`` = "copy" | "rng32"), on the wall clock or in process CPU time
    (``clock`` = "cpu"); processes without that figure are left out."""
    procs = (bench.get("extra_info") or {}).get("processes")
    if not procs:
        return []
    prefix = "cpu_" if clock == "cpu" else ""
    field = f"{prefix}median" if normalize == "none" else f"{prefix}ratio_{normalize}"
    return [float(p[field]) for p in procs if p.get(field)]


def iter_rows(payload: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    return payload.get("benchmarks") or []
