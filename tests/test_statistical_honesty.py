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
from suite.verify import checks, dispersion, independence
from suite.verify.conformance import DEFAULT_SHAPE, make_inputs
from tests.meta import plugins
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


# -- issue 14: subtle faults, at the production sizes and alpha, over 200 seeds --------------------

POWER_SEEDS = range(200)
X_PROD = make_inputs(DEFAULT_SHAPE, "float32")[0]
X_PROD16 = make_inputs(DEFAULT_SHAPE, "float16")[0]


def _lag(x, y, keep):
    return checks.lag_agreement(checks.kept_mask(y), keep)


def _position(x, y, keep):
    return checks.position_uniform(checks.kept_mask(y), keep)


def _values(x, y, keep):
    return checks.scaled_values(x, y, 1 / keep)


def _dtype(x, y, keep):
    return checks.dtype_kept(str(x.dtype), [str(y.dtype)])


# fault -> (the check meant to catch it, input): each run at rate 0.5 with seed s, alpha 1e-9
SUBTLE = {
    "NeighboursShareDraw": (_lag, X_PROD),
    "PeriodicMask": (_lag, X_PROD),  # repeats every 3000 elements: not a power of two
    "KeepDrifts": (_position, X_PROD),
    "PositiveOnly": (_values, X_PROD),
    "PromotesFloat16": (_dtype, X_PROD16),
    "Hidden16Groups": (_lag, X_PROD),
}
RATE_HALF_CHECKS = (  # what the plan runs on one rate-0.5 call of an element-wise API (statistical ones)
    lambda x, y, keep: checks.kept_fraction(checks.kept_mask(y), keep),
    lambda x, y, keep: checks.mean_preserved(x, y, keep),
    _lag, _position,
    lambda x, y, keep: checks.magnitude_uniform(x, checks.kept_mask(y), keep),
)


@pytest.mark.parametrize("fault", sorted(SUBTLE))
def test_subtle_fault_is_caught_in_99_percent_of_seeds(fault: str) -> None:
    """Measured power >= 99% at alpha=1e-9 and the production shape (each fault's own check)."""
    check, x = SUBTLE[fault]
    caught = 0
    for seed in POWER_SEEDS:
        y = getattr(plugins, fault)().forward(x.copy(), DropoutSpec(rate=0.5, seed=seed, dtype=str(x.dtype)), api="dropout")
        caught += not check(x, y, 0.5).passed
    assert caught >= 0.99 * len(POWER_SEEDS), f"{fault}: caught in {caught}/{len(POWER_SEEDS)} seeds"


def test_correct_plugin_passes_the_same_seeds() -> None:
    """The correct plugin on the same 200 seeds fails none of the 5 statistical checks of a rate-0.5 call:
    each fails falsely with probability <= 1e-9, so this test fails falsely with <= 200*5*1e-9 = 1e-6."""
    failures = []
    for seed in POWER_SEEDS:
        y = plugins.CorrectDropout().forward(X_PROD.copy(), DropoutSpec(rate=0.5, seed=seed), api="dropout")
        failures += [(seed, o.detail) for o in (c(X_PROD, y, 0.5) for c in RATE_HALF_CHECKS) if not o.passed]
    assert not failures, failures[:3]


SMALL = np.random.default_rng(7).uniform(-2, 2, size=(32, 32)).astype(np.float32)


@pytest.mark.parametrize("name, check", [
    ("lag", lambda m: checks.lag_agreement(m, 0.5, ALPHA)),
    ("position", lambda m: checks.position_uniform(m, 0.5, ALPHA)),
    ("magnitude", lambda m: checks.magnitude_uniform(SMALL, m, 0.5, ALPHA)),
])
def test_independence_false_fail_rate(name: str, check) -> None:
    """At alpha=0.01 on a small shape, the new checks fail correct masks at most at the stated rate
    (they are Bonferroni unions, so well below it)."""
    rng = np.random.default_rng(11)
    fails = sum(not check(rng.random(SMALL.shape) < 0.5).passed for _ in range(SEEDS))
    assert fails / SEEDS <= _upper(ALPHA), (name, fails)


