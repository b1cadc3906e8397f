"""The CUDA kernels of numba-cuda:fused: numba:fused's random stream on a CUDA grid (importing this imports numba.cuda).

The stream is the one backends/numba_kernels.py defines (the same constants, imported from there):
word ``w`` of a call with key ``k`` is ``mix64(k + w * GAMMA)``; element ``e`` takes the low 32 bits of
word ``e // 2`` when ``e`` is even, the high 32 bits when odd, and is kept iff those bits are below
``T = round(keep * 2^32)``. So for the same seed and call, every element's bit is numba:fused's on the
CPU, whatever the launch shape: here one thread handles one word (two elements) of a grid-stride loop.

y is ``x * (scale if kept else 0)`` in x's dtype, one IEEE multiply as on the CPU (float16 included: the
CPU path multiplies the float16 multiplier ``where(m, scale, 0)`` in NumPy, the same rounding). Under
numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same source runs as Python on the CPU, which is
how the tests and ``numba-cudasim`` check it without a GPU.
"""
from __future__ import annotations

from numba import cuda, uint64

from backends.numba_kernels import _C1, _C2, _LOW32, GAMMA

THREADS = 256
"""Threads per block on a GPU (the simulator gets a small launch of its own: see numba_cuda_backend.launch)."""


@cuda.jit(device=True)
def mix64(z):  # type: ignore[no-untyped-def]
    """SplitMix64's finalizer, as numba_kernels.mix64."""
    z = (z ^ (z >> uint64(30))) * _C1
    z = (z ^ (z >> uint64(27))) * _C2
    return z ^ (z >> uint64(31))


@cuda.jit
def fused_forward(x, y, m, key, thr, scale):  # type: ignore[no-untyped-def]
    """y = x * where(m, scale, 0) and the bool mask m, for flat x and y; thread i takes words i, i + grid, ..."""
    n = x.size
    zero = scale - scale  # +0.0 in scale's own dtype
    for w in range(cuda.grid(1), (n + 1) // 2, cuda.gridsize(1)):
        r = mix64(key + uint64(w) * GAMMA)
        e = 2 * w
        k0 = (r & _LOW32) < thr
        m[e] = k0
        y[e] = x[e] * (scale if k0 else zero)
        if e + 1 < n:
            k1 = (r >> uint64(32)) < thr
            m[e + 1] = k1
            y[e + 1] = x[e + 1] * (scale if k1 else zero)


@cuda.jit
def fill_mask(m, key, thr):  # type: ignore[no-untyped-def]
    """m only (the bits of :func:`fused_forward`): a mask shared along axes, drawn in its own shape."""
    n = m.size
    for w in range(cuda.grid(1), (n + 1) // 2, cuda.gridsize(1)):
        r = mix64(key + uint64(w) * GAMMA)
        e = 2 * w
        m[e] = (r & _LOW32) < thr
        if e + 1 < n:
            m[e + 1] = (r >> uint64(32)) < thr


@cuda.jit
def masked_scale(g, out, m, scale):  # type: ignore[no-untyped-def]
    """out = g * where(m, scale, 0): the backward pass, reading the stored mask."""
    zero = scale - scale
    for i in range(cuda.grid(1), g.size, cuda.gridsize(1)):
        out[i] = g[i] * (scale if m[i] else zero)


@cuda.jit
def zero_fill(buffer):  # type: ignore[no-untyped-def]
    """buffer[:] = 0: the L2 flush between cold CUDA-event timings (backends/cuda_timing.py)."""
    for i in range(cuda.grid(1), buffer.size, cuda.gridsize(1)):
        buffer[i] = 0
