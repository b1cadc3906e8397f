"""numpy:fast: its random stream, its 2^-32 keep resolution, its mask reuse, and that it conforms.

The stream test re-derives every mask from the documented recipe (backends/numpy_fast.py
docstring) with plain SFC64 calls, so a change to the kernel that changes masks for a seed
(and so breaks reproducibility across versions) fails here, not silently.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.base import Unsupported
from backends.numpy_backend import NumpyBackend
from backends.numpy_fast import BLOCK, UNBUFFERED_MIN_INNER, FastDropout, MaskStream, keep_threshold, row_split
from suite.bench.cases import bench_shape
from suite.spec import DropoutSpec
from suite.verify.conformance import check_api
from suite.verify.stats import binomial_interval

REPO = Path(__file__).resolve().parents[1]
ALPHA = 1e-7  # false-fail probability of each statistical assertion here
N_SPAN = 2 * BLOCK + BLOCK // 2 + 3  # three blocks, the last one partial and of odd length


def _le_bytes(words: np.ndarray) -> np.ndarray:
    return np.frombuffer(words.astype("<u8").tobytes(), dtype=np.uint8)


def documented_mask(seed: int, n: int, keep: float) -> np.ndarray:
    """The stream as the module docstring defines it, written independently of the kernel.

    Element i of block b gets the 32-bit word u = byte << 24 | (tie word >> 8) (low bits
    only matter for ties) and is kept iff u < T = round(keep * 2**32).
    """
    threshold = int(round(keep * 2**32))
    entropy = np.random.SeedSequence(seed).entropy
    out = []
    for block, start in enumerate(range(0, n, BLOCK)):
        size = min(BLOCK, n - start)
        gen = np.random.SFC64(np.random.SeedSequence(entropy, spawn_key=(block,)))
        u = _le_bytes(gen.random_raw(-(-size // 8)))[:size].astype(np.uint64) << np.uint64(24)
        if threshold & 0xFFFFFF:
            ties = np.flatnonzero(u >> np.uint64(24) == threshold >> 24)
            words = np.frombuffer(_le_bytes(gen.random_raw(-(-ties.size // 2))).tobytes(), dtype="<u4")[: ties.size]
            u[ties] |= words.astype(np.uint64) >> np.uint64(8)
        out.append(u < threshold)
    return np.concatenate(out)


# -- resolution --------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [1e-6, 0.1, 0.3, 0.5, 0.7, 0.9, 1 - 2**-20])
def test_keeps_2_to_the_minus_24_apart_get_thresholds_256_apart(keep: float) -> None:
    # T / 2**32 is the exact keep probability, so 256 units of T are 2^-24 of probability.
    assert keep_threshold(keep + 2**-24) - keep_threshold(keep) == 256
    assert abs(keep_threshold(keep) / 2**32 - keep) <= 2**-33


def test_threshold_edges_and_bad_keeps() -> None:
    assert keep_threshold(0.0) == 0 and keep_threshold(1.0) == 2**32
    for bad in (-1e-9, 1.5, float("nan")):
        with pytest.raises(ValueError, match="keep probability"):
            keep_threshold(bad)


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.3 + 2**-24, 1 - 2**-30, 2**-30])
def test_mask_is_the_documented_32_bit_comparison(keep: float) -> None:
    got = MaskStream(11).fill(keep, np.empty(N_SPAN, dtype=bool))
    np.testing.assert_array_equal(got, documented_mask(11, N_SPAN, keep))


def test_sub_byte_keep_levels_are_realised() -> None:
    """keep = 128.5/256 lies between two 8-bit levels: only the tie stage can produce it."""
    n, keep = 2**22, 128.5 / 256
    kept = int(MaskStream(3).fill(keep, np.empty(n, dtype=bool)).sum())
    lo, hi = binomial_interval(n, keep_threshold(keep) / 2**32, ALPHA)
    assert lo <= kept <= hi
    assert not lo <= n // 2 <= hi  # an 8-bit-only draw (keep 0.5) would fail: the test can fail


def test_keeps_2_to_the_minus_24_apart_nest_under_one_seed() -> None:
    """Same seed, same top byte: the larger keep keeps a superset, exactly the ties in the gap."""
    keep = 0.7
    small = MaskStream(5).fill(keep, np.empty(N_SPAN, dtype=bool))
    large = MaskStream(5).fill(keep + 2**-24, np.empty(N_SPAN, dtype=bool))
    assert not (small & ~large).any()
    np.testing.assert_array_equal(large, documented_mask(5, N_SPAN, keep + 2**-24))


# -- the stream --------------------------------------------------------------------------
def test_thread_count_does_not_change_masks() -> None:
    x = np.random.default_rng(0).uniform(0.5, 2.0, N_SPAN).astype(np.float32)
    runs = []
    for threads in (1, 2, 3):
        kernel = FastDropout(seed=9, threads=threads)
        runs.append([kernel.forward(x, 0.9, 1 / 0.9).copy() for _ in range(2)])  # and the continuation
    for other in runs[1:]:
        for first, second in zip(runs[0], other):
            np.testing.assert_array_equal(first, second)
    assert not np.array_equal(runs[0][0] != 0, runs[0][1] != 0)


def test_prefix_blocks_do_not_depend_on_array_length() -> None:
    short = MaskStream(4).fill(0.9, np.empty(2 * BLOCK, dtype=bool))
    long = MaskStream(4).fill(0.9, np.empty(3 * BLOCK, dtype=bool))
    np.testing.assert_array_equal(short, long[: 2 * BLOCK])


def _digest(mask: np.ndarray) -> str:
    return hashlib.sha256(np.packbits(mask).tobytes()).hexdigest()


def test_same_seed_same_mask_in_another_process() -> None:
    code = (
        "import hashlib, numpy as np\n"
        "from backends.numpy_fast import FastDropout\n"
        f"k = FastDropout(seed=1234, threads=2)\n"
        f"k.forward(np.ones({N_SPAN}, np.float32), 0.9, 1 / 0.9)\n"
        "print(hashlib.sha256(np.packbits(k.mask).tobytes()).hexdigest())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    here = FastDropout(seed=1234, threads=1)
    here.forward(np.ones(N_SPAN, np.float32), 0.9, 1 / 0.9)
    assert proc.stdout.strip() == _digest(here.mask)


def test_keep_one_and_zero_draw_nothing() -> None:
    stream = MaskStream(8)
    assert stream.fill(1.0, np.empty(1000, dtype=bool)).all()
    assert not stream.fill(0.0, np.empty(1000, dtype=bool)).any()
    np.testing.assert_array_equal(stream.generator(0).random_raw(4), MaskStream(8).generator(0).random_raw(4))


# -- forward / backward --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_output_is_the_reference_formula_bit_for_bit(dtype: str) -> None:
    x = np.random.default_rng(1).normal(size=(300, 700)).astype(dtype)
    x[0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    kernel = FastDropout(seed=2)
    for keep in (0.9, 0.5, 0.0):
        scale = 0.0 if keep == 0 else 1 / keep
        with np.errstate(invalid="ignore"):  # inf * 0 is NaN in both, as in the reference
            y = kernel.forward(x, keep, scale)
            expected = x * (kernel.mask * scale).astype(dtype)
        np.testing.assert_array_equal(y.view(f"u{x.itemsize}"), expected.view(f"u{x.itemsize}"))


def test_backward_reuses_the_forward_mask() -> None:
    rng = np.random.default_rng(2)
    x = rng.uniform(0.5, 2.0, N_SPAN).astype(np.float32)
    grad_out = rng.normal(size=N_SPAN).astype(np.float32)
    kernel = FastDropout(seed=3, threads=2)
    with pytest.raises(RuntimeError, match="before forward"):
        kernel.backward(grad_out)
    for _ in range(2):  # the second forward draws a new mask; backward must follow it
        y = kernel.forward(x, 0.8, 1.25)
        grad = kernel.backward(grad_out)
        np.testing.assert_array_equal(grad, grad_out * ((y != 0) * np.float32(1.25)).astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        kernel.backward(grad_out[:-1])


def test_shared_mask_is_broadcast_forward_and_backward() -> None:
    x = np.random.default_rng(4).uniform(0.5, 2.0, (8, 5, 6)).astype(np.float32)
    kernel = FastDropout(seed=6)
    y = kernel.forward(x, 0.5, 2.0, mask_shape=(8, 1, 6))
    kept = y != 0
    assert (kept == kept[:, :1, :]).all() and 0 < kept.mean() < 1
    np.testing.assert_array_equal(kernel.backward(x), y)  # grad_out = x gives the same product


@pytest.mark.parametrize(("shape", "mask_shape", "split"), [
    ((1024, 16, 16, 16), (1024, 16, 1, 1), (16384, 256)),  # Dropout2d's layout
    ((4, 64, 64), (4, 64, 1), (256, 64)),                  # Dropout1d's layout
    ((8, 5, 6), (8, 5, 1), (40, 6)),
    ((3, 1, 5), (3, 1, 1), (3, 5)),
    ((8, 5, 6), (8, 1, 6), None),                          # varies after a shared axis: not rows
    ((8, 5, 6), (1, 5, 6), None),
    ((0, 4, 4), (0, 4, 1), None),
])
def test_row_split_finds_masks_that_vary_over_leading_axes_only(shape, mask_shape, split) -> None:
    assert row_split(shape, mask_shape) == split


@pytest.mark.parametrize("inner_axes", [(8, 2 * UNBUFFERED_MIN_INNER), (8, 8)])  # unbuffered rows, fill-then-multiply
@pytest.mark.parametrize("threads", [1, 2])
def test_row_broadcast_is_the_reference_formula_bit_for_bit(inner_axes: tuple[int, int], threads: int) -> None:
    shape = (BLOCK // 64 + 3, *inner_axes)  # several row blocks, the last one partial
    mask_shape = (shape[0], 1, 1)
    rng = np.random.default_rng(7)
    x, grad_out = rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)
    x[0, 0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    x[-1] *= -1
    kernel = FastDropout(seed=8, threads=threads)
    bufsize = np.getbufsize()
    with np.errstate(invalid="ignore"):
        y = kernel.forward(x, 0.7, 1 / 0.7, mask_shape=mask_shape)
        multiplier = (kernel.mask * (1 / 0.7)).astype(np.float32)
        expected = x * multiplier
    assert 0 < kernel.mask.mean() < 1
    np.testing.assert_array_equal(y.view(np.uint32), expected.view(np.uint32))
    np.testing.assert_array_equal(kernel.backward(grad_out).view(np.uint32), (grad_out * multiplier).view(np.uint32))
    assert np.getbufsize() == bufsize  # the unbuffered multiply restores NumPy's buffer size


def test_row_broadcast_mask_does_not_depend_on_thread_count() -> None:
    x = np.ones((BLOCK // 16, 4, 4), np.float32)
    masks = []
    for threads in (1, 2, 3):
        kernel = FastDropout(seed=9, threads=threads)
        kernel.forward(x, 0.5, 2.0, mask_shape=(x.shape[0], 1, 1))
        masks.append(kernel.mask.copy())
    assert all(np.array_equal(masks[0], m) for m in masks[1:])


def test_out_must_fit() -> None:
    x = np.ones((4, 6), np.float32)
    kernel = FastDropout(seed=0)
    with pytest.raises(ValueError, match="C-contiguous"):
        kernel.forward(x, 0.5, 2.0, out=np.empty((6, 4), np.float32).T)
    with pytest.raises(TypeError, match="float16/32/64"):
        kernel.forward(x.astype(np.int32), 0.5, 2.0)


# -- the adapter -----------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["fast", "fast.channel1d", "fast.channel2d"])
def test_fast_passes_every_conformance_check(api: str) -> None:
    records = check_api(NumpyBackend(threads=2), api)
    bad = [f"{r.check}: {r.status}: {r.detail}" for r in records if r.status != "pass"]
    assert not bad, "\n".join(bad)
    assert any(r.check.startswith("gradient/") for r in records)
    shared = "broadcast-shared/" if api == "fast" else "mask-shared/"  # a fixed layout is checked as shared
    assert any(r.check.startswith(shared) for r in records)


def _timing_input(backend: NumpyBackend, api: str, numel: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The shape `dropbench bench` gives the API (its fixed channel layout, else 2-d) and its broadcast axes."""
    layout = backend.api_info(api).layout
    return bench_shape(numel, layout), (() if layout is None else layout.broadcast_axes)


