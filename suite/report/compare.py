"""Is NEW slower or faster than OLD? A rank test on the recorded rounds plus a practical threshold.

A ratio of means alone flags noise as change, and a p-value alone flags a 0.1 % shift on a quiet
machine. A benchmark therefore counts as changed only when BOTH hold:

* the two-sided Mann–Whitney U test on the per-round times (``stats.data``) rejects "same
  distribution" at level ``alpha``, and
* the ratio of medians new/old exceeds ``1 + threshold`` (regression) or falls below
  ``1 / (1 + threshold)`` (improvement; symmetric on a log scale, so undoing a regression is an
  improvement of the same size).

How the p-value is computed (numpy only, no scipy):

* both samples >= 8 rounds: normal approximation with tie correction and continuity correction
  (the same as ``scipy.stats.mannwhitneyu(method="asymptotic")``);
* a sample below 8 rounds and no ties: the exact null distribution of U (recursion over counts);
* a sample below 8 rounds with ties: the exact permutation distribution of the midrank sum (a
  subset-sum count over doubled midranks) when that costs at most ``MAX_TIES_WORK`` steps, else refused;
* fewer than ``MIN_ROUNDS`` rounds, or no ``stats.data`` at all: refused with the reason.

The test sees within-run noise only: rounds of one run share its machine state, so a change of load
or clock between two runs can be "significant". The threshold is the guard against that; two quick
back-to-back runs of the same code on a busy 2-core machine differed by up to 30 % in medians.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from suite.runtime.jsonio import ResultFileError

NORMAL_MIN_ROUNDS = 8  # below this in either sample the normal approximation is not used
MIN_ROUNDS = 3  # below this in either sample no two-sided test at alpha <= 0.1 can reject at all
MAX_TIES_WORK = 3e9  # exact test with ties: at most this many array-element updates (a few seconds)

# worker: baselines are timed once in every backend's process, so they repeat per worker
KEY_FIELDS = ("api", "direction", "device", "dtype", "numel", "mode", "worker")


@dataclass(frozen=True)
class UTest:
    """Result of a two-sided Mann–Whitney U test of x against y."""

    u_x: float  # pairs (x_i, y_j) with x_i > y_j, ties counted 1/2 (= R_x - n_x (n_x + 1) / 2)
    u_y: float  # n_x n_y - u_x
    p_value: float
    method: str  # "exact" | "exact-ties" | "normal"


class CannotTest(ValueError):
    """The data cannot support the test (too few rounds, ties without an exact method, no data)."""


def midranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks with ties given their average rank, and the size of every tie group."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks, counts


def _u_statistic(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    ranks, ties = midranks(np.concatenate([x, y]))
    u_x = float(ranks[: x.size].sum() - x.size * (x.size + 1) / 2.0)
    return u_x, ties


def exact_u_distribution(n_x: int, n_y: int) -> np.ndarray:
    """P(U_x = u), u = 0..n_x*n_y, under H0 without ties.

    The number of arrangements with U = u is the coefficient of q^u in the Gaussian binomial
    [n_x + n_y choose m]_q = prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i), m = min(n_x, n_y), n = max;
    each factor keeps the coefficients non-negative, so floating point stays accurate, and the
    cost is O(m^2 n) even for thousands of rounds in the larger sample.
    """
    m, n = sorted((n_x, n_y))
    size = m * n + 1
    poly = np.zeros(size + n + m, dtype=np.float64)
    poly[0] = 1.0
    for i in range(1, m + 1):
        shift = n + i
        poly[shift:] -= poly[:-shift].copy()  # times (1 - q^(n+i))
        for r in range(i):  # divided by (1 - q^i): b[k] = a[k] + b[k-i]
            poly[r::i] = np.cumsum(poly[r::i])
    dist = np.clip(poly[:size], 0.0, None)
    return dist / dist.sum()


def _two_sided(p_low: float, p_high: float) -> float:
    return min(1.0, 2.0 * min(p_low, p_high))


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> UTest:
    """Two-sided Mann–Whitney U test; CannotTest when the samples cannot support it."""
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise CannotTest("rounds contain non-finite values")
    n_x, n_y = xa.size, ya.size
    if min(n_x, n_y) < MIN_ROUNDS:
        raise CannotTest(f"{min(n_x, n_y)} round(s) in one sample; the test needs at least {MIN_ROUNDS}")
    u_x, ties = _u_statistic(xa, ya)
    u_y = n_x * n_y - u_x
    n = n_x + n_y
    if min(n_x, n_y) >= NORMAL_MIN_ROUNDS:
        mean = n_x * n_y / 2.0
        tie_term = float(np.sum(ties.astype(np.float64) ** 3 - ties)) / (n * (n - 1))
        var = n_x * n_y / 12.0 * ((n + 1) - tie_term)
        if var <= 0:  # every value equal: no evidence of any difference
            return UTest(u_x, u_y, 1.0, "normal")
        z = (abs(u_x - mean) - 0.5) / math.sqrt(var)
        p = math.erfc(max(z, 0.0) / math.sqrt(2.0))
        return UTest(u_x, u_y, min(1.0, p), "normal")
    if np.all(ties == 1):
        dist = exact_u_distribution(n_x, n_y)
        k = int(round(u_x))
        return UTest(u_x, u_y, _two_sided(float(dist[: k + 1].sum()), float(dist[k:].sum())), "exact")
    return UTest(u_x, u_y, _exact_with_ties(xa, ya), "exact-ties")


def _exact_with_ties(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided exact p of U with tied values. Under H0 all C(n, m) splits of the pooled midranks are
    equally likely; count the m-subsets of the smaller sample's size by their sum of doubled midranks
    (integers) with a subset-sum recursion. Counts stay below C(n, m) < 1e300 for m < 8, so float64
    holds them; only additions, so no cancellation."""
    small, large = (x, y) if x.size <= y.size else (y, x)
    m, n = small.size, small.size + large.size
    ranks, _ = midranks(np.concatenate([small, large]))
    doubled = np.rint(2 * ranks).astype(np.int64)
    top = int(np.sort(doubled)[-m:].sum())
    if float(n) * m * (top + 1) > MAX_TIES_WORK:
        raise CannotTest(f"tied rounds with {m} < {NORMAL_MIN_ROUNDS} rounds in one run and {n} in all: "
                         "the exact test would take too long")
    ways = np.zeros((m + 1, top + 1))  # ways[k, s]: k-subsets of the elements seen so far with sum s
    ways[0, 0] = 1.0
    for i, v in enumerate(doubled):
        for k in range(min(i + 1, m), 0, -1):  # descending: each element joins a subset at most once
            ways[k, v:] += ways[k - 1, : top + 1 - v]
    dist = ways[m] / ways[m].sum()
    observed = int(doubled[:m].sum())
    # the smaller sample's rank sum; the two-sided p is the same whichever sample is called x
    return _two_sided(float(dist[: observed + 1].sum()), float(dist[observed:].sum()))


