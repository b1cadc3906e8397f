"""Binomial spread of kept counts, in both directions: too regular and too irregular.

Independent counts K_j ~ Binomial(n_j, p) give S = sum_j (K_j - n_j p)^2 / (n_j p q), a
dispersion (chi-square-like) statistic with E S = number of counts. A dropout that keeps
exactly round(keep n) elements every call has S ~ 0 across calls; one whose keep rate varies
from row to row around the right mean has S far above it across rows. The other checks look
at one count at a time (kept-fraction) or at the mean (position), and see neither.

Tails: Chernoff bounds with the *exact* moment generating function of each term (from the
binomial pmf), so rigorous at any n: P(S >= t) <= exp(-l t) prod_j M_j(l) for l > 0 and
P(S <= t) <= exp(l t) prod_j M_j(-l). Each tail gets half of the test's alpha; the best l
of a fixed grid is taken (any l gives a valid bound, so choosing among them keeps it valid).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from suite.verify.checks import MIN_SLAB, Outcome, _require_half, _split, _worst
from suite.verify.stats import ALPHA_PER_CHECK, _binomial_log_pmf

UP = np.linspace(0.02, 0.48, 24)
"""Chernoff parameters of the upper tail (the terms are ~chi-square(1): their MGF needs l < 1/2)."""
DOWN = np.geomspace(1e-2, 1e6, 24)
"""Chernoff parameters of the lower tail (any l > 0)."""
BLOCK = 64
"""Contiguous blocks of the flattened mask (every layout, also a 1-d one) as one more grouping."""


Z_CUT = 4000.0
"""Terms with Z > Z_CUT are not summed but bounded: pmf(k) <= exp(-2 pq Z) (Hoeffding), so together
they add at most (n + 1) exp(-(2pq - l) Z_CUT) to M(l), which is added (rigorous, and ~1e-30 here)."""


@lru_cache(maxsize=256)
def _log_mgf(n: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    """log E exp(+-l Z) over the UP and DOWN grids, Z = (K - np)^2 / (npq), K ~ Binomial(n, p); exact
    over Z <= Z_CUT, the rest bounded from above (so the Chernoff bounds stay valid)."""
    log_pmf = _binomial_log_pmf(n, p)
    log_pmf = log_pmf - _logsumexp(log_pmf[None, :])[0]
    z = (np.arange(n + 1) - n * p) ** 2 / (n * p * (1 - p))
    rate = 2 * p * (1 - p)
    inside = z <= Z_CUT if UP[-1] < rate else np.ones_like(z, dtype=bool)
    log_pmf, z = log_pmf[inside], z[inside]
    log_rest = math.log(n + 1) - (rate - np.minimum(UP, rate)) * Z_CUT if not inside.all() else np.full_like(UP, -np.inf)
    up = np.logaddexp(_logsumexp(log_pmf + UP[:, None] * z), log_rest)
    rest_down = math.log(n + 1) - rate * Z_CUT if not inside.all() else -np.inf
    down = np.logaddexp(_logsumexp(log_pmf - DOWN[:, None] * z), rest_down)
    return up, down


def _logsumexp(rows: np.ndarray) -> np.ndarray:
    top = rows.max(axis=1)
    shifted = rows - top[:, None]
    small = shifted < -700  # exp underflows to 0 anyway: skip the (slow) subnormal path
    return top + np.log(np.exp(np.where(small, -700.0, shifted)).sum(axis=1, where=~small))


def bounds(sizes: list[int], p: float, alpha: float) -> tuple[float, float]:
    """(lo, hi) with P(S <= lo) <= alpha/2 and P(S >= hi) <= alpha/2 for counts of these sizes."""
    up = np.zeros_like(UP)
    down = np.zeros_like(DOWN)
    for n, times in zip(*np.unique(np.asarray(sizes), return_counts=True)):
        u, d = _log_mgf(int(n), p)
        up += times * u
        down += times * d
    log_half = math.log(alpha / 2)
    hi = float(np.min((up - log_half) / UP))
    lo = float(np.max((log_half - down) / DOWN))
    return lo, hi


def _test(name: str, sizes: list[int], kept: list[int], keep: float, alpha: float) -> tuple[float, str, bool]:
    """One dispersion test as a sub-test of :func:`checks._worst`: (excess, detail, failed)."""
    n, k = np.asarray(sizes, dtype=np.float64), np.asarray(kept, dtype=np.float64)
    s = float(np.sum((k - n * keep) ** 2 / (n * keep * (1 - keep))))
    lo, hi = bounds(list(map(int, sizes)), keep, alpha)
    m = float(len(sizes))
    excess = max((s - m) / max(hi - m, 1e-12), (m - s) / max(m - lo, 1e-12))
    detail = f"{name}: dispersion {s:.4g} over {len(sizes)} counts (expected {len(sizes)}), accepted ({lo:.4g}, {hi:.4g})"
    return excess, detail, not lo < s < hi


def _usable(keep: float, counts: int) -> bool:
    return 0.0 < keep < 1.0 and counts >= 2


def calls_dispersion(masks: list[np.ndarray], keep: float, alpha: float = ALPHA_PER_CHECK) -> Outcome:
    """The kept counts of successive calls spread as independent Binomial(n, 1/2) counts do.

    Compared in pairs (calls 1-2, 3-4, ...) so that only the spread is tested, not the level (the
    kept-fraction check's job): at keep 1/2, K_a + (n - K_b) ~ Binomial(2n, 1/2) exactly for two
    independent calls, whatever their common mean would otherwise add.
    """
    _require_half(keep)
    sizes = [int(np.size(m)) for m in masks]
    pairs = [(a, a + 1) for a in range(0, len(masks) - 1, 2) if sizes[a] == sizes[a + 1]]
    if len(pairs) < 2:
        return Outcome(True, "fewer than two pairs of calls: nothing to compare")
    kept = [int(np.count_nonzero(masks[a])) + sizes[b] - int(np.count_nonzero(masks[b])) for a, b in pairs]
    counts = ", ".join(str(int(np.count_nonzero(m))) for m in masks)
    passed, worst = _worst([_test(f"{len(masks)} calls kept {counts}: paired", [2 * sizes[a] for a, _ in pairs],
                                  kept, 0.5, alpha)])
    return Outcome(passed, f"{worst} (alpha={alpha:g})")


def groupings(mask: np.ndarray) -> list[tuple[str, list[int], list[int]]]:
    """(name, sizes, kept) of every grouping: the indices of each axis (slabs of >= MIN_SLAB elements),
    and contiguous blocks of BLOCK elements of the flattened order."""
    m = np.asarray(mask, dtype=bool)
    out = []
    for axis in range(m.ndim):
        dim, size = m.shape[axis], m.size // max(m.shape[axis], 1)
        if dim > 1 and size >= MIN_SLAB:
            per = np.count_nonzero(m, axis=tuple(i for i in range(m.ndim) if i != axis))
            out.append((f"axis {axis} ({dim} slabs of {size})", [size] * dim, [int(c) for c in per]))
    flat = m.ravel()
    blocks = flat.size // BLOCK
    if blocks > 1:
        per = np.count_nonzero(flat[: blocks * BLOCK].reshape(blocks, BLOCK), axis=1)
        out.append((f"flattened ({blocks} blocks of {BLOCK})", [BLOCK] * blocks, [int(c) for c in per]))
    return out


def groups_dispersion(mask: np.ndarray, keep: float, alpha: float = ALPHA_PER_CHECK) -> Outcome:
    """Within one call, the kept counts of the rows, the columns, ... (every axis) and of blocks of the
    flattened order spread as independent Binomial counts do; alpha split evenly over the groupings."""
    found = groupings(mask)
    if not _usable(keep, len(found) + 1):
        return Outcome(True, "no grouping of two or more counts")
    a = _split(alpha, len(found))
    passed, worst = _worst([_test(name, sizes, kept, keep, a) for name, sizes, kept in found])
    return Outcome(passed, f"{'worst' if passed else 'FAILED'}: {worst} ({len(found)} groupings, alpha={alpha:g})")
