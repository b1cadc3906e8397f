"""The power of each statistical check against a named alternative, at the sizes verify uses.

Computed exactly from the same acceptance regions (:func:`suite.verify.stats.binomial_power`)
so that the README's figures and the size choices can be checked by a test: shrinking
an input shape or splitting alpha further shows up as power below 99 %.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from suite.verify import checks, dispersion, independence
from suite.verify.conformance import DEFAULT_SHAPE, LAYOUT_GROUPS, make_inputs
from suite.verify.stats import (
    ALPHA_PER_CHECK,
    binomial_power,
    binomial_sf,
    hoeffding_count_halfwidth,
    hoeffding_halfwidth,
)

N = int(np.prod(DEFAULT_SHAPE))


@dataclass(frozen=True)
class Power:
    check: str
    alternative: str
    power: float


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def table() -> list[Power]:
    """One row per statistical check family (element-wise default shape unless said)."""
    a = ALPHA_PER_CHECK
    offsets = N // 2
    # offsets: a mask whose 90% repeats after P <= n/2 elements: >= n/2 pairs, 90% agree for sure,
    # the other 10% as fair coins; fails when agreement - pairs/2 exceeds the Hoeffding width
    pairs = N - offsets
    width = float(hoeffding_count_halfwidth(pairs, a / 2 / offsets))
    random_pairs = pairs // 10
    offset_power = binomial_sf(random_pairs, 0.5, math.floor(width + pairs / 2 - (pairs - random_pairs)) + 1)
    # mean: scale 1/rate at rate 0.1 (the ScaleByRate fault), normal approximation of sum(y)
    x = make_inputs(DEFAULT_SHAPE, "float32")[0].astype(np.float64)
    keep = 0.9
    shift = (keep * 10.0 - 1.0) * x.sum()
    sd = math.sqrt(float(np.sum((x * 10.0) ** 2)) * keep * (1 - keep))
    mean_width = hoeffding_halfwidth(np.abs(x) / keep, a)
    mean_power = _normal_sf((mean_width - abs(shift)) / sd)
    return [*_within(a, offset_power, mean_power), *_between(a)]


def _repeat_power(pairs: int, repeated: int, alpha: float) -> float:
    """P(caught) when ``repeated`` of the ``pairs`` pairs at one shift agree for sure, the rest as fair
    coins, against the Hoeffding width of that shift at ``alpha`` (exact binomial tail)."""
    width = float(hoeffding_count_halfwidth(pairs, alpha))
    return binomial_sf(pairs - repeated, 0.5, math.floor(width + pairs / 2 - repeated) + 1)


def _between(a: float) -> list[Power]:
    """The between-call, between-seed and spread families (issue 25), at keep 0.5."""
    calls, seeds = independence.CHAIN_CALLS - 1, len(independence.SEED_PAIRS)
    shifts = N  # |d| <= n/2: n + 1 shifts, n without 0
    worst_pairs = N - N // 2
    cross_call = _repeat_power(worst_pairs, 3 * N // 100, a / calls / shifts)
    cross_seed = _repeat_power(worst_pairs, 3 * N // 100, a / seeds / (shifts + 1))
    lo, _ = dispersion.bounds([2 * N] * (independence.CHAIN_CALLS // 2), 0.5, a)
    rows, cols = DEFAULT_SHAPE
    groupings = len(dispersion.groupings(np.zeros(DEFAULT_SHAPE, dtype=bool)))
    _, hi = dispersion.bounds([cols] * rows, 0.5, a / groupings)
    mu = 0.05 * cols / math.sqrt(cols / 4)  # rows keeping 0.5 +- 0.05: each (c - m/2)/sd ~ N(+-mu, ~1)
    mean, var = rows * (1 + mu**2), rows * (2 + 4 * mu**2)
    return [
        Power("cross-call", f"3 % of call k+1's mask repeats call k's at one shift (worst: |shift| = n/2, {calls} pairs)",
              cross_call),
        Power("cross-seed", "3 % of seed s+1's mask repeats seed s's at one shift (an offset seed repeats all of it)",
              cross_seed),
        Power("call-dispersion", "every call keeps exactly round(keep*n) elements (dispersion 0 against a bound "
              f"{lo:.2g} > 0)", 1.0 if lo > 0 else 0.0),
        Power("dispersion", "rows alternately keep 0.55 and 0.45 (the right mean; normal approximation)",
              _normal_sf((hi - mean) / math.sqrt(var))),
    ]


def _within(a: float, offset_power: float, mean_power: float) -> list[Power]:
    """The families of one call (issue 14 and before)."""
    rows, cols = DEFAULT_SHAPE
    lag_tests = sum(min(checks.LAGS, d - 1) for d in DEFAULT_SHAPE)
    coarse = checks.POSITION_BLOCKS * len(DEFAULT_SHAPE)
    fine = rows + cols
    return [
        Power("kept-fraction", f"rate 0.5 kept with 0.483 instead of 0.5 ({N} elements)", binomial_power(N, 0.5, 0.483, a)),
        Power("kept-fraction (groups)", f"rate 0.5 groups kept with 0.43 ({LAYOUT_GROUPS} groups)",
              binomial_power(LAYOUT_GROUPS, 0.5, 0.43, a)),
        Power("mean", "kept values scaled by 1/rate instead of 1/keep at rate 0.1 (normal approximation)", mean_power),
        Power("fresh-mask", "two calls agree on 52% of positions instead of 50% (keep 0.5)", binomial_power(N, 0.5, 0.52, a)),
        Power("lag", "neighbours at one lag <= 4 along one axis agree 52% instead of 50%",
              binomial_power(N - cols, 0.5, 0.52, a / 2 / lag_tests)),
        Power("lag (offsets)", "the mask repeats (90% of it) after any P <= n/2 elements", offset_power),
        Power("position", "keep drifts linearly by -0.05..+0.05 along one axis (end block off by 0.0375)",
              binomial_power(N // checks.POSITION_BLOCKS, 0.5, 0.5375, a / 2 / coarse)),
        Power("position (one row)", "one row or column keeps 0.9 instead of 0.5",
              binomial_power(cols, 0.5, 0.9, a / 2 / fine)),
        Power("magnitude", "one quarter of |x| keeps 0.55 instead of 0.5",
              binomial_power(N // checks.MAGNITUDE_BINS, 0.5, 0.55, a / checks.MAGNITUDE_BINS)),
    ]