@pytest.mark.parametrize("api", NumpyBackend.apis)
@pytest.mark.parametrize("direction", ["forward", "forward_backward"])
def test_prepare_gives_a_step(api: str, direction: str) -> None:
    backend = NumpyBackend(threads=2)
    shape, axes = _timing_input(backend, api, 3 * BLOCK)
    spec = DropoutSpec(rate=0.1, seed=5, broadcast_axes=axes, kind=backend.api_info(api).kind)
    step = backend.prepare(shape, spec, api=api, direction=direction)
    assert step() is None
    step()


def test_prepare_fast_applies_the_seed_once() -> None:
    backend = NumpyBackend(threads=2)
    step = backend.prepare((N_SPAN,), DropoutSpec(rate=0.1, seed=21), api="fast", direction="forward_backward")
    step()
    first = backend.fast_kernel().mask.copy()
    np.testing.assert_array_equal(first, documented_mask(21, N_SPAN, 0.9))
    step()
    assert not np.array_equal(first, backend.fast_kernel().mask)  # the stream continues


@pytest.mark.parametrize("api", NumpyBackend.apis)
def test_prepare_refuses_what_numpy_cannot_time(api: str) -> None:
    backend = NumpyBackend(threads=1)
    shape, axes = _timing_input(backend, api, 4096)
    spec = DropoutSpec(broadcast_axes=axes, kind=backend.api_info(api).kind)
    with pytest.raises(Unsupported, match="compiled"):
        backend.prepare(shape, spec, api=api, direction="forward", compiled=True)
    with pytest.raises(Unsupported, match="bfloat16"):
        backend.prepare(shape, spec.replace(dtype="bfloat16"), api=api, direction="forward")
    with pytest.raises(Unsupported):
        backend.prepare(shape, spec.replace(device="cuda"), api=api, direction="forward")
    with pytest.raises(ValueError, match="direction"):
        backend.prepare(shape, spec, api=api, direction="backward")