# --------------------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Comparison:
    key: tuple[Any, ...]
    label: str
    old_median: float | None
    new_median: float | None
    ratio: float | None  # new / old medians
    p_value: float | None
    method: str  # test used ("exact" | "exact-ties" | "normal"), "—" when none ran
    verdict: str  # regression | improvement | unchanged | no-data | missing-in-old | missing-in-new
    detail: str = ""  # why no test ran


VERDICTS = ("regression", "improvement", "unchanged", "no-data", "missing-in-old", "missing-in-new")


def benchmark_key(bench: dict[str, Any]) -> tuple[Any, ...]:
    info = bench["extra_info"]
    backend = str(info.get("backend") or str(info.get("api", "")).split(":", 1)[0])
    defaults = {"mode": "eager", "worker": backend}
    return tuple(info.get(f) or defaults.get(f) for f in KEY_FIELDS)


def key_label(key: tuple[Any, ...]) -> str:
    api, direction, device, dtype, numel, mode, worker = key
    name = api if mode == "eager" else f"{api} [{mode}]"
    where = "" if str(api).startswith(f"{worker}:") else f" (in {worker})"
    return f"{name}{where} {direction} {device} {dtype} n={numel}"


def _rounds(bench: dict[str, Any]) -> list[float] | None:
    data = (bench.get("stats") or {}).get("data")
    if not isinstance(data, list) or not data:
        return None
    return [float(v) for v in data]


