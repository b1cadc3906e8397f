"""Do the frameworks train the same network? Two checks, each with its tolerance stated.

Dropout off: every framework starts from the same weights and sees the same batches, so the
training is deterministic and the per-epoch losses may differ only by float32 rounding.
Dropout on: masks differ (each framework has its own RNG), so final accuracies differ by the
run-to-run noise; whether a framework differs by *more* is a randomized-block one-way ANOVA
(blocks = seeds, which fix the shared initial weights and batch order; treatments = frameworks).
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

# False-fail probability of the dropout-on check (team standard: <= 1e-6).
ALPHA = 1e-6


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def f_sf(f: float, d1: float, d2: float) -> float:
    """P(F > f) for F ~ F(d1, d2)."""
    if f <= 0:
        return 1.0
    if math.isinf(f):
        return 0.0
    return betainc(d2 / 2.0, d1 / 2.0, d2 / (d2 + d1 * f))


@functools.lru_cache(maxsize=256)
def f_critical(alpha: float, d1: float, d2: float) -> float:
    """The f with P(F > f) = alpha (bisection on the monotone survival function)."""
    lo, hi = 0.0, 1.0
    while f_sf(hi, d1, d2) > alpha:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f_sf(mid, d1, d2) > alpha else (lo, mid)
    return hi


def loss_spread(curves: dict[str, list[float]]) -> list[float]:
    """Per epoch: (max - min) / mean of the frameworks' train losses (the relative disagreement)."""
    table = np.array(list(curves.values()), dtype=np.float64)
    return [float(v) for v in (table.max(axis=0) - table.min(axis=0)) / np.abs(table.mean(axis=0))]


@dataclass(frozen=True)
class AnovaResult:
    """Randomized-block ANOVA of final accuracy: frameworks (k) x seeds (S)."""

    frameworks: list[str]
    means: list[float]
    sds: list[float]
    f: float
    df_frameworks: int
    df_residual: int
    p_value: float
    f_critical: float
    alpha: float
    residual_sd: float
    band: float  # one framework's mean may sit this far from the others' before the check fails
    passed: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def block_anova(acc: np.ndarray, frameworks: list[str], alpha: float = ALPHA) -> AnovaResult:
    """F test of "all frameworks have the same mean final accuracy" with seeds as blocks.

    Model: acc[f, s] = mu + framework_f + seed_s + e[f, s], e i.i.d. N(0, sigma^2) (dropout noise;
    the seed block removes the shared initial-weights/batch-order effect). Under H0 (framework_f = 0)
    F = MS_frameworks / MS_residual ~ F(k-1, (k-1)(S-1)), so failing when F > f_crit(alpha) has
    false-fail probability alpha. ``band``: if one framework's mean is off by delta and the others
    agree, F = S delta^2 / (k MS_residual), so it fails once |delta| > sqrt(f_crit k MS_residual / S).
    """
    acc = np.asarray(acc, dtype=np.float64)
    k, s = acc.shape
    if k < 2 or s < 2:
        raise ValueError(f"need >= 2 frameworks and >= 2 seeds, got {k} x {s}")
    grand = acc.mean()
    fw_means, seed_means = acc.mean(axis=1), acc.mean(axis=0)
    ss_fw = s * float(np.sum((fw_means - grand) ** 2))
    resid = acc - fw_means[:, None] - seed_means[None, :] + grand
    ss_res = float(np.sum(resid ** 2))
    df1, df2 = k - 1, (k - 1) * (s - 1)
    ms_fw, ms_res = ss_fw / df1, ss_res / df2
    if ms_res > 0:
        f = ms_fw / ms_res
    else:
        f = 0.0 if ms_fw == 0 else math.inf
    crit = f_critical(alpha, df1, df2)
    p = f_sf(f, df1, df2)
    return AnovaResult(frameworks, [float(m) for m in fw_means], [float(v) for v in acc.std(axis=1, ddof=1)],
                       float(f), df1, df2, float(p), float(crit), alpha, math.sqrt(ms_res),
                       math.sqrt(crit * k * ms_res / s), bool(f <= crit))


# The dropout-on check must be able to fail: a verdict is given only with enough seeds that one
# framework whose mean final accuracy is off by EFFECT_SD residual standard deviations (run-to-run
# dropout noise, e.g. 5 x 0.01 accuracy on digits) fails the check with probability >= POWER.
POWER = 0.9
EFFECT_SD = 5.0


def noncentral_f_sf(f: float, d1: float, d2: float, nc: float) -> float:
    """P(F' > f) for a noncentral F(d1, d2, nc): Poisson(nc/2) mixture of regularized betas."""
    if f <= 0:
        return 1.0
    x = d1 * f / (d1 * f + d2)
    half = nc / 2.0
    weight, cdf, j = math.exp(-half), 0.0, 0
    while True:
        cdf += weight * betainc(d1 / 2.0 + j, d2 / 2.0, x)
        j += 1
        weight *= half / j
        if j > half + 60 and weight < 1e-17:
            return max(0.0, 1.0 - cdf)


def power_one_off(k: int, seeds: int, effect_sd: float = EFFECT_SD, alpha: float = ALPHA) -> float:
    """Probability that block_anova fails when one of k frameworks is off by effect_sd residual SDs.

    Framework effects are delta(k-1)/k once and -delta/k (k-1) times, so the noncentrality is
    S * delta^2 (k-1) / (k sigma^2).
    """
    if k < 2 or seeds < 2:
        return 0.0
    d1, d2 = k - 1, (k - 1) * (seeds - 1)
    return noncentral_f_sf(f_critical(alpha, d1, d2), d1, d2, seeds * effect_sd ** 2 * (k - 1) / k)


def min_seeds(k: int, power: float = POWER, effect_sd: float = EFFECT_SD, alpha: float = ALPHA) -> int:
    """The fewest seeds at which power_one_off reaches ``power`` (k >= 2 frameworks)."""
    if k < 2:
        raise ValueError(f"need >= 2 frameworks, got {k}")
    seeds = 2
    while power_one_off(k, seeds, effect_sd, alpha) < power:
        seeds += 1
    return seeds
