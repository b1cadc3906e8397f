"""Conformance of the dropout family beyond Bernoulli masks: Gaussian and alpha dropout.

The formulas are the papers' (suite/spec.py: :func:`gaussian_std`, :func:`alpha_affine`; README,
"The dropout family"), never one framework's. Exact where the formula allows: rate 0 and eval are
identity, alpha's rate 1 is zeros, every alpha output is one of its element's two values (a*x + b
kept, a*alpha' + b dropped), the gradient is the forward's multiplier (Gaussian: y/x; alpha: a where
kept, 0 where dropped), a shared mask is constant along its axes, a seed repeats the output.
Statistical elsewhere, each check at ``ALPHA_PER_CHECK`` (split by Bonferroni inside a check that
tests several moments): the Gaussian multiplier's mean (exactly normal), second moment about 1
(chi-square, Laurent-Massart bounds) and share within one sd (exact Binomial); alpha's kept share
(exact Binomial) and the standardized output's mean and second moment (Hoeffding, given the input).
Bernoulli APIs never come here: :func:`suite.verify.conformance.check_api` sends only other kinds.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Iterator

import numpy as np

from suite.spec import ALPHA_PRIME, alpha_affine, gaussian_std
from suite.verify import checks
from suite.verify.checks import Outcome
from suite.verify.conformance import BROADCAST_CASES, INPUT_SEED, ApiChecker, make_inputs
from suite.verify.coverage import not_applicable
from suite.verify.stats import ALPHA_PER_CHECK, binomial_interval, hoeffding_halfwidth

FAMILY_RATES = (0.1, 0.5, 0.9)
INDEPENDENCE_RATE = 0.5  # the multiplier's sign (Gaussian) and alpha's mask are fair bits here: the lag tests apply
STREAM_DTYPE = "float32"
"""The random stream's checks (fresh noise, lags, positions, broadcast statistics) run in this dtype only;
the moments run in every declared dtype (a float16 normal generator may be biased, its stream is the same)."""
ONE_SD_SHARE = math.erf(1 / math.sqrt(2))  # P(|N(0, 1)| <= 1) = 0.6827
STATISTICAL = ("gaussian-noise", "alpha-moments", "fresh-mask", "lag", "position", "magnitude", "broadcast-kept-fraction")
"""The statistical check families a family API runs (each record one check at ALPHA_PER_CHECK)."""


# -- pure checks ------------------------------------------------------------------------------
def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _any_in(lo: int, hi: int, k_lo: int, k_hi: int) -> bool:
    """Some count in [k_lo, k_hi] (the ambiguous elements either way) lies in [lo, hi]."""
    return k_lo <= hi and lo <= k_hi


def gaussian_noise(x: np.ndarray, y: np.ndarray, rate: float, alpha: float = ALPHA_PER_CHECK,
                   tol: float | None = None) -> Outcome:
    """r = y/x is N(1, rate/keep) i.i.d.: its mean, its second moment about 1 and its share within one sd.

    alpha/3 each. Mean: exactly normal, |mean - 1| <= z * sd / sqrt(n). Second moment: n * s2 / sd^2 is
    chi-square(n); Laurent-Massart: P(X >= n + 2 sqrt(n t) + 2 t) <= e^-t, P(X <= n - 2 sqrt(n t)) <= e^-t.
    Share: #{|r - 1| <= sd} ~ Binomial(n, 0.6827) exactly. Each widened by the output dtype's rounding.
    """
    xs, ys = _f64(x), _f64(y)
    if not np.isfinite(ys).all():
        return Outcome(False, f"{int((~np.isfinite(ys)).sum())}/{ys.size} outputs are not finite")
    r = (ys / xs).ravel()
    n, sd, a3 = r.size, gaussian_std(rate), alpha / 3
    tol = checks.rounding_tolerance(x, y) if tol is None else tol
    mean = float(r.mean())
    mean_width = NormalDist().inv_cdf(1 - a3 / 2) * sd / math.sqrt(n) + tol * float(np.abs(r).mean())
    dev = r - 1.0
    s2 = float(np.mean(dev**2))
    slack = float(np.mean(2 * np.abs(dev) * tol * np.abs(r) + (tol * r) ** 2))
    t = math.log(2 / a3)
    s2_lo = sd**2 * (n - 2 * math.sqrt(n * t)) / n - slack
    s2_hi = sd**2 * (n + 2 * math.sqrt(n * t) + 2 * t) / n + slack
    edge = np.abs(np.abs(dev) - sd) <= tol * np.abs(r)  # rounding may put these on either side of one sd
    inside = np.abs(dev) <= sd
    k_lo, k_hi = int((inside & ~edge).sum()), int((inside | edge).sum())
    lo, hi = binomial_interval(n, ONE_SD_SHARE, a3)
    tests = [(abs(mean - 1) <= mean_width, f"mean(y/x) = {mean:.5f}, accepted 1 +- {mean_width:.5f}"),
             (s2_lo <= s2 <= s2_hi, f"mean((y/x - 1)^2) = {s2:.5f}, sd^2 = rate/keep = {sd**2:.5f}, "
                                   f"accepted [{s2_lo:.5f}, {s2_hi:.5f}]"),
             (_any_in(lo, hi, k_lo, k_hi), f"{k_lo}/{n} within one sd, expected {ONE_SD_SHARE:.4f}*n, "
                                           f"accepted [{lo}, {hi}]")]
    failed = [text for ok, text in tests if not ok]
    return Outcome(not failed, ("FAILED: " + "; ".join(failed)) if failed else "; ".join(t for _, t in tests)
                   + f" (alpha={alpha:g}, a third each)")


def alpha_values(x: np.ndarray, y: np.ndarray, rate: float, tol: float | None = None) -> tuple[Outcome, np.ndarray]:
    """(every y is a*x + b or a*alpha' + b within rounding, the kept mask); ``tol``: the relative rounding
    of one operation where the caller knows it better (the probe's bfloat16), else two roundings of x's and y's dtypes.

    Rounding is relative to the terms (|a*x| + |b|, |a*alpha'| + |b|), not to y: both sums cancel
    (a*x + b near x = -b/a; a*alpha' + b = a*alpha'*keep at high rates, as torch computes it).
    """
    a, b, dropped = alpha_affine(rate)
    xs, ys = _f64(x), _f64(y)
    tol = 2 * (checks.rounding_tolerance(x, y) if tol is None else tol)
    kept_value = a * xs + b
    kept = np.abs(ys - kept_value) <= tol * (np.abs(a * xs) + abs(b))
    is_dropped = np.abs(ys - dropped) <= tol * (abs(a * ALPHA_PRIME) + abs(b))  # a*alpha' + b cancels too
    bad = ~(kept | is_dropped)
    if bad.any():
        i = np.flatnonzero(bad)[0]
        return Outcome(False, f"{int(bad.sum())}/{ys.size} outputs are neither a*x+b nor a*alpha'+b (a={a:.6g}, "
                              f"b={b:.6g}), e.g. x={xs.flat[i]!r} -> y={ys.flat[i]!r}"), kept
    return Outcome(True, f"{int(kept.sum())}/{ys.size} kept as a*x+b, the rest {dropped:.6g} (a={a:.6g}, b={b:.6g})"), kept


def gaussian_gradient(x: np.ndarray, y: np.ndarray, grad_out: np.ndarray, grad: np.ndarray) -> Outcome:
    """dL/dx == grad_out * r with the forward's r = y/x, compared crosswise: grad*x == grad_out*y.

    With grad = g*r and y = x*r each rounded once, |grad*x - g*y| <= tol*max(|grad*x|, |g*y|) +
    (|x| + |g|) * the dtype's smallest subnormal: r near 0 is the normal case here, and its products
    are subnormal in float16, where a relative tolerance alone fails correct adapters.
    """
    xs, ys, gs, got = _f64(x), _f64(y), _f64(grad_out), _f64(grad)
    if got.shape != xs.shape:
        return Outcome(False, f"gradient shape {got.shape} != input shape {xs.shape}")
    tiny = max(float(np.finfo(a.dtype).smallest_subnormal) for a in (x, y, grad))
    lhs, rhs = got * xs, gs * ys
    ok = np.abs(lhs - rhs) <= checks.rounding_tolerance(x, y, grad) * np.maximum(np.abs(lhs), np.abs(rhs)) + \
        (np.abs(xs) + np.abs(gs)) * tiny
    if not ok.all():
        i = np.flatnonzero(~ok)[0]
        return Outcome(False, f"{int((~ok).sum())}/{ok.size} gradient elements differ from grad_out*y/x, "
                              f"e.g. {got.flat[i]!r} vs {rhs.flat[i] / xs.flat[i]!r}")
    return Outcome(True, "gradient == grad_out * y / x (the forward's multiplier)")


def alpha_gradient(kept: np.ndarray, grad_out: np.ndarray, grad: np.ndarray, rate: float) -> Outcome:
    """dL/dx == grad_out * a where kept, 0 where dropped (the forward's mask and slope)."""
    a = alpha_affine(rate)[0]
    expected = np.where(kept, _f64(grad_out) * a, 0.0)
    tol = 2 * checks.rounding_tolerance(grad_out, grad)
    ok = np.abs(_f64(grad) - expected) <= tol * np.abs(expected)
    if not ok.all():
        i = np.flatnonzero(~ok)[0]
        return Outcome(False, f"{int((~ok).sum())}/{ok.size} gradient elements differ from grad_out*a*kept (a={a:.6g}), "
                              f"e.g. {_f64(grad).flat[i]!r} vs {expected.flat[i]!r}")
    return Outcome(True, f"gradient == grad_out * {a:.6g} where kept, 0 where dropped")


def alpha_moments(z: np.ndarray, y: np.ndarray, kept: np.ndarray, rate: float, axes: tuple[int, ...] = (),
                  alpha: float = ALPHA_PER_CHECK) -> Outcome:
    """Kept share, mean(y) and mean(y^2) on standardized input z: the paper's mean 0 and variance 1.

    alpha/3 each. Kept share: exact Binomial over the mask groups. Given z, each group's sum of y (and
    of y^2) takes one of two values, so Hoeffding bounds both sums around their expectations
    keep * S_kept + rate * S_dropped; for z of mean 0 and variance 1 these are 0 and n (1 per element).
    """
    a, b, d = alpha_affine(rate)
    keep, a3 = 1.0 - rate, alpha / 3
    zs, ys = _f64(z), _f64(y)
    groups = checks.group_mask(kept, axes)
    lo, hi = binomial_interval(int(groups.size), keep, a3)
    k = int(np.count_nonzero(groups))
    tol = checks.rounding_tolerance(z, y)
    n = ys.size

    def summed(v: np.ndarray) -> np.ndarray:
        return v.sum(axis=axes) if axes else v

    tests = [(lo <= k <= hi, f"kept {k}/{groups.size}, accepted [{lo}, {hi}]")]
    for name, power in (("mean(y)", 1), ("mean(y^2)", 2)):
        on_kept, on_dropped = summed((a * zs + b) ** power), summed(np.full_like(zs, d**power))
        expected = float(np.sum(keep * on_kept + rate * on_dropped)) / n
        width = hoeffding_halfwidth(np.abs(on_kept - on_dropped), a3) / n + power * tol * float(np.mean(np.abs(ys) ** power))
        seen = float(np.mean(ys**power))
        tests.append((abs(seen - expected) <= width, f"{name} = {seen:.4f}, expected {expected:.4f}, accepted +-{width:.4f}"))
    failed = [text for ok, text in tests if not ok]
    return Outcome(not failed, ("FAILED: " + "; ".join(failed)) if failed else "; ".join(t for _, t in tests)
                   + f" (alpha={alpha:g}, a third each)")


def standardized_inputs(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """z of sample mean 0 and variance 1 (in float64, then cast): the input alpha dropout is designed for."""
    z = np.random.default_rng(INPUT_SEED + 1).standard_normal(shape)
    return avoid_alpha_prime(((z - z.mean()) / z.std()).astype(dtype))


def avoid_alpha_prime(x: np.ndarray) -> np.ndarray:
    """x with the values within 1 % of alpha' negated: there a*x + b == a*alpha' + b, kept and dropped look alike.

    A function of x alone, so the mask stays i.i.d. and nothing else changes (about 1 element in 10^4).
    """
    x = np.array(x)
    near = np.abs(_f64(x) - ALPHA_PRIME) <= 0.01 * abs(ALPHA_PRIME)
    x[near] = -x[near]
    return x


# -- the plan ---------------------------------------------------------------------------------------
class FamilyChecker(ApiChecker):
    """The plan of a Gaussian or alpha API; shares ApiChecker's calling, guarding and per-dtype call checks."""

    def _plan(self, dtype: str) -> Iterator[tuple[str, str, str]]:
        kind = self.info.kind
        yield from self._guarded(f"identity/rate=0/{dtype}", lambda: self._rate_zero(dtype))
        if kind == "alpha":  # the limit of a*alpha'*keep as keep -> 0 (suite.spec.alpha_affine)
            yield from self._guarded(f"zeros/rate=1/{dtype}", lambda: self._rate_one(dtype))
        else:
            yield f"zeros/rate=1/{dtype}", "skip", not_applicable(
                "the spec leaves Gaussian dropout at rate 1 undefined (infinite variance)")
        for rate in FAMILY_RATES:
            yield from self._guarded(f"{kind}-train/rate={rate}/{dtype}", lambda r=rate: self._family_train(r, dtype))
        if "backward" not in self.caps:
            yield f"gradient/{dtype}", "skip", f"{self.api} does not declare 'backward'"
        yield from self._capability("eval", f"eval/{dtype}", lambda: self._eval(dtype))
        yield from self._capability("seed", f"seed/{dtype}", lambda: self._seed(dtype))
        if kind == "gaussian":
            yield f"broadcast/{dtype}", "skip", not_applicable(
                "no Gaussian API takes a noise shape: the spec's Gaussian noise is per element")
        elif self.info.layout is None and dtype == STREAM_DTYPE:
            for shape, axes in BROADCAST_CASES:
                name = f"broadcast/axes={','.join(map(str, axes))}/{dtype}"
                yield from self._capability("broadcast_axes", name, lambda s=shape, a=axes: self._alpha_broadcast(s, a, dtype))

    def _bits(self, x: np.ndarray, y: np.ndarray, rate: float) -> tuple[Outcome, np.ndarray]:
        """(the exact value check, one fair-at-0.5 bit per element): alpha's kept mask, Gaussian's y/x > 1."""
        if self.info.kind == "alpha":
            return alpha_values(x, y, rate)
        ys = _f64(y)
        finite = np.isfinite(ys)
        ok = Outcome(bool(finite.all()), "all outputs finite" if finite.all() else f"{int((~finite).sum())} outputs not finite")
        return ok, ys / _f64(x) > 1.0

    def _family_train(self, rate: float, dtype: str) -> Iterator[tuple[str, Outcome]]:
        x, g = make_inputs(self.shape, dtype)
        alpha = self.info.kind == "alpha"
        if alpha:
            x = avoid_alpha_prime(x)
        spec = self._spec(rate, dtype)
        y, grad = self._call(x, g, spec)
        tag = f"rate={rate}/{dtype}"
        values, bits = self._bits(x, y, rate)
        yield f"{self.info.kind}-values/{tag}", values
        if alpha:
            if self.axes:
                yield f"alpha-mask-shared/{tag}", checks.mask_shared(bits, self.axes)
            z = standardized_inputs(self.shape, dtype)
            yz, _ = self._call(z, None, spec)
            yield f"alpha-moments/{tag}", alpha_moments(z, yz, alpha_values(z, yz, rate)[1], rate, self.axes)
        else:
            yield f"gaussian-noise/{tag}", gaussian_noise(x, y, rate)
        if grad is not None:
            yield f"gradient/{tag}", alpha_gradient(bits, g, grad, rate) if alpha else gaussian_gradient(x, y, g, grad)
        if dtype != STREAM_DTYPE:
            return
        groups, keep = checks.group_mask(bits, self.axes), (1.0 - rate if alpha else 0.5)
        if rate == INDEPENDENCE_RATE:
            yield from self._independence(tag, x, groups, 0.5)
        y2, _ = self._call(x, None, spec.replace(seed=None))  # the stream goes on: new noise, not correlated
        second = checks.group_mask(self._bits(x, y2, rate)[1], self.axes)
        yield f"fresh-mask/{tag}", checks.independent_masks(groups, second, keep)
        if rate == INDEPENDENCE_RATE:
            yield from self._across_calls(tag, x, spec, [groups, second], keep)

    def _seed_input(self, dtype: str) -> np.ndarray:
        return avoid_alpha_prime(make_inputs(self.shape, dtype)[0])

    def _mask_bits(self, x: np.ndarray, y: np.ndarray, rate: float) -> np.ndarray:
        return self._bits(x, y, rate)[1]

    def _alpha_broadcast(self, shape: tuple[int, ...], axes: tuple[int, ...], dtype: str) -> Iterator[tuple[str, Outcome]]:
        rate = 0.5
        x = avoid_alpha_prime(make_inputs(shape, dtype)[0])
        y, _ = self._call(x, None, self._spec(rate, dtype, broadcast_axes=axes))
        values, kept = alpha_values(x, y, rate)
        tag = f"axes={','.join(map(str, axes))}/{dtype}"
        yield f"broadcast-values/{tag}", values
        yield f"broadcast-shared/{tag}", checks.mask_shared(kept, axes)
        yield f"broadcast-kept-fraction/{tag}", checks.kept_fraction(checks.group_mask(kept, axes), 1 - rate)


# -- measured power and false alarms (README, "The dropout family") ---------------------------------
def _gaussian_output(x: np.ndarray, rng: np.random.Generator, rate: float, fault: str) -> np.ndarray:
    sd = gaussian_std(rate)
    if fault == "sd = rate/keep (the variance's formula used as sd)":
        sd = rate / (1 - rate)
    elif fault == "variance 10 % high":
        sd *= math.sqrt(1.1)
    if fault == "uniform noise of the right mean and variance":
        r = 1 + sd * rng.uniform(-math.sqrt(3), math.sqrt(3), x.shape)
    else:
        r = rng.normal(1.01 if fault == "mean 1.01" else 1.0, sd, x.shape)
    return (x * r).astype(x.dtype)


def _alpha_output(z: np.ndarray, rng: np.random.Generator, rate: float, fault: str) -> tuple[np.ndarray, np.ndarray]:
    a, b, d = alpha_affine(rate)
    keep = 1 - rate
    if fault == "no affine correction (kept x, dropped alpha')":
        a, b, d = 1.0, 0.0, ALPHA_PRIME
    elif fault == "a = keep^-1/2 (the alpha'^2 term left out)":
        a = keep**-0.5
        d = a * ALPHA_PRIME + b
    elif fault == "b = 0 (no shift)":
        b, d = 0.0, a * ALPHA_PRIME
    kept = rng.random(z.shape) < keep
    return np.where(kept, a * _f64(z) + b, d).astype(z.dtype), kept


POWER_CASES = (("gaussian", 0.1, "sd = rate/keep (the variance's formula used as sd)"), ("gaussian", 0.5, "variance 10 % high"),
               ("gaussian", 0.5, "uniform noise of the right mean and variance"), ("gaussian", 0.1, "mean 1.01"),
               ("alpha", 0.1, "no affine correction (kept x, dropped alpha')"),
               ("alpha", 0.1, "a = keep^-1/2 (the alpha'^2 term left out)"), ("alpha", 0.1, "b = 0 (no shift)"))


def measured_rates(reps: int = 100, seed: int = 28) -> list[tuple[str, float, str, int, int]]:
    """(kind, rate, fault or "correct", runs that failed, runs) of the moment checks at verify's sizes.

    Each fault is simulated ``reps`` times (float32, the default shape); "correct" rows count false
    alarms at every family rate (the bound says at most ALPHA_PER_CHECK each).
    """
    rng = np.random.default_rng(seed)
    x = make_inputs((256, 256), "float32")[0]
    z = standardized_inputs((256, 256), "float32")
    rows = []

    def failed(kind: str, rate: float, fault: str) -> bool:
        if kind == "gaussian":
            return not gaussian_noise(x, _gaussian_output(x, rng, rate, fault), rate).passed
        y, kept = _alpha_output(z, rng, rate, fault)
        return not alpha_moments(z, y, kept, rate).passed

    for kind in ("gaussian", "alpha"):
        for rate in FAMILY_RATES:
            rows.append((kind, rate, "correct", sum(failed(kind, rate, "correct") for _ in range(reps)), reps))
    for kind, rate, fault in POWER_CASES:
        rows.append((kind, rate, fault, sum(failed(kind, rate, fault) for _ in range(reps)), reps))
    return rows
