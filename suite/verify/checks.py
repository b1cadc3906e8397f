"""Conformance checks: pure functions over NumPy arrays, no framework anywhere.

Exact checks compare values (within the output dtype's rounding); statistical checks
use the bounds of :mod:`suite.verify.stats`, each failing a correct adapter with probability at
most ``alpha``. Every function returns an :class:`Outcome` whose detail says what was seen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from suite.verify.stats import ALPHA_PER_CHECK, binomial_interval, hoeffding_halfwidth


@dataclass(frozen=True)
class Outcome:
    passed: bool
    detail: str


def rounding_tolerance(*arrays: np.ndarray) -> float:
    """Relative tolerance for one value scaled by 1/keep: two roundings in the coarsest dtype."""
    eps = max((np.finfo(a.dtype).eps for a in arrays if np.issubdtype(a.dtype, np.floating)), default=0.0)
    return 2.0 * float(eps)


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _same_shape(x: np.ndarray, y: np.ndarray) -> Outcome | None:
    if np.shape(x) != np.shape(y):
        return Outcome(False, f"output shape {np.shape(y)} != input shape {np.shape(x)}")
    return None


def kept_mask(y: np.ndarray) -> np.ndarray:
    """Which elements survived (inputs of the checks are never 0, so y != 0 means kept)."""
    return _f64(y) != 0


def identity(x: np.ndarray, y: np.ndarray) -> Outcome:
    """y == x exactly (rate 0, eval mode)."""
    bad = _same_shape(x, y)
    if bad:
        return bad
    diff = _f64(y) != _f64(x)
    if diff.any():
        i = np.flatnonzero(diff)[0]
        return Outcome(False, f"{int(diff.sum())}/{diff.size} elements changed, e.g. x={_f64(x).flat[i]!r} -> y={_f64(y).flat[i]!r}")
    return Outcome(True, "y == x")


def scaled_by(x: np.ndarray, y: np.ndarray, factor: float) -> Outcome:
    """y == x * factor within rounding (vanilla eval: x * keep)."""
    bad = _same_shape(x, y)
    if bad:
        return bad
    expected = _f64(x) * factor
    err = np.abs(_f64(y) - expected)
    ok = err <= rounding_tolerance(x, y) * np.abs(expected)
    if not ok.all():
        i = np.flatnonzero(~ok)[0]
        return Outcome(False, f"expected x*{factor:g}: x={_f64(x).flat[i]!r} -> y={_f64(y).flat[i]!r}")
    return Outcome(True, f"y == x*{factor:g}")


def zeros(y: np.ndarray) -> Outcome:
    """Every element 0 (rate 1)."""
    values = _f64(y)
    if np.isnan(values).any():
        return Outcome(False, f"{int(np.isnan(values).sum())}/{values.size} elements are NaN")
    nonzero = values != 0
    if nonzero.any():
        return Outcome(False, f"{int(nonzero.sum())}/{values.size} elements non-zero, e.g. {values[nonzero][0]!r}")
    return Outcome(True, "all zeros")


def scaled_values(x: np.ndarray, y: np.ndarray, scale: float) -> Outcome:
    """Every y is 0 or x*scale (one common scale, within rounding); scale is 1/keep (inverted) or 1 (vanilla)."""
    bad = _same_shape(x, y)
    if bad:
        return bad
    xs, ys = _f64(x), _f64(y)
    if np.isnan(ys).any():
        return Outcome(False, f"{int(np.isnan(ys).sum())}/{ys.size} elements are NaN")
    kept = ys != 0
    if not kept.any():
        return Outcome(False, "every element dropped: no kept value to check the scale on")
    expected = xs[kept] * scale
    ok = np.abs(ys[kept] - expected) <= rounding_tolerance(x, y) * np.abs(expected)
    if not ok.all():
        observed = np.median(ys[kept] / xs[kept])
        return Outcome(False, f"{int((~ok).sum())}/{int(kept.sum())} kept values are not x*{scale:.6g}; median y/x = {observed:.6g}")
    return Outcome(True, f"{int(kept.sum())}/{ys.size} kept, all scaled by {scale:.6g}")


def gradient_matches(x: np.ndarray, y: np.ndarray, grad_out: np.ndarray, grad: np.ndarray) -> Outcome:
    """dL/dx == grad_out * y / x elementwise: backward uses the forward's mask and scale."""
    bad = _same_shape(x, grad)
    if bad:
        return Outcome(False, "gradient " + bad.detail)
    expected = _f64(grad_out) * _f64(y) / _f64(x)
    got = _f64(grad)
    tol = 2 * rounding_tolerance(x, y, grad) * np.abs(expected)
    ok = np.abs(got - expected) <= tol
    if not ok.all():
        i = np.flatnonzero(~ok)[0]
        return Outcome(False, f"{int((~ok).sum())}/{got.size} gradient elements differ from grad_out*y/x, "
                              f"e.g. {got.flat[i]!r} vs {expected.flat[i]!r}")
    return Outcome(True, "gradient == grad_out * y / x")


