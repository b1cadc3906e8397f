"""Conformance checks: pure functions over NumPy arrays, no framework anywhere.

Exact checks compare values (within the output dtype's rounding); statistical checks
use the bounds of :mod:`suite.verify.stats`, each failing a correct adapter with probability at
most ``alpha``. Every function returns an :class:`Outcome` whose detail says what was seen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from suite.verify.correlation import agreements
from suite.verify.stats import ALPHA_PER_CHECK, binomial_interval, hoeffding_count_halfwidth, hoeffding_halfwidth


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


def identity(x: np.ndarray, y: np.ndarray, *, out: str = "y", ref: str = "x") -> Outcome:
    """y == x exactly (rate 0, eval mode); ``out``/``ref`` name them ("gradient", "grad_out") in the detail."""
    if np.shape(x) != np.shape(y):
        return Outcome(False, f"{out} shape {np.shape(y)} != {ref} shape {np.shape(x)}")
    diff = _f64(y) != _f64(x)
    if diff.any():
        i = np.flatnonzero(diff)[0]
        return Outcome(False, f"{int(diff.sum())}/{diff.size} elements of {out} differ from {ref}, "
                              f"e.g. {ref}={_f64(x).flat[i]!r} -> {out}={_f64(y).flat[i]!r}")
    return Outcome(True, f"{out} == {ref}")


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


def zeros(y: np.ndarray, *, out: str = "output") -> Outcome:
    """Every element 0 (rate 1); ``out`` names the array ("gradient") in the detail."""
    values = _f64(y)
    if np.isnan(values).any():
        return Outcome(False, f"{int(np.isnan(values).sum())}/{values.size} {out} elements are NaN")
    nonzero = values != 0
    if nonzero.any():
        return Outcome(False, f"{int(nonzero.sum())}/{values.size} {out} elements non-zero, e.g. {values[nonzero][0]!r}")
    return Outcome(True, f"{out} all zeros")


def scaled_values(x: np.ndarray, y: np.ndarray, scale: float, p_all_dropped: float = 0.0) -> Outcome:
    """Every y is 0 or x*scale (one common scale, within rounding); scale is 1/keep (inverted) or 1 (vanilla).

    Everything dropped fails, unless a correct dropout does that often (``p_all_dropped`` = rate**groups
    above alpha: a layout with a handful of mask groups); then there is nothing to check.
    """
    bad = _same_shape(x, y)
    if bad:
        return bad
    xs, ys = _f64(x), _f64(y)
    if np.isnan(ys).any():
        return Outcome(False, f"{int(np.isnan(ys).sum())}/{ys.size} elements are NaN")
    kept = ys != 0
    if not kept.any():
        if p_all_dropped > ALPHA_PER_CHECK:
            return Outcome(True, f"every element dropped (a correct dropout does so with probability {p_all_dropped:.3g}): "
                                 "no kept value to check the scale on")
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


def mean_preserved(x: np.ndarray, y: np.ndarray, keep: float, axes: tuple[int, ...] = (), alpha: float = ALPHA_PER_CHECK,
                   scale: float | None = None) -> Outcome:
    """sum(y) is within the Hoeffding bound of keep*scale*sum(x): E[y] = x for inverted dropout (scale
    1/keep, the default), E[y] = keep*x for vanilla (scale 1).

    Each mask group contributes a term between 0 and sum_group(x)*scale (x has both signs in
    the checks, so the range is |sum_group(x)|*scale).
    """
    ys = _f64(y)
    if np.isnan(ys).any():
        return Outcome(False, "output has NaN")
    s = 1.0 / keep if scale is None else scale
    total_x, total_y = float(_f64(x).sum()) * keep * s, float(ys.sum())
    ranges = np.abs(_f64(x).sum(axis=axes) if axes else _f64(x)) * s
    width = hoeffding_halfwidth(ranges, alpha)
    what = "sum(x)" if scale is None or abs(keep * s - 1) < 1e-12 else f"{keep * s:g}*sum(x)"
    detail = f"sum(y)={total_y:.6g} vs {what}={total_x:.6g}, accepted +-{width:.4g} (alpha={alpha:g})"
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


def same_output(first: np.ndarray, second: np.ndarray, *, between: str = "two calls with the same seed") -> Outcome:
    """Two calls with the same seed give the same output bit for bit (``between`` names the two in the detail)."""
    if np.shape(first) == np.shape(second) and np.array_equal(_f64(first), _f64(second), equal_nan=True):
        return Outcome(True, "identical")
    if np.shape(first) != np.shape(second):
        return Outcome(False, f"shapes {np.shape(first)} and {np.shape(second)} differ between {between}")
    diff = int(np.count_nonzero(_f64(first) != _f64(second)))
    return Outcome(False, f"{diff}/{np.size(first)} elements differ between {between}")


# -- exact checks of the call itself ---------------------------------------------------------
def dtype_kept(expected: str, seen: list[str], *, out: str = "output") -> Outcome:
    """Every call returned ``expected`` (the input dtype): a silent promotion (float16 -> float32) fails."""
    wrong = sorted({d for d in seen if d != expected})
    if not seen:
        return Outcome(False, f"no {out} to check the dtype of")
    if wrong:
        n = sum(d != expected for d in seen)
        return Outcome(False, f"{out} dtype {', '.join(wrong)} for {expected} input ({n}/{len(seen)} calls)")
    return Outcome(True, f"{out} dtype {expected} in all {len(seen)} calls")


def input_unchanged(calls: int, written: int, declared_inplace: bool) -> Outcome:
    """No call wrote into the array it was given, unless the API declares the 'inplace' capability."""
    if not written:
        return Outcome(True, f"input unchanged by all {calls} calls")
    if declared_inplace:
        return Outcome(True, f"{written}/{calls} calls wrote into their input, as the declared 'inplace' capability allows")
    return Outcome(False, f"{written}/{calls} calls wrote into their input array, and the API does not declare 'inplace'")


# -- independence within one call ------------------------------------------------------------
LAGS = 4
"""Lags 1..LAGS along every axis get their own exact tests; the flattened order is tested at every offset."""
POSITION_BLOCKS = 4
"""Each axis is also cut into this many contiguous blocks (a drift along it shows there)."""
MIN_SLAB = 32
"""Single rows/columns smaller than this are not tested alone (no power at their share of alpha)."""
MAGNITUDE_BINS = 4
"""Quantile bins of |x| for the kept-fraction-by-magnitude test."""


def _split(alpha: float, parts: int) -> float:
    return alpha / max(parts, 1)


def _worst(tests: list[tuple[float, str, bool]]) -> tuple[bool, str]:
    """(passed, detail of the most extreme sub-test): tests are (excess over its bound, text, failed)."""
    failed = [t for t in tests if t[2]]
    worst = max(failed or tests, key=lambda t: t[0])
    return not failed, worst[1]


def _require_half(keep: float) -> None:
    if keep != 0.5:  # agreement indicators m_i xor m_{i+L} are iid only for fair bits
        raise ValueError(f"the lag tests are exact only at keep=0.5, got {keep}")


def lag_agreement(mask: np.ndarray, keep: float, alpha: float = ALPHA_PER_CHECK, lags: int = LAGS) -> Outcome:
    """Pairs of mask elements at lag 1..``lags`` along every axis, and at every offset 1..n/2 of the
    flattened order, agree as often as independent fair bits do.

    At keep=0.5 the agreements m_i == m_{i+L} (i = 0..n-L-1 along one line) are themselves iid
    Bernoulli(1/2): (m_0..m_{L-1}, d_0..d_{n-L-1}) is a bijective (triangular, over GF(2)) image
    of the mask. So each count is exactly Binomial(pairs, 1/2). Half of alpha goes to the short
    lags (exact intervals, Bonferroni), half to all n/2 flattened offsets (Hoeffding, Bonferroni):
    neighbours that share a draw show at lag 1, a pattern that repeats every P elements as
    near-total agreement at offset P.
    """
    _require_half(keep)
    m = np.asarray(mask, dtype=bool)
    short: list[tuple[str, int, int]] = []  # (where, pairs, agreements)
    for axis in range(m.ndim):
        for lag in range(1, min(lags, m.shape[axis] - 1) + 1):
            a = np.take(m, np.arange(m.shape[axis] - lag), axis=axis)
            b = np.take(m, np.arange(lag, m.shape[axis]), axis=axis)
            short.append((f"axis {axis} lag {lag}", int(a.size), int(np.count_nonzero(a == b))))
    flat = m.ravel()
    n = flat.size
    tests: list[tuple[float, str, bool]] = []
    a_short = _split(alpha / 2, len(short))
    for where, pairs, agree in short:
        lo, hi = binomial_interval(pairs, 0.5, a_short)
        excess = abs(agree - pairs / 2) / max(hi - pairs / 2, 1)
        tests.append((excess, f"{where}: agree {agree}/{pairs}, accepted [{lo}, {hi}]", not lo <= agree <= hi))
    max_offset = n // 2
    if max_offset >= 1:
        pairs, agree = agreements(flat, None, np.arange(1, max_offset + 1))
        tests.append(_shift_test(pairs, agree, alpha / 2, lambda i: f"flattened offset {i + 1}"))
    if not tests:
        return Outcome(True, f"{n} mask element(s): no pairs to compare")
    passed, worst = _worst(tests)
    return Outcome(passed, f"{'worst' if passed else 'FAILED'}: {worst} ({len(short)} lags and {max_offset} offsets, alpha={alpha:g})")


def _shift_test(pairs: np.ndarray, agree: np.ndarray, alpha: float, where) -> tuple[float, str, bool]:
    """Every shift's agreement count within its Hoeffding width around pairs/2 (fair coins, Bonferroni
    over the shifts); returns the most extreme shift as one sub-test, ``where(i)`` naming shift i."""
    width = hoeffding_count_halfwidth(pairs, _split(alpha, pairs.size))
    dev = np.abs(agree - pairs / 2) - width
    i = int(np.argmax(dev / width))
    return (float(np.abs(agree[i] - pairs[i] / 2) / width[i]),
            f"{where(i)}: agree {int(agree[i])}/{int(pairs[i])}, accepted +-{width[i]:.0f} around half", bool(dev[i] > 0))


def _slab_tests(counts: list[tuple[str, int, int]], keep: float, alpha: float) -> list[tuple[float, str, bool]]:
    tests = []
    a_each = _split(alpha, len(counts))
    for where, n, k in counts:
        lo, hi = binomial_interval(n, keep, a_each)
        excess = abs(k - n * keep) / max(hi - n * keep, n * keep - lo, 1)
        tests.append((excess, f"{where}: kept {k}/{n}, accepted [{lo}, {hi}]", not lo <= k <= hi))
    return tests


def position_uniform(mask: np.ndarray, keep: float, alpha: float = ALPHA_PER_CHECK, blocks: int = POSITION_BLOCKS) -> Outcome:
    """The kept fraction is the same everywhere: in ``blocks`` contiguous blocks of every axis and in
    every single row/column/... (index of one axis); each count exactly Binomial(slab size, keep).

    Half of alpha goes to the blocks (power against a slow drift), half to the single indices
    (power against one row or channel that keeps too much or too little); Bonferroni in each half.
    """
    m = np.asarray(mask, dtype=bool)
    coarse: list[tuple[str, int, int]] = []
    fine: list[tuple[str, int, int]] = []
    for axis in range(m.ndim):
        dim = m.shape[axis]
        per_index = np.count_nonzero(m, axis=tuple(i for i in range(m.ndim) if i != axis))
        size = m.size // dim
        if dim > blocks:
            for b, idx in enumerate(np.array_split(np.arange(dim), blocks)):
                coarse.append((f"axis {axis} block {b + 1}/{blocks}", size * idx.size, int(per_index[idx].sum())))
        if dim > 1 and size >= MIN_SLAB:
            fine.extend((f"axis {axis} index {i}", size, int(per_index[i])) for i in range(dim))
    if not coarse and not fine:
        return Outcome(True, "a single element: no positions to compare")
    parts = int(bool(coarse)) + int(bool(fine))
    tests = _slab_tests(coarse, keep, alpha / parts) + _slab_tests(fine, keep, alpha / parts)
    passed, worst = _worst(tests)
    return Outcome(passed, f"{'worst' if passed else 'FAILED'}: {worst} ({len(tests)} slabs, alpha={alpha:g})")


def magnitude_uniform(x: np.ndarray, mask: np.ndarray, keep: float, alpha: float = ALPHA_PER_CHECK,
                      bins: int = MAGNITUDE_BINS) -> Outcome:
    """The kept fraction does not depend on |x|: in each of ``bins`` quantile bins of |x| the kept
    count is exactly Binomial(bin size, keep) (x is fixed, the mask must not look at it)."""
    if np.shape(x) != np.shape(mask):
        return Outcome(False, f"mask shape {np.shape(mask)} != input shape {np.shape(x)}")
    order = np.argsort(np.abs(_f64(x)).ravel(), kind="stable")
    flat = np.asarray(mask, dtype=bool).ravel()[order]
    counts = []
    for b, idx in enumerate(np.array_split(np.arange(flat.size), bins)):
        counts.append((f"|x| quantile bin {b + 1}/{bins}", int(idx.size), int(np.count_nonzero(flat[idx]))))
    passed, worst = _worst(_slab_tests(counts, keep, alpha))
    return Outcome(passed, f"{'worst' if passed else 'FAILED'}: {worst} ({bins} |x| bins, alpha={alpha:g})")