# -- issue 25: between calls, between seeds, spread of counts: 200 seeds at the production sizes ----

CHAIN = independence.CHAIN_CALLS


def _chain(backend, seed: int) -> list[np.ndarray]:
    """CHAIN_CALLS masks as the plan draws them: one seeded call, the rest continue the stream."""
    masks = []
    for i in range(CHAIN):
        spec = DropoutSpec(rate=0.5, seed=seed if i == 0 else None)
        masks.append(checks.kept_mask(backend.forward(X_PROD.copy(), spec, api="dropout")))
    return masks


def _seeds(backend, seed: int) -> list[np.ndarray]:
    return [checks.kept_mask(backend.forward(X_PROD.copy(), DropoutSpec(rate=0.5, seed=seed + d), api="dropout"))
            for d in independence.SEED_OFFSETS]


def _cross_call(backend, seed):
    m = _chain(backend, seed)
    return independence.masks_independent([(f"{i}", m[i], m[i + 1]) for i in range(CHAIN - 1)], 0.5, zero=False)


def _cross_seed(backend, seed):
    m = _seeds(backend, 1000 + seed)
    return independence.masks_independent([(f"{i},{j}", m[i], m[j]) for i, j in independence.SEED_PAIRS], 0.5, zero=True)


def _call_dispersion(backend, seed):
    return dispersion.calls_dispersion(_chain(backend, seed), 0.5)


def _dispersion(backend, seed):
    y = backend.forward(X_PROD.copy(), DropoutSpec(rate=0.5, seed=seed), api="dropout")
    return dispersion.groups_dispersion(checks.kept_mask(y), 0.5)


BETWEEN = {"HalfCallAdvance": _cross_call, "SeedAsOffset": _cross_seed, "FixedCount": _call_dispersion,
           "RowKeepVaries": _dispersion}


@pytest.mark.parametrize("fault", sorted(BETWEEN))
def test_between_call_fault_is_caught_in_99_percent_of_seeds(fault: str) -> None:
    """Measured power >= 99% at alpha=2.5e-10 and the production shape, over 200 seeds (each fault's own check)."""
    caught = sum(not BETWEEN[fault](getattr(plugins, fault)(), seed).passed for seed in POWER_SEEDS)
    assert caught >= 0.99 * len(POWER_SEEDS), f"{fault}: caught in {caught}/{len(POWER_SEEDS)} seeds"


def test_correct_plugin_passes_the_between_call_checks_on_the_same_seeds() -> None:
    """The correct plugin fails none of the 4 new checks on the same 200 seeds: each fails falsely with
    probability <= 2.5e-10, so this test fails falsely with <= 200*4*2.5e-10 = 2e-7."""
    failures = [(name, seed, o.detail) for name, check in BETWEEN.items() for seed in POWER_SEEDS
                if not (o := check(plugins.CorrectDropout(), seed)).passed]
    assert not failures, failures[:3]


@pytest.mark.parametrize("name, check", [
    ("cross-call", lambda r: independence.masks_independent([("a,b", r.random((32, 32)) < 0.5, r.random((32, 32)) < 0.5)],
                                                            0.5, zero=False, alpha=ALPHA)),
    ("cross-seed", lambda r: independence.masks_independent([("a,b", r.random((32, 32)) < 0.5, r.random((32, 32)) < 0.5)],
                                                            0.5, zero=True, alpha=ALPHA)),
    ("call-dispersion", lambda r: dispersion.calls_dispersion([r.random((32, 32)) < 0.5 for _ in range(CHAIN)], 0.5, ALPHA)),
    ("dispersion", lambda r: dispersion.groups_dispersion(r.random((32, 32)) < 0.5, 0.5, ALPHA)),
])
def test_between_call_false_fail_rate(name: str, check) -> None:
    """At alpha=0.01 on a small shape, over 3000 correct draws, each new check fails at most at the stated rate."""
    rng = np.random.default_rng(25)
    fails = sum(not check(rng).passed for _ in range(SEEDS))
    assert fails / SEEDS <= _upper(ALPHA), (name, fails)
