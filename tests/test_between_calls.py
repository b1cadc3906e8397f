"""Unit tests of the between-call, between-seed and spread checks (issue 25): each rejects its fault
and accepts correct masks; the dispersion bounds are rigorous (checked against exact small cases)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from suite.verify import dispersion, independence
from suite.verify.correlation import agreements

RNG = np.random.default_rng(25)


def _fair(shape=(64, 64)) -> np.ndarray:
    return RNG.random(shape) < 0.5


def test_agreements_match_a_direct_count_at_every_shift() -> None:
    a, b = _fair((7, 9)), _fair((7, 9))
    fa, fb = a.ravel(), b.ravel()
    n = fa.size
    shifts = np.arange(-(n - 1), n)
    pairs, agree = agreements(a, b, shifts)
    for d, p, k in zip(shifts, pairs, agree):
        i = np.arange(max(0, -d), min(n, n - d))
        assert p == i.size and k == np.count_nonzero(fa[i] == fb[i + d])
    _, auto = agreements(a, None, np.arange(1, 5))
    assert list(auto) == [np.count_nonzero(fa[:-d] == fa[d:]) for d in range(1, 5)]


def test_masks_independent_catches_a_shifted_copy_and_passes_fresh_masks() -> None:
    a, b = _fair(), _fair()
    assert independence.masks_independent([("a,b", a, b)], 0.5, zero=True).passed
    shifted = np.roll(a.ravel(), 1).reshape(a.shape)  # seed as an offset: the same stream, one element on
    assert not independence.masks_independent([("a,a+1", a, shifted)], 0.5, zero=False).passed
    half = np.concatenate([a.ravel()[a.size // 2:], b.ravel()[: a.size // 2]]).reshape(a.shape)  # half a call on
    outcome = independence.masks_independent([("k,k+1", a, half)], 0.5, zero=False)
    assert not outcome.passed and f"shift {-(a.size // 2)}" in outcome.detail
    assert independence.masks_independent([("same", a, a.copy())], 0.5, zero=False).passed  # shift 0 is fresh-mask's
    assert not independence.masks_independent([("same", a, a.copy())], 0.5, zero=True).passed


def test_calls_dispersion_rejects_fixed_counts_and_wild_counts() -> None:
    masks = [_fair((128, 128)) for _ in range(10)]
    assert dispersion.calls_dispersion(masks, 0.5).passed
    fixed = []
    for _ in range(10):
        m = np.zeros(128 * 128, dtype=bool)
        m[RNG.permutation(m.size)[: m.size // 2]] = True
        fixed.append(m.reshape(128, 128))
    assert not dispersion.calls_dispersion(fixed, 0.5).passed
    wild = [RNG.random((128, 128)) < (0.4 if i % 2 else 0.6) for i in range(10)]
    assert not dispersion.calls_dispersion(wild, 0.5).passed


def test_groups_dispersion_rejects_rows_that_vary_and_rows_that_are_fixed() -> None:
    assert dispersion.groups_dispersion(_fair((256, 256)), 0.5).passed
    rows = np.where(np.arange(256) % 2 == 0, 0.6, 0.4)[:, None]
    assert not dispersion.groups_dispersion(RNG.random((256, 256)) < rows, 0.5).passed
    stratified = np.argsort(RNG.random((256, 256)), axis=1) < 128  # exactly half of every row
    assert not dispersion.groups_dispersion(stratified, 0.5).passed


@pytest.mark.parametrize("n, count", [(8, 5), (20, 12), (40, 3), (64, 6)])
def test_dispersion_bounds_hold_exactly_for_small_cases(n: int, count: int) -> None:
    """Exact distribution of S by convolution: P(S <= lo) and P(S >= hi) each <= alpha/2."""
    alpha = 0.01
    lo, hi = dispersion.bounds([n] * count, 0.5, alpha)
    pmf = np.array([math.comb(n, k) for k in range(n + 1)], dtype=float) / 2**n
    z = (4 * (np.arange(n + 1) - n // 2) ** 2).astype(int)  # n * Z, an integer for even n
    dist = np.zeros(1)
    for _ in range(count):
        nxt = np.zeros(dist.size + z.max())
        for zi, pi in zip(z, pmf):
            nxt[zi:zi + dist.size] += dist * pi
        dist = nxt
    s = np.arange(dist.size) / n
    assert dist[s <= lo].sum() <= alpha / 2 and dist[s >= hi].sum() <= alpha / 2
    assert lo > 0 or count < 5  # the lower tail has power once there are a few counts


def test_the_half_only_checks_refuse_other_keep() -> None:
    with pytest.raises(ValueError):
        independence.masks_independent([("a,b", _fair(), _fair())], 0.7, zero=True)
    with pytest.raises(ValueError):
        dispersion.calls_dispersion([_fair()] * 4, 0.7)