def mask_shared(mask: np.ndarray, axes: tuple[int, ...]) -> Outcome:
    """The kept/dropped pattern is constant along every broadcast axis."""
    if not axes:
        return Outcome(True, "no broadcast axes")
    varies = mask.any(axis=axes) != mask.all(axis=axes)
    if varies.any():
        return Outcome(False, f"{int(varies.sum())}/{varies.size} mask groups vary along axes {axes}")
    return Outcome(True, f"mask constant along axes {axes}")


def group_mask(mask: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """One value per mask group (kept if any element of the group was kept)."""
    return mask.any(axis=axes) if axes else mask


def kept_fraction(groups: np.ndarray, keep: float, alpha: float = ALPHA_PER_CHECK) -> Outcome:
    """K kept out of n groups lies in the exact Binomial(n, keep) region of level alpha."""
    n, k = int(groups.size), int(np.count_nonzero(groups))
    lo, hi = binomial_interval(n, keep, alpha)
    detail = f"kept {k}/{n} = {k / max(n, 1):.4f}, expected {keep:.4f}, accepted [{lo}, {hi}] (alpha={alpha:g})"
    return Outcome(lo <= k <= hi, detail)


def mean_preserved(x: np.ndarray, y: np.ndarray, keep: float, axes: tuple[int, ...] = (), alpha: float = ALPHA_PER_CHECK) -> Outcome:
    """sum(y) is within the Hoeffding bound of sum(x): E[y] = x for inverted dropout.

    Each mask group contributes a term in [0, sum_group(x)/keep]; x > 0 in the checks.
    """
    ys = _f64(y)
    if np.isnan(ys).any():
        return Outcome(False, "output has NaN")
    total_x, total_y = float(_f64(x).sum()), float(ys.sum())
    ranges = _f64(x).sum(axis=axes) / keep if axes else _f64(x) / keep
    width = hoeffding_halfwidth(ranges, alpha)
    detail = f"sum(y)={total_y:.6g} vs sum(x)={total_x:.6g}, accepted +-{width:.4g} (alpha={alpha:g})"
    return Outcome(abs(total_y - total_x) <= width, detail)


def independent_masks(first: np.ndarray, second: np.ndarray, keep: float, alpha: float = ALPHA_PER_CHECK) -> Outcome:
    """Two successive calls: the number of positions where the masks agree ~ Binomial(n, keep^2 + rate^2).

    A reused mask agrees everywhere; a correlated one agrees too often; both fall outside.
    """
    if first.shape != second.shape:
        return Outcome(False, f"mask shapes differ: {first.shape} vs {second.shape}")
    n = int(first.size)
    agree = int(np.count_nonzero(first == second))
    q = keep**2 + (1 - keep) ** 2
    lo, hi = binomial_interval(n, q, alpha)
    detail = f"masks agree on {agree}/{n}, expected {q:.4f}*n, accepted [{lo}, {hi}] (alpha={alpha:g})"
    return Outcome(lo <= agree <= hi, detail)


def same_output(first: np.ndarray, second: np.ndarray) -> Outcome:
    """Two calls with the same seed give the same output bit for bit."""
    if np.array_equal(_f64(first), _f64(second), equal_nan=True):
        return Outcome(True, "identical")
    diff = int(np.count_nonzero(_f64(first) != _f64(second)))
    return Outcome(False, f"{diff}/{np.size(first)} elements differ between two calls with the same seed")


def different_masks(first: np.ndarray, second: np.ndarray) -> Outcome:
    """Different seeds give different masks. A correct adapter gives identical masks with
    probability (keep^2 + rate^2)^n, below 2^-4000 at the sizes used: no practical false fail."""
    if np.array_equal(first, second):
        return Outcome(False, "different seeds gave the same mask: the seed is ignored")
    return Outcome(True, f"masks differ on {int(np.count_nonzero(first != second))}/{first.size}")
