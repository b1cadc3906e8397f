"""The bounds must hold their stated false-fail probability and still have power."""
import math

import numpy as np
import pytest

from suite.verify.power import table
from suite.verify.stats import (
    binomial_interval,
    binomial_power,
    binomial_sf,
    hoeffding_count_halfwidth,
    hoeffding_halfwidth,
)


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


def test_binomial_power_is_alpha_under_the_null_and_grows_with_the_shift() -> None:
    lo, hi = binomial_interval(400, 0.3, 0.01)
    assert binomial_power(400, 0.3, 0.3, 0.01) == pytest.approx(_binom_tail_mass(400, 0.3, lo, hi))
    assert binomial_power(400, 0.3, 0.3, 0.01) <= 0.01
    assert binomial_power(400, 0.3, 0.35, 0.01) < binomial_power(400, 0.3, 0.4, 0.01)


def test_binomial_sf_exact() -> None:
    assert binomial_sf(10, 0.5, 8) == pytest.approx(sum(math.comb(10, k) for k in (8, 9, 10)) / 1024)
    assert binomial_sf(10, 0.5, 0) == 1.0 and binomial_sf(10, 0.5, 11) == 0.0


def test_hoeffding_count_halfwidth_holds_for_fair_counts() -> None:
    rng = np.random.default_rng(9)
    n, alpha = np.array([50, 500]), 0.05
    width = hoeffding_count_halfwidth(n, alpha)
    k = rng.binomial(n, 0.5, size=(100_000, 2))
    assert np.all(np.mean(np.abs(k - n / 2) >= width, axis=0) <= alpha)


def test_every_statistical_check_has_99_percent_power_at_the_sizes_used() -> None:
    """A smaller input shape or a thinner alpha split would show here (power from exact regions)."""
    rows = table()
    assert {r.check.split(" ")[0] for r in rows} >= {"kept-fraction", "mean", "fresh-mask", "lag", "position", "magnitude"}
    weak = [(r.check, r.alternative, r.power) for r in rows if r.power < 0.99]
    assert not weak, weak
