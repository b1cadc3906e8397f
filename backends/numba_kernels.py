"""The compiled loops of numba:fused; importing this module imports numba (backends/numba_backend.py does it lazily).

The random stream (the definition the tests re-derive in NumPy; it depends on nothing else):

* ``mix64`` is SplitMix64's output function (Stafford's "variant 13": shifts 30, 27, 31).
* A seed (an int, reduced mod 2^64) gives ``root = mix64(seed)``; unseeded, ``root`` is 64 bits of
  OS entropy. Call ``c`` (0, 1, 2, ... since the last reseed) has the key
  ``key_c = mix64(root + c * GAMMA)``; a call with a seed reseeds first, so it is call 0 again.
* Word ``w`` of call ``c`` is ``mix64(key_c + w * GAMMA)`` (all mod 2^64): SplitMix64's outputs,
  computed from the counter ``w`` instead of a running state, so any element can be drawn by
  any thread without drawing its predecessors.
* Mask element ``e`` (flat, C order) takes the 32 bits ``u = (word(e // 2) >> (32 * (e % 2))) & (2^32 - 1)``
  and is kept iff ``u < T`` with ``T = round(keep * 2^32)`` (``T = 2^32`` keeps all, 0 drops all):
  P(kept) = T / 2^32 exactly, resolution 2^-32.
* Blocks of :data:`BLOCK` elements are the unit of work of ``prange``; since an element's bits depend
  only on (key_c, e), neither the block size nor the thread count changes a mask.

y is ``x * (scale if kept else 0)`` in x's dtype, the reference formula bit for bit (a dropped NaN stays
NaN, a dropped -x gives -0.0). The loops are written so that LLVM vectorizes them: one counter hash per
two elements, no branches, contiguous loads and stores (results/numba-fused/README.md has the variants).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

GAMMA = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)
BLOCK = 1 << 16
"""Elements per prange iteration (even, so a block never splits a word). Not part of the stream."""

_OPTS = {"cache": True, "nogil": True}


@njit(inline="always")
def mix64(z):  # type: ignore[no-untyped-def]
    """SplitMix64's finalizer: a bijection of uint64 whose output passes BigCrush on a counter."""
    z = (z ^ (z >> uint64(30))) * _C1
    z = (z ^ (z >> uint64(27))) * _C2
    return z ^ (z >> uint64(31))


@njit(**_OPTS)
def call_key(root, call):  # type: ignore[no-untyped-def]
    """key_c = mix64(root + c * GAMMA)."""
    return mix64(uint64(root) + uint64(call) * GAMMA)


@njit(inline="always")
def _fused_block(x, y, m, key, first_word, thr, scale):  # type: ignore[no-untyped-def]
    """One block: draw, compare, write mask and y; ``x`` starts at an even flat index (word ``first_word``)."""
    zero = scale - scale  # +0.0 in scale's own dtype (scale * 0 would widen float32 to float64)
    pairs = x.size // 2
    for w in range(pairs):
        r = mix64(key + (first_word + uint64(w)) * GAMMA)
        k0 = (r & _LOW32) < thr
        k1 = (r >> uint64(32)) < thr
        m[2 * w] = k0
        m[2 * w + 1] = k1
        y[2 * w] = x[2 * w] * (scale if k0 else zero)
        y[2 * w + 1] = x[2 * w + 1] * (scale if k1 else zero)
    if x.size % 2:
        r = mix64(key + (first_word + uint64(pairs)) * GAMMA)
        k = (r & _LOW32) < thr
        m[x.size - 1] = k
        y[x.size - 1] = x[x.size - 1] * (scale if k else zero)


@njit(parallel=True, **_OPTS)
def fused_forward(x, y, m, key, thr, scale):  # type: ignore[no-untyped-def]
    """y = x * where(m, scale, 0) and m, for flat contiguous x, y (float32/64) and m (bool), in one pass."""
    n = x.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        s = b * BLOCK
        e = min(n, s + BLOCK)
        _fused_block(x[s:e], y[s:e], m[s:e], key, uint64(s // 2), thr, scale)


@njit(parallel=True, **_OPTS)
def masked_scale(g, out, m, scale):  # type: ignore[no-untyped-def]
    """out = g * where(m, scale, 0): the backward pass, reading the stored 1-byte mask."""
    n = g.size
    zero = scale - scale
    for b in prange((n + BLOCK - 1) // BLOCK):
        s = b * BLOCK
        e = min(n, s + BLOCK)
        gs, os_, ms = g[s:e], out[s:e], m[s:e]
        for i in range(gs.size):
            os_[i] = gs[i] * (scale if ms[i] else zero)


@njit(parallel=True, **_OPTS)
def fill_mask(m, key, thr):  # type: ignore[no-untyped-def]
    """m only (the same bits as :func:`fused_forward`): shared masks and dtypes the loops cannot take."""
    n = m.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        s = b * BLOCK
        e = min(n, s + BLOCK)
        ms = m[s:e]
        first = uint64(s // 2)
        pairs = ms.size // 2
        for w in range(pairs):
            r = mix64(key + (first + uint64(w)) * GAMMA)
            ms[2 * w] = (r & _LOW32) < thr
            ms[2 * w + 1] = (r >> uint64(32)) < thr
        if ms.size % 2:
            r = mix64(key + (first + uint64(pairs)) * GAMMA)
            ms[ms.size - 1] = (r & _LOW32) < thr


@njit(parallel=True, **_OPTS)
def scale_rows(x, out, column):  # type: ignore[no-untyped-def]
    """out[r, :] = x[r, :] * column[r] for (rows, inner) x: channel dropout's one multiplier per row."""
    rows, inner = x.shape
    per = max(1, BLOCK // max(inner, 1))
    for b in prange((rows + per - 1) // per):
        r0 = b * per
        r1 = min(rows, r0 + per)
        for r in range(r0, r1):
            c = column[r]
            xr, orow = x[r], out[r]
            for i in range(inner):
                orow[i] = xr[i] * c
