"""The bounds must hold their stated false-fail probability and still have power."""
import math

import numpy as np
import pytest

from suite.verify.stats import binomial_interval, hoeffding_halfwidth


def _binom_tail_mass(n: int, p: float, lo: int, hi: int) -> float:
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    return sum(pmf[:lo]) + sum(pmf[hi + 1:])


@pytest.mark.parametrize("n, p, alpha", [(50, 0.5, 0.05), (200, 0.1, 1e-3), (300, 0.9, 1e-6)])
def test_binomial_interval_is_exact_and_tight(n, p, alpha) -> None:
    lo, hi = binomial_interval(n, p, alpha)
    assert _binom_tail_mass(n, p, lo, hi) <= alpha
    # tight: widening lost mass on either side would exceed alpha/2 on that side
    assert _binom_tail_mass(n, p, lo + 1, hi) > alpha / 2 or _binom_tail_mass(n, p, lo, hi - 1) > alpha / 2


def test_binomial_interval_degenerate_probabilities() -> None:
    assert binomial_interval(100, 0.0) == (0, 0)
    assert binomial_interval(100, 1.0) == (100, 100)


def test_empirical_false_fail_rate_matches_alpha() -> None:
    """Simulated correct masks fall outside the region at most at the stated rate."""
    rng = np.random.default_rng(3)
    alpha, n, trials = 0.01, 400, 200_000
    k = rng.binomial(n, 0.3, size=trials)
    lo, hi = binomial_interval(n, 0.3, alpha)
    rate = np.mean((k < lo) | (k > hi))
    # 6 sigma of the simulation itself above alpha
    assert rate <= alpha + 6 * math.sqrt(alpha / trials)


def test_hoeffding_halfwidth_formula() -> None:
    ranges = np.full(100, 2.0)
    assert hoeffding_halfwidth(ranges, 0.01) == pytest.approx(math.sqrt(400 * math.log(200) / 2))