def _median(bench: dict[str, Any]) -> float | None:
    stats = bench.get("stats") or {}
    if isinstance(stats.get("median"), (int, float)):
        return float(stats["median"])
    data = _rounds(bench)
    return float(np.median(data)) if data else None


def index_benchmarks(payload: dict[str, Any], source: Path | str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Benchmarks by key; a key seen twice in one file is a malformed file."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for i, bench in enumerate(payload.get("benchmarks") or []):
        key = benchmark_key(bench)
        if key in out:
            raise ResultFileError(f"{source}: benchmark #{i} repeats {key_label(key)}")
        out[key] = bench
    return out


def judge(old: Sequence[float], new: Sequence[float], *, threshold: float, alpha: float) -> tuple[float, UTest, str]:
    """ratio of medians, the test, and the verdict for two samples of per-round seconds."""
    ratio = float(np.median(new) / np.median(old))
    test = mann_whitney_u(old, new)
    if test.p_value < alpha and ratio > 1.0 + threshold:
        return ratio, test, "regression"
    if test.p_value < alpha and ratio < 1.0 / (1.0 + threshold):
        return ratio, test, "improvement"
    return ratio, test, "unchanged"


def compare_runs(old: dict[str, Any], new: dict[str, Any], *, threshold: float, alpha: float,
                 old_name: str = "OLD", new_name: str = "NEW") -> list[Comparison]:
    """One Comparison per benchmark key present in either run, in a stable order."""
    old_idx = index_benchmarks(old, old_name)
    new_idx = index_benchmarks(new, new_name)
    keys = list(old_idx) + [k for k in new_idx if k not in old_idx]
    keys.sort(key=lambda k: tuple(str(v) if not isinstance(v, int) else f"{v:020d}" for v in k))
    out = []
    for key in keys:
        o, n = old_idx.get(key), new_idx.get(key)
        label = key_label(key)
        om = _median(o) if o else None
        nm = _median(n) if n else None
        ratio = nm / om if om and nm else None
        if o is None or n is None:
            verdict = "missing-in-old" if o is None else "missing-in-new"
            out.append(Comparison(key, label, om, nm, ratio, None, "—", verdict))
            continue
        od, nd = _rounds(o), _rounds(n)
        if od is None or nd is None:
            which = " and ".join(w for w, d in ((old_name, od), (new_name, nd)) if d is None)
            out.append(Comparison(key, label, om, nm, ratio, None, "—", "no-data",
                                  f"no per-round stats.data in {which}"))
            continue
        try:
            ratio, test, verdict = judge(od, nd, threshold=threshold, alpha=alpha)
        except CannotTest as exc:
            out.append(Comparison(key, label, om, nm, ratio, None, "—", "no-data", f"test refused: {exc}"))
            continue
        out.append(Comparison(key, label, float(np.median(od)), float(np.median(nd)), ratio, test.p_value,
                              test.method, verdict))
    return out


def counts(results: Iterable[Comparison]) -> dict[str, int]:
    tally = {v: 0 for v in VERDICTS}
    for r in results:
        tally[r.verdict] += 1
    return tally


def exit_code(results: Iterable[Comparison]) -> int:
    """1 when any benchmark regressed significantly and beyond the threshold, else 0."""
    return 1 if any(r.verdict == "regression" for r in results) else 0
