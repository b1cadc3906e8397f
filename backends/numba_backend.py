"""numba:fused - one compiled pass per direction: random bits, compare, y and a 1-byte mask.

Why: numpy:fast makes several passes over memory (draw, compare, multiplier, multiply); the floor
of forward dropout is one read of x, one write of y and one byte of mask per element. The kernels
(backends/numba_kernels.py, which documents the random stream) draw their bits in the loop from a
counter hash, so the loop vectorizes and threads (``numba.prange``) split it without changing a
mask. Backward reads the stored mask. Everything is compiled (``cache=True``) in :meth:`prepare`,
never in a timed step. float16, which numba's CPU target cannot do arithmetic on, draws the mask
with the same kernel and multiplies in NumPy (same bits, same formula).

``fused.channel1d`` / ``fused.channel2d`` are the kernel pinned to torch's Dropout1d / Dropout2d
layouts (as numpy:fast's): one mask value per row of a (rows, inner) view, applied by one compiled
row loop. Any other shared mask (``broadcast_axes``) is drawn by the kernel and broadcast by NumPy.
"""
from __future__ import annotations

import math
import os
import sys
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from backends.base import CAPABILITIES, ApiInfo, BaseBackend, Layout, Unavailable, Unsupported
from backends.numpy_fast import StoredMask, kernel_step, row_split, run_kernel, threads_from_env

_DTYPES = ("float32", "float16", "float64")
_NATIVE = (np.dtype(np.float32), np.dtype(np.float64))
"""dtypes the compiled loops multiply in; float16 takes the mask-then-NumPy path."""
THRESHOLD_BITS = 32
THREADING_LAYER = "workqueue"
"""numba's own thread pool, not OpenMP: on the shared 2-core machine the omp layer's 2-thread fused forward
took 13.8-17.5 ms (min of 40) against 2.9-6.5 ms with workqueue (results/numba-fused/README.md). Our calls
come from one Python thread, the case workqueue is made for; NUMBA_THREADING_LAYER overrides it."""
PREPARE_INPUT_SEED = 20261126
"""Seed of the timing inputs x and grad_out (as numpy's: their values do not matter, only that they are fixed)."""


def keep_threshold(keep: float) -> int:
    """T with P(kept) = T / 2**32 exactly (keep * 2**32 is exact in float64, then rounded); 2**32 keeps all."""
    keep = float(keep)
    if not 0.0 <= keep <= 1.0:  # also rejects NaN
        raise ValueError(f"keep probability must be in [0, 1], got {keep!r}")
    return int(round(keep * (1 << THRESHOLD_BITS)))


def seed_root(seed: int | None) -> int:
    """The stream's 64-bit root: mix64(seed mod 2**64), or OS entropy when unseeded."""
    if seed is None:
        return int.from_bytes(os.urandom(8), "little")
    return mix64_int(int(seed) % (1 << 64))


def mix64_int(z: int) -> int:
    """SplitMix64's finalizer on a Python int (the same function as the kernels' mix64)."""
    mask = (1 << 64) - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def call_key(root: int, call: int) -> int:
    """key_c = mix64(root + c * GAMMA) mod 2**64, the key of the c-th call since the last reseed."""
    return mix64_int((root + call * 0x9E3779B97F4A7C15) % (1 << 64))


class CallStream:
    """The calls of one stream: ``next_key`` is call c's key (then c += 1); :meth:`reseed` restarts at call 0.
    numba:fused and numba-cuda:fused share it, so the same seed gives both the same keys."""

    root: int
    calls: int

    def reseed(self, seed: int | None) -> None:
        self.root, self.calls = seed_root(seed), 0

    def next_key(self) -> np.uint64:
        key = np.uint64(call_key(self.root, self.calls))
        self.calls += 1
        return key


