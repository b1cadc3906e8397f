"""Independence *between* masks: successive calls of one stream, and nearby and far seeds.

Two independent masks of fair bits (keep 0.5) agree, at every shift d, on exactly a
Binomial(n - |d|, 1/2) number of overlapping pairs: for a fixed d the pairs m1[i], m2[i + d]
use distinct elements of m2, independent of m1, so the agreements are iid fair coins. A stream
that advances by less than one call (call k+1 repeats part of call k, shifted), or a seed used
as an offset into one stream (seed s+1 = seed s's mask moved by one element), agrees on
(nearly) every pair at one shift. Every shift |d| <= n/2 (at least n/2 pairs each) is tested
with its Hoeffding width, alpha split evenly over all shifts and all mask pairs (Bonferroni).
The agreement counts come from :mod:`suite.verify.correlation`, the FFT the ``lag`` check uses.
"""
from __future__ import annotations

import numpy as np

from suite.verify.checks import Outcome, _require_half, _shift_test, _worst
from suite.verify.correlation import agreements
from suite.verify.stats import ALPHA_PER_CHECK

SEED_OFFSETS = (0, 1, 2, 1000)
"""Seeds s, s+1, s+2, s+1000: neighbours (an offset seed overlaps them) and one far away."""
SEED_PAIRS = ((0, 1), (1, 2), (0, 2), (0, 3))
"""Which of the SEED_OFFSETS masks are compared (indices)."""
CHAIN_CALLS = 10
"""Masks of this many consecutive calls (the first may be seeded, the rest continue the stream)."""


def shifts(n: int, zero: bool) -> np.ndarray:
    """Shifts -n/2..n/2, with or without 0 (shift 0 of successive calls is the exact fresh-mask check)."""
    half = n // 2
    d = np.arange(-half, half + 1)
    return d if zero else d[d != 0]


def masks_independent(pairs: list[tuple[str, np.ndarray, np.ndarray]], keep: float, *, zero: bool,
                      alpha: float = ALPHA_PER_CHECK) -> Outcome:
    """Each (name, first, second) pair of masks agrees like independent fair bits at every shift.

    ``zero``: also shift 0 (seeds: different seeds must not give correlated masks in place either).
    """
    _require_half(keep)
    if not pairs:
        return Outcome(True, "no pair of masks to compare")
    tests = []
    for name, first, second in pairs:
        if np.shape(first) != np.shape(second):
            return Outcome(False, f"{name}: mask shapes differ: {np.shape(first)} vs {np.shape(second)}")
        d = shifts(int(np.size(first)), zero)
        if not d.size:
            continue
        n_pairs, agree = agreements(first, second, d)
        tests.append(_shift_test(n_pairs, agree, alpha / len(pairs), lambda i, name=name, d=d: f"{name} shift {int(d[i])}"))
    if not tests:
        return Outcome(True, "masks too small to shift")
    passed, worst = _worst(tests)
    span = f"every shift |d| <= n/2{'' if zero else ' but 0'}"
    return Outcome(passed, f"{'worst' if passed else 'FAILED'}: {worst} ({len(pairs)} mask pairs, {span}, alpha={alpha:g})")
