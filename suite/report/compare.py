"""Is NEW slower or faster than OLD? A test over processes (rounds for old files) plus a practical threshold.

Since result schema 2 every row holds one figure per fresh worker process (suite/bench/aggregate.py),
optionally normalized by the same process's interleaved baseline neighbours (``normalize`` copy |
rng32). On a shared machine whole processes shift together, so the process is the unit of
variance: with at least two processes on each side the test is Welch's t-test on the logs of the
per-process figures, and the ratio is the ratio of their medians. Rows with a single process per side
(schema-1 files) fall back to the Mann–Whitney test on rounds below, which treats rounds as
independent and therefore flags between-run drift: say so, and re-run with several processes.
The default threshold and alpha come from A/A runs on the development machine (DEFAULT_THRESHOLD).

Rounds fallback:

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

NORMALIZE = ("none", "copy", "rng32")
CLOCKS = ("wall", "cpu")
DEFAULT_CLOCK = "cpu"
DEFAULT_NORMALIZE = "copy"
DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.05
"""File-vs-file defaults (3 processes a side, Welch on the per-process figures): the setting that
results/calibration/calibrate.py duet-analyze chose (modes.json "files" "defaults"; a test checks that
the two agree) on the quiet 2-core VM: OLD's 3 processes of one calibration run against NEW's of another,
over clock x normalization x threshold 0.03-0.10 x alpha, the one closest to issue 26's targets (25 %
caught >= 95 % at 2^16 and 2^22, 10 % >= 80 % at 2^22) among those flagging at most 1 unchanged row in
20. The first calibration (issue 15, loaded machine) had chosen the same clock and normalization with a
0.10 threshold, which caps the detection of a 10 % slowdown near one half by construction."""
# What those defaults measure (A/A flag rate, detection per slowdown and size) is not typed in here:
# compare's verdict line reads it from results/calibration/modes.json (suite/report/paired.calibration),
# which results/calibration/calibrate.py duet-analyze writes.

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
    method: str  # test used ("welch-processes" | "exact" | "exact-ties" | "normal"), "—" when none ran
    verdict: str  # regression | improvement | unchanged | no-data | missing-in-old | missing-in-new
    detail: str = ""  # why no test ran
    processes: tuple[int, int] = (0, 0)  # per-process figures on each side (0: a rounds-based comparison)
    spread: float | None = None  # largest between-process (max-min)/median of the two sides


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


def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (regularized incomplete beta, no scipy)."""
    if not math.isfinite(t):
        return 0.0 if t > 0 else 1.0
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2.0, 0.5, x)
    return tail if t > 0 else 1.0 - tail


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) by Lentz's continued fraction (Numerical Recipes 6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return front * h / a


def welch_log(old: Sequence[float], new: Sequence[float]) -> float:
    """Two-sided p of Welch's t-test on log(old) vs log(new) (>= 2 values each); 1.0 when both are constant."""
    lo, ln = np.log(np.asarray(old, dtype=np.float64)), np.log(np.asarray(new, dtype=np.float64))
    if lo.size < 2 or ln.size < 2:
        raise CannotTest("the process test needs >= 2 processes on each side")
    vo, vn = lo.var(ddof=1) / lo.size, ln.var(ddof=1) / ln.size
    diff = float(ln.mean() - lo.mean())
    if vo + vn == 0:
        return 1.0 if diff == 0 else 0.0
    t = diff / math.sqrt(vo + vn)
    df = (vo + vn) ** 2 / ((vo ** 2 / (lo.size - 1) if vo else 0.0) + (vn ** 2 / (ln.size - 1) if vn else 0.0))
    return min(1.0, 2.0 * student_t_sf(abs(t), df))


def judge_processes(old: Sequence[float], new: Sequence[float], *, threshold: float,
                    alpha: float) -> tuple[float, float, str]:
    """Ratio of medians over processes, Welch's p on the logs, and the verdict."""
    ratio = float(np.median(new) / np.median(old))
    p = welch_log(old, new)
    if p < alpha and ratio > 1.0 + threshold:
        return ratio, p, "regression"
    if p < alpha and ratio < 1.0 / (1.0 + threshold):
        return ratio, p, "improvement"
    return ratio, p, "unchanged"


