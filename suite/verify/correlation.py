"""Agreement counts of two fair-bit masks at every shift, by FFT cross-correlation.

One helper for every test that compares a mask with a shifted mask: the within-call ``lag``
offsets (a mask against itself) and the ``cross-call`` / ``cross-seed`` families (two masks).
With s = 2m - 1 in {-1, +1}, sum_i s_a[i] s_b[i + d] = agreements - disagreements, so one
zero-padded FFT pair gives the agreement count of every shift at once (O(n log n)).
"""
from __future__ import annotations

import numpy as np


def agreements(first: np.ndarray, second: np.ndarray | None, shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pairs, agreements) of ``first[i] == second[i + d]`` for every shift d in ``shifts`` (|d| < n).

    The masks are flattened; ``second`` None compares ``first`` with itself (the autocorrelation).
    pairs = n - |d|: the overlapping part only, nothing wraps around.
    """
    a = np.asarray(first, dtype=bool).ravel()
    b = a if second is None else np.asarray(second, dtype=bool).ravel()
    if a.size != b.size:
        raise ValueError(f"masks of different sizes: {a.size} vs {b.size}")
    n = a.size
    sa = np.where(a, 1.0, -1.0)
    fa = np.fft.rfft(sa, 2 * n)
    fb = fa if second is None else np.fft.rfft(np.where(b, 1.0, -1.0), 2 * n)
    corr = np.fft.irfft(np.conj(fa) * fb, 2 * n)  # corr[d] = sum_i sa[i] sb[i + d]; negative d at 2n + d
    shifts = np.asarray(shifts, dtype=np.int64)
    pairs = (n - np.abs(shifts)).astype(np.float64)
    agree = (pairs + np.rint(corr[shifts % (2 * n)])) / 2
    return pairs, agree
