"""numpy:fast - the fastest dropout we could build from plain NumPy (no compiled extension).

Why it is fast (measurements in results/numpy-fast/README.md):

* **8 random bits per element, not 32 or 64.** The keep decision compares one random *byte*
  with the top byte of a 32-bit integer threshold. Only the ~1/256 of elements whose byte
  *equals* that top byte (a "tie") draw a further 32-bit word, compared with the low 24 bits
  of the threshold. The decision is therefore exactly ``u < T`` for a uniform 32-bit ``u``
  (byte = top 8 bits of u, the tie word's top 24 bits = the rest), so the keep probability
  is ``T / 2**32`` with ``T = round(keep * 2**32)``: resolution 2^-32, error at most 2^-33,
  far inside the required 2^-24. RNG work falls ~4x below one 32-bit word per element.
  A keep that is a multiple of 1/256 (0.5, 0.75, ...) has no tie pass at all.
* **Raw output of the fastest bit generator**: ``SFC64.random_raw`` (~1.8 ns per 64-bit word
  here, the generator's own latency); no float conversion.
* **Blocks of 2^18 elements**: each block runs draw -> compare -> (ties) -> multiplier ->
  multiply back to back, so the bytes, mask and multiplier are still in cache for the next
  pass; results go with ``out=`` into preallocated arrays, scratch is reused across calls.
* **The multiplier as bits**: the 0/1 mask cast to uint32 times the bit pattern of the scale
  *is* ``where(m, scale, 0.0)``; one float multiply applies it. Bit-identical to the reference
  formula ``x * (m * scale).astype(dtype)`` (NaN/inf stay NaN, -x gives -0.0).
* **Threads**: blocks are spread over a persistent thread pool; NumPy releases the GIL
  inside ``random_raw``, ufunc loops, casts and ``nonzero``, so the threads really overlap.
* **Stored bool mask** (1 byte per element) for the backward pass, which reuses it.
* **Shared masks** (channel dropout, TF's noise_shape) draw only the small mask, serially, and
  apply it in one pass. A mask that varies over leading axes only, like (N, C, 1, 1), makes x a
  (rows, inner) matrix with one multiplier per row; NumPy's default 8192-element ufunc buffer
  would copy both operands of that broadcast (~2x a scalar multiply), so long rows are multiplied
  with the buffer shrunk to the row (:func:`multiply_rows`), short rows by fill-then-multiply.

The random stream (stable: same seed -> same mask on every machine, process and thread count):

* ``SeedSequence(seed)`` (OS entropy when unseeded) is the root. The flattened (C-order) mask
  is cut into blocks of :data:`BLOCK` elements; block ``b`` owns its own substream
  ``SFC64(SeedSequence(root.entropy, spawn_key=(b,)))`` (the b-th child of ``root.spawn``).
  Which thread runs a block never changes what it draws, so thread count cannot change a mask.
* In one call, a block of ``n`` elements draws ``ceil(n / 8)`` 64-bit outputs; their
  little-endian bytes, in order, are the elements' first-stage bytes. If the threshold's low
  24 bits are non-zero, the tie elements (in index order) then get the little-endian 32-bit
  halves (low half first) of ``ceil(ties / 2)`` further outputs. Keep 0 and keep 1 draw nothing.
* The next call continues every block's substream; :meth:`MaskStream.reseed` restarts them.
"""
from __future__ import annotations

import math
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

BIT_GENERATOR = "SFC64"
BLOCK = 1 << 18
"""Elements per block and per substream. Part of the stream definition: changing it changes masks.

Large because every NumPy call costs ~0.3-1 us of Python and a GIL hand-over between threads:
2^16-element blocks were 10 % slower on one thread and 20-35 % slower on two (the GIL
convoy); 2^18 and 2^19 were equal within noise (results/numpy-fast/README.md). A block and its
scratch (~4 MiB) sit in L2/L3. An array of at most 2^18 elements (one block) runs on one thread."""
THRESHOLD_BITS = 32
_FULL = 1 << THRESHOLD_BITS
_LITTLE = sys.byteorder == "little"
_UINT_OF = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def keep_threshold(keep: float) -> int:
    """``T`` with P(kept) = T / 2**32 exactly: keep * 2**32 is exact in float64, then rounded."""
    keep = float(keep)
    if not 0.0 <= keep <= 1.0:  # also rejects NaN
        raise ValueError(f"keep probability must be in [0, 1], got {keep!r}")
    return int(round(keep * _FULL))


