"""The statistical checks fail a correct backend at (at most) their stated rate, and catch the faults.

The production bounds use alpha=1e-9, far too small to observe. The same bound-building
code is exercised here at alpha=0.01 with small N over many seeds of the NumPy reference,
so the measured false-fail rate can be compared with the stated one.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from backends.numpy_backend import NumpyBackend
from suite.spec import DropoutSpec
from suite.verify import checks
from tests.meta.plugins import MaskReused, RateKeepSwapped, ScaleByRate

ALPHA, SEEDS, SHAPE = 0.01, 3000, (16, 16)
X = np.random.default_rng(5).uniform(0.5, 2.0, size=SHAPE).astype(np.float32)


def _false_fail_rate(check, rate: float) -> float:
    backend, keep = NumpyBackend(), 1 - rate
    fails = 0
    for seed in range(SEEDS):
        y = backend.forward(X, DropoutSpec(rate=rate, seed=seed), api="reference")
        fails += not check(y, keep).passed
    return fails / SEEDS


def _upper(rate: float) -> float:
    """Stated alpha plus 5 standard errors of the simulation (the test's own false-fail < 1e-6)."""
    return rate + 5 * math.sqrt(rate * (1 - rate) / SEEDS)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_kept_fraction_false_fail_rate(rate: float) -> None:
    observed = _false_fail_rate(lambda y, keep: checks.kept_fraction(checks.kept_mask(y), keep, ALPHA), rate)
    assert observed <= _upper(ALPHA), observed


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_mean_false_fail_rate(rate: float) -> None:
    observed = _false_fail_rate(lambda y, keep: checks.mean_preserved(X, y, keep, (), ALPHA), rate)
    assert observed <= _upper(ALPHA), observed


def test_fresh_mask_false_fail_rate() -> None:
    backend, fails = NumpyBackend(), 0
    for seed in range(SEEDS):
        first = checks.kept_mask(backend.forward(X, DropoutSpec(rate=0.5, seed=seed), api="reference"))
        second = checks.kept_mask(backend.forward(X, DropoutSpec(rate=0.5), api="reference"))
        fails += not checks.independent_masks(first, second, 0.5, ALPHA).passed
    assert fails / SEEDS <= _upper(ALPHA)


@pytest.mark.parametrize(
    "plugin, rate, check",
    [
        (RateKeepSwapped, 0.1, lambda x, y, y2, keep: checks.kept_fraction(checks.kept_mask(y), keep, ALPHA)),
        (ScaleByRate, 0.1, lambda x, y, y2, keep: checks.mean_preserved(x, y, keep, (), ALPHA)),
        (MaskReused, 0.5, lambda x, y, y2, keep: checks.independent_masks(checks.kept_mask(y), checks.kept_mask(y2), keep, ALPHA)),
    ],
)
def test_power_against_faults(plugin, rate: float, check) -> None:
    """At the same small N, each statistical check catches its fault in at least 99% of seeds."""
    caught = 0
    for seed in range(300):
        backend = plugin()
        y = backend.forward(X, DropoutSpec(rate=rate, seed=seed), api="dropout")
        y2 = backend.forward(X, DropoutSpec(rate=rate), api="dropout")
        caught += not check(X, y, y2, 1 - rate).passed
    assert caught / 300 >= 0.99, caught
