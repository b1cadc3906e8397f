"""Stability diagnostics of a row and a machine-noise figure of a run, in the spirit of ``pyperf check``.

pyperf warns when the standard deviation exceeds 10 % of the mean and when the minimum or maximum
lies more than 50 % from the mean; torch.utils.benchmark stops on IQR/median. Here, per row (its
interleaved per-call times, process by process; pytest-benchmark's rounds for a schema-1 row):

* ``rel_iqr``: median over processes of IQR/median within the process;
* ``cv``: median over processes of stdev/mean within the process;
* ``min_ratio`` / ``max_ratio``: pooled minimum and maximum over the row's median;
* ``spread``: (max - min)/median of the per-process medians (suite/bench/aggregate.py);
* ``rounds``: interleaved rounds over all processes.

A row is *unstable* when cv > 10 %, min < 0.5 x or max > 1.5 x the median, or the processes
differ by more than :data:`SPREAD_LIMIT`; the reasons are listed. The machine-noise figure of a run
is the median of those figures over its baseline rows (copy and rng32 do the same work every
time, so whatever they vary by is the machine).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

CV_LIMIT = 0.10
MIN_LIMIT = 0.5
MAX_LIMIT = 1.5
SPREAD_LIMIT = 0.20


@dataclass(frozen=True)
class Stability:
    rounds: int
    rel_iqr: float | None
    cv: float | None
    min_ratio: float | None
    max_ratio: float | None
    spread: float | None
    reasons: tuple[str, ...]

    @property
    def unstable(self) -> bool:
        return bool(self.reasons)


def _within(data: Sequence[float]) -> tuple[float | None, float | None]:
    if len(data) < 2:
        return None, None
    a = np.asarray(data, dtype=np.float64)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return float((q3 - q1) / med), float(a.std(ddof=1) / a.mean())


def row_samples(bench: Mapping[str, Any]) -> list[list[float]]:
    """Per-process per-call times of a row (interleaved), else its pytest-benchmark rounds as one sample."""
    procs = (bench.get("extra_info") or {}).get("processes") or []
    samples = [list(p["data"]) for p in procs if p.get("data")]
    if samples:
        return samples
    data = (bench.get("stats") or {}).get("data")
    return [list(data)] if data else []


def diagnose(bench: Mapping[str, Any]) -> Stability:
    samples = row_samples(bench)
    median = (bench.get("stats") or {}).get("median")
    spread = (bench.get("extra_info") or {}).get("spread")
    within = [_within(s) for s in samples]
    iqrs = [w[0] for w in within if w[0] is not None]
    cvs = [w[1] for w in within if w[1] is not None]
    pooled = [v for s in samples for v in s]
    rel_iqr = statistics.median(iqrs) if iqrs else None
    cv = statistics.median(cvs) if cvs else None
    lo = min(pooled) / median if pooled and median else None
    hi = max(pooled) / median if pooled and median else None
    reasons = []
    if cv is not None and cv > CV_LIMIT:
        reasons.append(f"stdev {cv:.0%} of mean")
    if lo is not None and lo < MIN_LIMIT:
        reasons.append(f"min {lo:.2f}x median")
    if hi is not None and hi > MAX_LIMIT:
        reasons.append(f"max {hi:.2f}x median")
    if spread is not None and spread > SPREAD_LIMIT:
        reasons.append(f"processes {spread:.0%} apart")
    return Stability(sum(len(s) for s in samples), rel_iqr, cv, lo, hi, spread, tuple(reasons))


def machine_noise(benchmarks: Sequence[Mapping[str, Any]]) -> dict[str, float | int | None]:
    """Median over the baseline rows of within-process rel IQR and between-process spread."""
    rows = [diagnose(b) for b in benchmarks if (b.get("extra_info") or {}).get("backend") == "baseline"]
    iqrs = [r.rel_iqr for r in rows if r.rel_iqr is not None]
    spreads = [r.spread for r in rows if r.spread is not None]
    return {"baseline_rows": len(rows), "rel_iqr": statistics.median(iqrs) if iqrs else None,
            "spread": statistics.median(spreads) if spreads else None,
            "unstable_rows": sum(r.unstable for r in rows)}


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}"
