"""Exact bounds for the statistical checks, each derived from a stated false-fail probability.

A correct adapter fails a statistical check with probability at most ``ALPHA_PER_CHECK``.
A whole ``dropbench verify`` run performs a few hundred such checks, so by the union
bound its false-fail probability is at most (number of checks) x ALPHA_PER_CHECK, which
``verify`` prints; with 2.5e-10 per check it stays below 1e-6 for up to 4000 checks (36 APIs
ran about 1250 with the between-call, seed and spread families; 1e-9 had run out at 990).
Frameworks are seeded where the API allows, so a given run is also reproducible.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

ALPHA_PER_CHECK = 2.5e-10


@lru_cache(maxsize=4096)  # the independence checks ask for the same few (n, p, alpha) many times
def binomial_interval(n: int, p: float, alpha: float = ALPHA_PER_CHECK) -> tuple[int, int]:
    """Acceptance region [lo, hi] for K ~ Binomial(n, p): P(K < lo) + P(K > hi) <= alpha.

    Exact: the log-pmf is built by the recurrence pmf(k+1)/pmf(k) = (n-k)/(k+1) * p/(1-p),
    then each tail gets alpha/2.
    """
    if n <= 0:
        return 0, 0
    if p <= 0.0:
        return 0, 0
    if p >= 1.0:
        return n, n
    k = np.arange(n, dtype=np.float64)
    steps = np.log((n - k) / (k + 1)) + math.log(p / (1 - p))
    log_pmf = np.concatenate(([n * math.log1p(-p)], n * math.log1p(-p) + np.cumsum(steps)))
    log_pmf -= log_pmf.max()
    pmf = np.exp(log_pmf)
    pmf /= pmf.sum()
    cdf = np.cumsum(pmf)
    sf = np.cumsum(pmf[::-1])[::-1]  # sf[k] = P(K >= k)
    half = alpha / 2
    # lo: smallest k with P(K < k) <= half  <=>  cdf[k-1] <= half
    below = np.nonzero(cdf <= half)[0]
    lo = int(below[-1] + 1) if below.size else 0
    # hi: largest k with P(K > k) <= half  <=>  sf[k+1] <= half
    above = np.nonzero(sf <= half)[0]
    hi = int(above[0] - 1) if above.size else n
    return lo, hi


def hoeffding_halfwidth(ranges: np.ndarray, alpha: float = ALPHA_PER_CHECK) -> float:
    """t with P(|S - E S| >= t) <= alpha for S a sum of independent terms in [0, ranges_i].

    Hoeffding: P(|S - ES| >= t) <= 2 exp(-2 t^2 / sum(range_i^2)).
    """
    total = float(np.sum(np.square(ranges, dtype=np.float64)))
    return math.sqrt(total * math.log(2 / alpha) / 2)


def binomial_power(n: int, p0: float, p1: float, alpha: float = ALPHA_PER_CHECK) -> float:
    """P(K outside the level-alpha region of Binomial(n, p0)) when K ~ Binomial(n, p1): the test's power.

    Exact (the same log-pmf recurrence), so the README's power figures are computed, not guessed.
    """
    lo, hi = binomial_interval(n, p0, alpha)
    log_pmf = _binomial_log_pmf(n, p1)
    pmf = np.exp(log_pmf - log_pmf.max())
    pmf /= pmf.sum()
    return float(pmf[:lo].sum() + pmf[hi + 1:].sum())


def binomial_sf(n: int, p: float, k: int) -> float:
    """P(K >= k) for K ~ Binomial(n, p), exact."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    log_pmf = _binomial_log_pmf(n, p)
    pmf = np.exp(log_pmf - log_pmf.max())
    return float(pmf[k:].sum() / pmf.sum())


def _binomial_log_pmf(n: int, p: float) -> np.ndarray:
    k = np.arange(n, dtype=np.float64)
    steps = np.log((n - k) / (k + 1)) + math.log(p / (1 - p))
    return np.concatenate(([n * math.log1p(-p)], n * math.log1p(-p) + np.cumsum(steps)))


def hoeffding_count_halfwidth(n: np.ndarray | int, alpha: float) -> np.ndarray:
    """t with P(|K - n p| >= t) <= alpha for K ~ Binomial(n, p), any p: Hoeffding, vectorized over n.

    Used where thousands of counts with different n are tested at once (every offset of the
    flattened mask): a rigorous bound without one exact interval per n; slightly conservative.
    """
    return np.sqrt(np.asarray(n, dtype=np.float64) * math.log(2 / alpha) / 2)