@dataclass(frozen=True)
class Threshold:
    """P(kept) = value / 2**32, split for the two-stage draw; scalars as 0-d arrays (cheapest ufunc operands)."""

    value: int
    top: np.ndarray  # uint8: a first-stage byte below it keeps the element, equal to it is a tie
    low: np.ndarray  # uint32: a tie keeps the element when its 32-bit word is below it (0: no tie pass)


def threshold_for(keep: float) -> Threshold:
    """The :class:`Threshold` of ``keep`` (cached: a training loop asks for the same keep every step)."""
    return _threshold(float(keep))


@lru_cache(maxsize=64)
def _threshold(keep: float) -> Threshold:
    value = keep_threshold(keep)
    # a tie word w keeps the element when (w >> 8) < value's low 24 bits, i.e. w < low24 << 8
    top = np.array(min(value >> 24, 255), dtype=np.uint8)
    low = np.array((value & 0xFFFFFF) << 8, dtype=np.uint32)
    top.flags.writeable = low.flags.writeable = False
    return Threshold(value, top, low)


def threads_from_env() -> int:
    """DROPBENCH_THREADS, else OMP_NUM_THREADS, else the CPUs this process may run on."""
    for name in ("DROPBENCH_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _raw_le(gen: np.random.SFC64, words: int) -> np.ndarray:
    """``words`` raw 64-bit outputs laid out little-endian in memory on any machine."""
    raw = gen.random_raw(words)
    if not _LITTLE:
        raw.byteswap(inplace=True)
    return raw


class MaskStream:
    """Bernoulli masks from per-block SFC64 substreams (see the module docstring for the stream)."""

    def __init__(self, seed: int | None = None) -> None:
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        """Restart every block's substream from ``seed`` (None: fresh OS entropy)."""
        self._entropy = np.random.SeedSequence(seed).entropy
        self._generators: dict[int, np.random.SFC64] = {}

    def generator(self, block: int) -> np.random.SFC64:
        gen = self._generators.get(block)
        if gen is None:
            seq = np.random.SeedSequence(self._entropy, spawn_key=(block,))
            gen = self._generators[block] = getattr(np.random, BIT_GENERATOR)(seq)
        return gen

    def prepare(self, numel: int) -> None:
        """Create the substreams a ``numel``-element mask needs now (no draws), not in a timed step."""
        for block in range(-(-numel // BLOCK)):
            self.generator(block)

    def fill_block(self, block: int, threshold: Threshold, out: np.ndarray, ties_scratch: np.ndarray) -> None:
        """out[:] = Bernoulli(threshold.value / 2**32) for the elements of ``block`` (``out`` is its slice)."""
        n = out.size
        if threshold.value <= 0 or threshold.value >= _FULL:
            out.fill(threshold.value > 0)
            return
        gen = self.generator(block)
        first = _raw_le(gen, -(-n // 8)).view(np.uint8)[:n]
        np.less(first, threshold.top, out=out)
        if threshold.low:
            ties = np.equal(first, threshold.top, out=ties_scratch[:n]).nonzero()[0]
            if ties.size:
                words = _raw_le(gen, -(-ties.size // 2)).view("<u4")[: ties.size]
                out[ties] = words < threshold.low

    def fill(self, keep: float, out: np.ndarray) -> np.ndarray:
        """Serial fill of a flat bool mask (tests, and the broadcast-mask path)."""
        threshold = threshold_for(keep)
        scratch = np.empty(min(out.size, BLOCK), dtype=bool)
        for block, start in enumerate(range(0, out.size, BLOCK)):
            self.fill_block(block, threshold, out[start:start + BLOCK], scratch)
        return out


UNBUFFERED_MIN_INNER = 128
"""Rows at least this long are multiplied with NumPy's buffering off; shorter ones fill-then-multiply."""


def row_split(shape: Sequence[int], mask_shape: Sequence[int]) -> tuple[int, int] | None:
    """(rows, inner) when the mask varies over leading axes only and is 1 over the rest, else None.

    That is channel dropout's mask ((N, C, 1, 1) for (N, C, H, W)): x is then a (rows, inner)
    matrix and the mask one value per row.
    """
    shape, mask_shape = tuple(shape), tuple(mask_shape)
    if len(shape) != len(mask_shape) or 0 in shape:
        return None
    lead = len(shape)
    while lead > 0 and mask_shape[lead - 1] == 1:
        lead -= 1
    if mask_shape[:lead] != shape[:lead]:
        return None
    rows = math.prod(shape[:lead])
    return rows, math.prod(shape) // rows


@contextmanager
def _unbuffered(inner: int):
    """NumPy's ufunc buffer no longer than a row, so a row-broadcast multiply runs row by row.

    With the default 8192-element buffer, a (rows, inner) * (rows, 1) multiply with inner < 8192
    copies both operands through the buffer and runs at ~2x the time of a scalar multiply; with a
    buffer of at most ``inner`` elements the iterator hands each whole row to the SIMD loop.
    (The buffer size is per thread, so each worker sets and restores its own.)
    """
    old = np.setbufsize(max(16, inner - inner % 16))
    try:
        yield
    finally:
        np.setbufsize(old)


def multiply_rows(src: np.ndarray, column: np.ndarray, dst: np.ndarray) -> None:
    """dst = src * column for a (rows, inner) ``src`` and a (rows, 1) ``column``, bit for bit.

    Long rows: one unbuffered broadcast multiply over all of them. Short rows (Dropout1d's 64)
    would spend more on per-row loop calls than on the data, so block by block (~BLOCK
    elements, which stay in L2) the column is broadcast into dst (a plain fill) and dst is then
    multiplied by src in place: x * m and m * x are the same IEEE product.
    """
    rows, inner = src.shape
    if inner >= UNBUFFERED_MIN_INNER:
        with _unbuffered(inner):
            np.multiply(src, column, out=dst)
        return
    per_block = max(1, BLOCK // inner)
    for start in range(0, rows, per_block):
        part = slice(start, start + per_block)
        block = dst[part]
        np.copyto(block, column[part])
        np.multiply(block, src[part], out=block)


class StoredMask:
    """The ``mask`` view both stored-mask kernels (FastDropout here, numba:fused's FusedDropout) give:
    they keep the flat mask in ``_mask`` and the last forward's ``_mask_shape``."""

    _mask: np.ndarray
    _mask_shape: tuple[int, ...] | None

    @property
    def mask(self) -> np.ndarray:
        """The last forward's mask, shaped like its ``mask_shape`` (a view: copy it to keep it)."""
        if self._mask_shape is None:
            raise RuntimeError("no forward() yet")
        return self._mask.reshape(self._mask_shape)


class FastDropout(StoredMask):
    """Train-mode dropout y = x * m * scale with a stored mask for :meth:`backward`.

    ``keep`` sets m ~ Bernoulli(keep); ``scale`` is what a kept element is multiplied by
    (1/keep inverted, 1 vanilla). ``mask_shape`` (TF's noise_shape) shares one mask value
    along its size-1 axes. The multiplier is built as bits: the 0/1 mask cast to the float's
    unsigned twin, times the bit pattern of ``scale``, is exactly ``scale`` or +0.0, so
    y == x * where(m, scale, 0) bit for bit, as the reference formula gives it.
    """

    def __init__(self, seed: int | None = None, threads: int = 1) -> None:
        if int(threads) < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        self.threads = int(threads)
        self.stream = MaskStream(seed)
        self._pool: ThreadPoolExecutor | None = None  # created on the first parallel call, then kept
        self._pool_size = 0
        self._scratch: list[tuple[np.ndarray, np.ndarray]] = []
        self._mask = np.empty(0, dtype=bool)
        self._mask_shape: tuple[int, ...] | None = None
        self._x_shape: tuple[int, ...] | None = None
        self._scale: tuple[np.ndarray, np.dtype] | None = None  # scale's bits and the dtype of the last forward
        self._shared_multiplier = np.empty(0)  # where(m, scale, 0) of the last shared (broadcast) mask

    def reseed(self, seed: int | None) -> None:
        self.stream.reseed(seed)

    # -- plumbing ------------------------------------------------------------------
    def _workers(self, blocks: int) -> int:
        return max(1, min(self.threads, blocks))

    def _slot(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-worker scratch: a tie buffer and an 8-byte-per-element multiplier buffer."""
        while len(self._scratch) <= slot:
            self._scratch.append((np.zeros(BLOCK, dtype=bool), np.zeros(BLOCK * 8, dtype=np.uint8)))
        return self._scratch[slot]

    def _run(self, blocks: int, work) -> None:
        """Call work(first_block, stop_block, slot) on contiguous block ranges, one per worker."""
        workers = self._workers(blocks)
        for slot in range(workers):
            self._slot(slot)
        if workers == 1:
            work(0, blocks, 0)
            return
        pool = self._ensure_pool()
        bounds = [blocks * i // workers for i in range(workers + 1)]
        futures = [pool.submit(work, bounds[i], bounds[i + 1], i) for i in range(workers)]
        for future in futures:
            future.result()

    def _ensure_pool(self) -> ThreadPoolExecutor:
        """The persistent pool of ``threads`` workers (rebuilt if ``threads`` changed)."""
        if self._pool is None or self._pool_size != self.threads:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="numpy-fast")
            self._pool_size = self.threads
        return self._pool

    def _mask_buffer(self, numel: int) -> np.ndarray:
        if self._mask.size != numel:
            self._mask = np.empty(numel, dtype=bool)
        return self._mask

    @staticmethod
    def _multiplier(mask: np.ndarray, scale_bits: np.ndarray, dtype: np.dtype, raw: np.ndarray) -> np.ndarray:
        """where(mask, scale, 0) as ``dtype``, built in ``raw``: cast 0/1 to the unsigned twin, times scale's bits."""
        bits = raw[: mask.size * dtype.itemsize].view(scale_bits.dtype)
        np.copyto(bits, mask)
        np.multiply(bits, scale_bits, out=bits)
        return bits.view(dtype)

    @staticmethod
    @lru_cache(maxsize=64)
    def _scale_bits(scale: float, dtype: np.dtype) -> np.ndarray:
        """The bit pattern of ``scale`` rounded to ``dtype``, as a 0-d unsigned array (read-only: cached)."""
        bits = np.asarray(scale, dtype=dtype).view(_UINT_OF[dtype.itemsize])
        bits.flags.writeable = False
        return bits

    def prepare(self, shape: Sequence[int], mask_shape: Sequence[int] | None = None) -> None:
        """Allocate and touch everything a forward/backward of ``shape`` needs, outside timing."""
        shape = tuple(int(n) for n in shape)
        numel = math.prod(shape)
        mask_numel = numel if mask_shape is None else math.prod(int(n) for n in mask_shape)
        self.stream.prepare(mask_numel)
        self._mask_buffer(mask_numel).fill(False)
        workers = self._workers(-(-numel // BLOCK))  # a shared mask's rows are spread over as many workers
        for slot in range(workers):
            self._slot(slot)
        if workers > 1:  # start the worker threads now: the pool spawns them on demand
            pool, barrier = self._ensure_pool(), threading.Barrier(workers)
            for future in [pool.submit(barrier.wait, 10.0) for _ in range(workers)]:
                future.result()  # each task waits for all the others, so each runs on its own thread

    def _apply_shared(self, src: np.ndarray, dst: np.ndarray) -> None:
        """dst = src * multiplier of the last shared mask, broadcast over src (see :func:`row_split`).

        A mask that varies over leading axes only (channel dropout: (N, C, 1, 1)) is one
        multiplier per row of a (rows, inner) view; each worker takes one contiguous range of
        rows (no random numbers are drawn here, so there is nothing to keep in cache across
        passes, and every extra NumPy call costs a few microseconds). Any other mask shape is
        one NumPy broadcast.
        """
        mask_shape = self._mask_shape
        multiplier = self._shared_multiplier.reshape(mask_shape)
        split = row_split(src.shape, mask_shape)
        if split is None:
            np.multiply(src, multiplier, out=dst)
            return
        rows, inner = split
        src2, dst2, column = src.reshape(rows, inner), dst.reshape(rows, inner), multiplier.reshape(rows, 1)
        parts = self._workers(-(-src.size // BLOCK))

        def work(first: int, stop: int, slot: int) -> None:
            for part in range(first, stop):
                span = slice(rows * part // parts, rows * (part + 1) // parts)
                multiply_rows(src2[span], column[span], dst2[span])

        self._run(parts, work)

    # -- the two passes -------------------------------------------------------------
    def forward(self, x: np.ndarray, keep: float, scale: float, *, mask_shape: Sequence[int] | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
        """y = x * m * scale; m (of ``mask_shape``, default x.shape) is kept for :meth:`backward`."""
        threshold = threshold_for(keep)
        x = np.asarray(x)
        if x.dtype.kind != "f" or x.dtype.itemsize not in _UINT_OF:
            raise TypeError(f"numpy:fast takes float16/32/64 input, got {x.dtype}")
        scale_bits, dtype = self._scale_bits(float(scale), x.dtype), x.dtype
        mask_shape = tuple(x.shape) if mask_shape is None else tuple(int(n) for n in mask_shape)
        y = np.empty(x.shape, dtype=x.dtype) if out is None else out
        if y.shape != x.shape or y.dtype != x.dtype or not y.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {x.dtype} array of shape {x.shape}")
        self._x_shape, self._mask_shape, self._scale = tuple(x.shape), mask_shape, (scale_bits, dtype)
        numel = math.prod(mask_shape)
        mask = self._mask_buffer(numel)
        if mask_shape != tuple(x.shape):  # shared mask: small, drawn serially, applied by broadcasting
            self.stream.fill(keep, mask)
            self._shared_multiplier = self._multiplier(mask, scale_bits, dtype, np.empty(numel * 8, dtype=np.uint8))
            self._apply_shared(x, y)
            return y
        xf, yf = x.reshape(-1), y.reshape(-1)  # yf is a view: y is C-contiguous

        fill_block, multiplier = self.stream.fill_block, self._multiplier

        def work(first: int, stop: int, slot: int) -> None:
            ties, raw = self._scratch[slot]
            for block in range(first, stop):
                part = slice(block * BLOCK, min(numel, (block + 1) * BLOCK))
                m = mask[part]
                fill_block(block, threshold, m, ties)
                np.multiply(xf[part], multiplier(m, scale_bits, dtype, raw), out=yf[part])

        self._run(-(-numel // BLOCK), work)
        return y

    def backward(self, grad_out: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """grad = grad_out * m * scale with the mask and scale of the last :meth:`forward`."""
        if self._scale is None or self._mask_shape is None:
            raise RuntimeError("backward() before forward(): there is no mask to reuse")
        grad_out = np.asarray(grad_out)
        if tuple(grad_out.shape) != self._x_shape:
            raise ValueError(f"grad_out shape {grad_out.shape} != forward input shape {self._x_shape}")
        scale_bits, dtype = self._scale
        grad = np.empty(grad_out.shape, dtype=dtype) if out is None else out
        if grad.shape != grad_out.shape or grad.dtype != dtype or not grad.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {dtype} array of shape {grad_out.shape}")
        if self._mask_shape != self._x_shape:
            self._apply_shared(grad_out, grad)
            return grad
        mask, multiplier = self._mask, self._multiplier
        gf, of = grad_out.reshape(-1), grad.reshape(-1)
        numel = mask.size

        def work(first: int, stop: int, slot: int) -> None:
            raw = self._scratch[slot][1]
            for block in range(first, stop):
                part = slice(block * BLOCK, min(numel, (block + 1) * BLOCK))
                np.multiply(gf[part], multiplier(mask[part], scale_bits, dtype, raw), out=of[part])

        self._run(-(-numel // BLOCK), work)
        return grad


# -- the spec's semantics around a stored-mask kernel (numpy:fast and numba:fused share them) ----------
def train_scale(spec: Any) -> float:
    """The kept value's factor in training: 1/keep (inverted), 1 (vanilla), 0 at rate 1 (zeros, not 0/0)."""
    if spec.scaling == "vanilla":
        return 1.0
    return 0.0 if spec.keep_prob == 0.0 else 1.0 / spec.keep_prob


def eval_factor(spec: Any, dtype: np.dtype) -> np.ndarray:
    """Inference: identity (inverted) or x·keep (vanilla), in x's dtype."""
    return np.asarray(1.0 if spec.scaling == "inverted" else spec.keep_prob, dtype=dtype)


def run_kernel(kernel: Any, x: np.ndarray, grad_out: np.ndarray | None, spec: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(y, grad) through a kernel with ``reseed``, ``forward`` and a ``backward`` that reads the stored mask."""
    if spec.seed is not None:
        kernel.reseed(spec.seed)
    if not spec.training:
        factor = eval_factor(spec, x.dtype)
        return x * factor, (None if grad_out is None else grad_out * factor)
    y = kernel.forward(x, spec.keep_prob, train_scale(spec), mask_shape=spec.mask_shape(x.shape))
    return y, (None if grad_out is None else kernel.backward(grad_out))


def kernel_step(kernel: Any, x: np.ndarray, grad_out: np.ndarray | None, spec: Any,
                warm: Any = None) -> Any:
    """The timed step of a stored-mask kernel into preallocated y (and grad), built outside the timing.

    ``warm(keep, scale, mask_shape, y, grad)``, when given, runs once before the step is returned
    (buffers, thread pools, compiled loops); eval mode is a plain multiply by the eval factor.
    """
    if spec.seed is not None:
        kernel.reseed(spec.seed)
    y = np.zeros_like(x)  # zeros, not empty: the pages are touched now, not in the first step
    grad = None if grad_out is None else np.zeros_like(grad_out)
    if not spec.training:
        factor = eval_factor(spec, x.dtype)

        def eval_step() -> None:
            np.multiply(x, factor, out=y)
            if grad is not None:
                np.multiply(grad_out, factor, out=grad)

        return eval_step
    keep, scale, mask_shape = spec.keep_prob, train_scale(spec), spec.mask_shape(x.shape)
    if warm is not None:
        warm(keep, scale, mask_shape, y, grad)

    def step() -> None:
        kernel.forward(x, keep, scale, mask_shape=mask_shape, out=y)
        if grad is not None:
            kernel.backward(grad_out, out=grad)

    return step