class FusedDropout(CallStream, StoredMask):
    """Train-mode dropout with a stored mask, on the compiled kernels; mirrors numpy:fast's FastDropout.

    ``forward`` draws call ``c`` of the stream (then c += 1), so unseeded calls continue it and
    :meth:`reseed` restarts it. The mask is 1 byte per element (bool) for element-wise masks; a shared
    mask keeps its small multiplier where(m, scale, 0) instead.
    """

    def __init__(self, kernels: ModuleType, seed: int | None = None) -> None:
        self.k = kernels
        self.reseed(seed)
        self._mask = np.empty(0, dtype=bool)
        self._mask_shape: tuple[int, ...] | None = None
        self._x_shape: tuple[int, ...] | None = None
        self._scale: np.generic | None = None
        self._multiplier = np.empty(0)

    def _mask_buffer(self, numel: int) -> np.ndarray:
        if self._mask.size != numel:
            self._mask = np.zeros(numel, dtype=bool)  # zeros: pages touched now, not in a timed step
        return self._mask

    def compile(self, dtype: np.dtype) -> None:
        """Compile (or load from numba's cache) every loop with the argument types the steps use."""
        dtype = np.dtype(dtype)
        x = np.zeros(3, dtype=dtype if dtype in _NATIVE else np.float32)
        m = np.zeros(3, dtype=bool)
        scale = x.dtype.type(2.0)
        self.k.fill_mask(m, np.uint64(1), np.uint64(1))
        if dtype in _NATIVE:
            self.k.fused_forward(x, x.copy(), m, np.uint64(1), np.uint64(1), scale)
            self.k.masked_scale(x, x.copy(), m, scale)
            x2 = x.reshape(1, 3)
            self.k.scale_rows(x2, x2.copy(), np.ones(1, dtype=dtype))

    def forward(self, x: np.ndarray, keep: float, scale: float, *, mask_shape: Sequence[int] | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
        """y = x * m * scale; m (of ``mask_shape``, default x.shape) is kept for :meth:`backward`."""
        thr = np.uint64(keep_threshold(keep))
        x = np.ascontiguousarray(x)
        if x.dtype.kind != "f" or x.dtype.itemsize not in (2, 4, 8):
            raise TypeError(f"numba:fused takes float16/32/64 input, got {x.dtype}")
        y = np.empty(x.shape, dtype=x.dtype) if out is None else out
        if y.shape != x.shape or y.dtype != x.dtype or not y.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {x.dtype} array of shape {x.shape}")
        mask_shape = tuple(x.shape) if mask_shape is None else tuple(int(n) for n in mask_shape)
        scale_ = x.dtype.type(scale)
        self._x_shape, self._mask_shape, self._scale = tuple(x.shape), mask_shape, scale_
        mask = self._mask_buffer(math.prod(mask_shape))
        key = self.next_key()
        if mask_shape == tuple(x.shape) and x.dtype in _NATIVE:
            self.k.fused_forward(x.reshape(-1), y.reshape(-1), mask, key, thr, scale_)
            return y
        self.k.fill_mask(mask, key, thr)
        if self._multiplier.size != mask.size or self._multiplier.dtype != x.dtype:
            self._multiplier = np.zeros(mask.size, dtype=x.dtype)
        np.multiply(mask, scale_, out=self._multiplier)  # exactly scale or +0.0: where(m, scale, 0)
        self._apply_shared(x, y)
        return y

    def _apply_shared(self, src: np.ndarray, dst: np.ndarray) -> None:
        """dst = src * multiplier (the last forward's), broadcast over src; rows by the compiled row loop."""
        multiplier = self._multiplier.reshape(self._mask_shape)
        split = row_split(src.shape, self._mask_shape)
        if src.dtype in _NATIVE and split is not None:
            rows, inner = split
            self.k.scale_rows(src.reshape(rows, inner), dst.reshape(rows, inner), self._multiplier)
            return
        np.multiply(src, multiplier, out=dst)

    def backward(self, grad_out: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """grad = grad_out * m * scale with the mask and scale of the last :meth:`forward`."""
        if self._scale is None or self._mask_shape is None:
            raise RuntimeError("backward() before forward(): there is no mask to reuse")
        grad_out = np.ascontiguousarray(grad_out)
        if tuple(grad_out.shape) != self._x_shape:
            raise ValueError(f"grad_out shape {grad_out.shape} != forward input shape {self._x_shape}")
        dtype = self._scale.dtype
        grad = np.empty(grad_out.shape, dtype=dtype) if out is None else out
        if grad.shape != grad_out.shape or grad.dtype != dtype or not grad.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {dtype} array of shape {grad_out.shape}")
        grad_out = grad_out.astype(dtype, copy=False)
        if self._mask_shape == self._x_shape and dtype in _NATIVE:
            self.k.masked_scale(grad_out.reshape(-1), grad.reshape(-1), self._mask, self._scale)
            return grad
        self._apply_shared(grad_out, grad)
        return grad


class NumbaBackend(BaseBackend):
    name = "numba"
    apis = ("fused", "fused.channel1d", "fused.channel2d")
    modules = ("numba", "llvmlite")
    infos = {
        "fused": ApiInfo(capabilities=CAPABILITIES, dtypes=_DTYPES),
        "fused.channel1d": ApiInfo(capabilities=CAPABILITIES, dtypes=_DTYPES, layout=Layout(ndim=3, broadcast_axes=(2,))),
        "fused.channel2d": ApiInfo(capabilities=CAPABILITIES, dtypes=_DTYPES, layout=Layout(ndim=4, broadcast_axes=(2, 3))),
    }

    def __init__(self, threads: int | None = None) -> None:
        """``threads`` for the kernels; None reads DROPBENCH_THREADS / OMP_NUM_THREADS / the CPU count."""
        super().__init__()
        self.threads = threads_from_env() if threads is None else int(threads)
        self._kernel: FusedDropout | None = None

    def _import_framework(self) -> ModuleType:
        if sys.byteorder != "little":  # the float16 path views nothing, but the tests' reference assumes it
            raise Unavailable("numba:fused is defined and tested on little-endian machines only")
        numba = super()._import_framework()
        if "NUMBA_THREADING_LAYER" not in os.environ:  # the user's choice wins; else ours, before any parallel launch
            numba.config.THREADING_LAYER = THREADING_LAYER
        return numba

    def kernels(self) -> ModuleType:
        """backends.numba_kernels (imports numba); Unavailable when numba is missing."""
        self.framework()
        from backends import numba_kernels  # noqa: PLC0415 - imports numba: only once the backend is used

        return numba_kernels

    def pin_threads(self, threads: int) -> dict[str, Any]:
        """NUMBA_NUM_THREADS (the pool size, read at import) and set_num_threads(n) for the kernels."""
        os.environ["NUMBA_NUM_THREADS"] = str(max(int(threads), 1))
        numba = self.framework()
        self.threads = int(threads)
        self._apply_threads()
        return {"numba.get_num_threads": numba.get_num_threads(), "threading_layer": self._threading_layer()}

    def _threading_layer(self) -> str:
        try:
            return str(self.framework().threading_layer())
        except ValueError:  # no parallel region has run yet
            return "not started"

    def _apply_threads(self) -> None:
        numba = self.framework()
        numba.set_num_threads(max(1, min(self.threads, numba.config.NUMBA_NUM_THREADS)))

    def fused_kernel(self) -> FusedDropout:
        """The kernel object; its random stream continues across calls like the other backends'."""
        if self._kernel is None:
            self._kernel = FusedDropout(self.kernels())
        self._apply_threads()
        return self._kernel


    def _impl(self, api: str):
        return self._fused

    def _fused(self, x: np.ndarray, grad_out: np.ndarray | None, spec: Any):
        return run_kernel(self.fused_kernel(), x, grad_out, spec)

    def prepare(self, shape: Sequence[int], spec: Any, *, api: str, direction: str,
                compiled: bool = False) -> Callable[[], None]:
        """One timed step on preallocated x, y (and grad_out, grad); every loop is compiled here first."""
        if compiled:
            raise Unsupported(f"{self.name}:{api}: the kernel is always compiled; no separate mode")
        shape_, backward = self._prepare_args(shape, spec, api, direction)
        if spec.dtype not in self.api_info(api).dtypes:
            raise Unsupported(f"{self.name}:{api} has no dtype {spec.dtype!r}")
        rng = np.random.default_rng(PREPARE_INPUT_SEED)
        x = rng.standard_normal(shape_).astype(spec.dtype)
        grad_out = rng.standard_normal(shape_).astype(spec.dtype) if backward else None
        kernel = self.fused_kernel()
        kernel.compile(x.dtype)

        def warm(keep: float, scale: float, mask_shape: tuple[int, ...], y: np.ndarray, grad: np.ndarray | None) -> None:
            kernel.forward(x, keep, scale, mask_shape=mask_shape, out=y)  # warm: mask buffer, thread pool
            if grad is not None:
                kernel.backward(grad_out, out=grad)
            if spec.seed is not None:
                kernel.reseed(spec.seed)  # the timed steps start the seeded stream at call 0

        return kernel_step(kernel, x, grad_out, spec, warm=warm)