def _spread(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    med = float(np.median(values))
    return (max(values) - min(values)) / med if med > 0 else None


def buffer_sets_of(bench: dict[str, Any]) -> int:
    """Buffer sets a row's interleaved rounds rotated (suite/bench/cases.buffer_sets); rows written before
    the field existed (and rows timed without interleaved rounds) used one."""
    return int((bench.get("extra_info") or {}).get("buffer_sets") or 1)


def _unlike_harness(old: dict[str, Any], new: dict[str, Any], old_name: str, new_name: str) -> str:
    """Why two rows were not measured alike, or "". Why: rotating buffer sets changes what a memory-bound
    row costs (numpy:fast at 2^22 ~19 % slower with 4 sets than with one on the 2-core VM), so a row
    timed before the harness rotated them against one timed after would read as a change of the code."""
    sets_old, sets_new = buffer_sets_of(old), buffer_sets_of(new)
    if sets_old == sets_new:
        return ""
    return (f"not like for like: {old_name} rotated {sets_old} buffer set(s), {new_name} {sets_new} (the harness "
            "changed, suite/bench/cases.BUFFER_SETS_MIN_BYTES); time both with one dropbench version")


def _wanted(key: tuple[Any, ...], apis: Sequence[str]) -> bool:
    return not apis or key[0] in apis


def compare_runs(old: dict[str, Any], new: dict[str, Any], *, threshold: float = DEFAULT_THRESHOLD,
                 alpha: float = DEFAULT_ALPHA, normalize: str = "none", apis: Sequence[str] = (),
                 clock: str = "wall", old_name: str = "OLD", new_name: str = "NEW") -> list[Comparison]:
    """One Comparison per benchmark key present in either run (``apis``: only those API ids), sorted by
    ratio, largest first (rows without a ratio last).

    ``normalize`` copy | rng32 compares each process's median ratio to its own interleaved baseline
    instead of seconds (baseline rows themselves are always compared in seconds). ``clock`` cpu uses
    each process's figures in process CPU time (the time it waited for a core left out), wall the
    wall-clock ones; rows without CPU figures (older files) fall back to wall."""
    from suite.bench.aggregate import process_values  # noqa: PLC0415 - report may read bench's row layout
    from suite.bench.schema import upgrade  # noqa: PLC0415

    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    old_idx = index_benchmarks(upgrade(old), old_name)
    new_idx = index_benchmarks(upgrade(new), new_name)
    keys = [k for k in list(old_idx) + [k for k in new_idx if k not in old_idx] if _wanted(k, apis)]
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
        unlike = _unlike_harness(o, n, old_name, new_name)
        if unlike:
            out.append(Comparison(key, label, om, nm, ratio, None, "—", "no-data", unlike))
            continue
        how = "none" if str(key[0]).startswith("baseline:") else normalize
        ov, nv = process_values(o, how, clock), process_values(n, how, clock)
        if clock == "cpu" and (len(ov) < 2 or len(nv) < 2):
            ov, nv = process_values(o, how), process_values(n, how)
        if len(ov) >= 2 and len(nv) >= 2:
            ratio, p, verdict = judge_processes(ov, nv, threshold=threshold, alpha=alpha)
            spreads = [s for s in (_spread(ov), _spread(nv)) if s is not None]
            out.append(Comparison(key, label, om, nm, ratio, p, "welch-processes", verdict,
                                  processes=(len(ov), len(nv)), spread=max(spreads) if spreads else None))
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
                              test.method, verdict, processes=(len(ov), len(nv))))
    out.sort(key=lambda r: (r.ratio is None, -(r.ratio or 0.0), r.label))
    return out


def counts(results: Iterable[Comparison]) -> dict[str, int]:
    tally = {v: 0 for v in VERDICTS}
    for r in results:
        tally[r.verdict] += 1
    return tally


def exit_code(results: Iterable[Comparison]) -> int:
    """1 when any benchmark regressed significantly and beyond the threshold, else 0."""
    return 1 if any(r.verdict == "regression" for r in results) else 0
