"""numba:fused: its counter-hash stream, 2^-32 resolution, mask reuse, thread independence, compile-in-prepare.

The reference below re-derives every mask from the recipe in backends/numba_kernels.py's docstring
with NumPy uint64 arithmetic, independently of the compiled loops, so a kernel change that moves a
mask for a seed (and so breaks reproducibility) fails here, not silently.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba", reason="numba is not installed (the `all` extra pins it); numba:fused cannot run")

from backends.numba_backend import FusedDropout, NumbaBackend, call_key, keep_threshold, mix64_int, seed_root  # noqa: E402
from suite.bench.cases import bench_shape  # noqa: E402
from suite.spec import DropoutSpec  # noqa: E402
from suite.verify.conformance import check_api  # noqa: E402
from suite.verify.stats import binomial_interval  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ALPHA = 1e-7  # false-fail probability of each statistical assertion here
GAMMA = 0x9E3779B97F4A7C15


@pytest.fixture(scope="module")
def backend() -> NumbaBackend:
    return NumbaBackend(threads=2)


@pytest.fixture(scope="module")
def kernels(backend: NumbaBackend):
    return backend.kernels()


@pytest.fixture(scope="module")
def block(kernels) -> int:
    return int(kernels.BLOCK)


def np_mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer on a uint64 array (NumPy wraps uint64 arithmetic mod 2^64)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def reference_bits(seed: int, call: int, n: int) -> np.ndarray:
    """The 32 bits u of each of n mask elements in call ``call`` after seeding (the docstring's recipe)."""
    root = mix64_int(seed % 2**64)
    key = mix64_int((root + call * GAMMA) % 2**64)
    words = np.arange((n + 1) // 2, dtype=np.uint64)
    with np.errstate(over="ignore"):
        words = np_mix64(np.uint64(key) + words * np.uint64(GAMMA))
    pairs = np.stack([words & np.uint64(0xFFFFFFFF), words >> np.uint64(32)], axis=1)
    return pairs.reshape(-1)[:n]


def reference_mask(seed: int, call: int, n: int, keep: float) -> np.ndarray:
    return reference_bits(seed, call, n) < np.uint64(int(round(keep * 2**32)))


def test_mix64_is_splitmix64():
    """Known answers of SplitMix64 from state 0 (Vigna's splitmix64.c): catches a wrong constant or shift."""
    outputs = [mix64_int((k * GAMMA) % 2**64) for k in (1, 2, 3)]
    assert outputs == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    assert np_mix64(np.array([GAMMA], dtype=np.uint64))[0] == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("keep", [0.3, 0.5, 0.9, 1e-9, 1 - 1e-9, 0.0, 1.0])
def test_masks_are_the_documented_stream(kernels, block, keep):
    """Element for element, for three blocks (the last partial, odd length) and two successive calls."""
    n = 2 * block + block // 2 + 3
    drop = FusedDropout(kernels, seed=11)
    x = np.ones(n, dtype=np.float32)
    for call in range(2):
        drop.forward(x, keep, 1.0)
        np.testing.assert_array_equal(drop.mask, reference_mask(11, call, n, keep))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_y_is_the_reference_formula_bit_for_bit(kernels, dtype):
    """y == x * (m * scale).astype(dtype): a dropped NaN/inf stays NaN, a dropped -x gives -0.0."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(4099).astype(dtype)
    x[:6] = [np.nan, np.inf, -np.inf, -0.0, -1.5, 3.0]
    keep = 0.7
    drop = FusedDropout(kernels, seed=5)
    y = drop.forward(x, keep, 1 / keep)
    m = reference_mask(5, 0, x.size, keep)
    expected = x * (m * (1 / keep)).astype(dtype)
    uint = {2: np.uint16, 4: np.uint32, 8: np.uint64}[x.dtype.itemsize]
    np.testing.assert_array_equal(y.view(uint), expected.view(uint))


def test_resolution_is_2_pow_minus_32(kernels):
    """keep = u/2^32 drops an element whose bits are u; (u+1)/2^32 keeps it: every one of the 32 bits counts.

    A kernel comparing 16 (or 24) bits would decide both keeps alike for these elements. Elements 0 and
    1 use the low and the high half of the first word.
    """
    bits = reference_bits(21, 0, 8)
    x = np.ones(8, dtype=np.float32)
    for e in (0, 1, 6, 7):
        u = int(bits[e])
        for t, kept in ((u, False), (u + 1, True)):
            drop = FusedDropout(kernels, seed=21)
            drop.forward(x, t / 2**32, 1.0)
            assert bool(drop.mask[e]) is kept, (e, u, t)
    assert keep_threshold(2**-32) == 1 and keep_threshold(1.0) == 2**32 and keep_threshold(0.5 + 2**-32) == 2**31 + 1


def test_kept_fraction_is_exact_binomial_between_8_bit_levels(kernels):
    """keep = 77.5/256 lies between two 8-bit levels: the count must be Binomial(n, T/2^32) (ALPHA 1e-7)."""
    n, keep = 1 << 21, 77.5 / 256
    drop = FusedDropout(kernels, seed=2026)
    drop.forward(np.ones(n, dtype=np.float32), keep, 1 / keep)
    kept = int(drop.mask.sum())
    lo, hi = binomial_interval(n, keep_threshold(keep) / 2**32, ALPHA)
    assert lo <= kept <= hi
    lo8, hi8 = binomial_interval(n, 77 / 256, ALPHA)
    assert not lo8 <= kept <= hi8  # an 8-bit draw would land here


def _digest(mask: np.ndarray) -> str:
    return hashlib.sha256(np.packbits(mask).tobytes()).hexdigest()


def test_mask_does_not_depend_on_the_thread_count(kernels, block):
    """1 thread in-process vs 2 in-process vs 3 in a subprocess (NUMBA_NUM_THREADS=3): identical masks."""
    import numba  # noqa: PLC0415 - importorskip above guards it

    n = 5 * block + 17
    x = np.ones(n, dtype=np.float32)
    digests = []
    for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        numba.set_num_threads(threads)
        drop = FusedDropout(kernels, seed=9)
        drop.forward(x, 0.4, 2.5)
        drop.forward(x, 0.4, 2.5)  # the second call of the stream too
        digests.append(_digest(drop.mask))
    code = (
        "import numba, numpy as np, hashlib\n"
        "from backends.numba_backend import NumbaBackend, FusedDropout\n"
        "numba.set_num_threads(3)\n"
        f"d = FusedDropout(NumbaBackend().kernels(), seed=9); x = np.ones({n}, np.float32)\n"
        "d.forward(x, 0.4, 2.5); d.forward(x, 0.4, 2.5)\n"
        "print(hashlib.sha256(np.packbits(d.mask).tobytes()).hexdigest(), numba.get_num_threads())\n")
    env = {**os.environ, "NUMBA_NUM_THREADS": "3"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    digest, threads = proc.stdout.split()
    assert threads == "3"
    assert digests[0] == digests[1] == digest
    assert digest == _digest(reference_mask(9, 1, n, 0.4))


def test_backward_reads_the_stored_mask(kernels):
    """The gradient follows the stored mask (even when it is overwritten), not a fresh draw."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1001).astype(np.float32)
    g = rng.standard_normal(1001).astype(np.float32)
    drop = FusedDropout(kernels, seed=1)
    drop.forward(x, 0.5, 2.0)
    drop.forward(x, 0.5, 2.0)  # backward must use this (the last) mask
    np.testing.assert_array_equal(drop.backward(g), g * (drop.mask * 2.0).astype(np.float32))
    drop.mask[:] = True
    np.testing.assert_array_equal(drop.backward(g), g * np.float32(2.0))
    fresh = FusedDropout(kernels)
    with pytest.raises(RuntimeError, match="before forward"):
        fresh.backward(g)


def test_seed_semantics(backend):
    """spec.seed given: the same mask every call; None: the stream continues (call counter advances)."""
    x = np.ones((64, 100), dtype=np.float32)
    seeded = DropoutSpec(rate=0.5, seed=123)
    first = backend.forward(x, seeded, api="fused")
    np.testing.assert_array_equal(backend.forward(x, seeded, api="fused"), first)
    nxt = backend.forward(x, DropoutSpec(rate=0.5), api="fused")
    np.testing.assert_array_equal(nxt != 0, reference_mask(123, 1, x.size, 0.5).reshape(x.shape))
    assert seed_root(None) != seed_root(None)  # unseeded roots come from OS entropy
    assert call_key(seed_root(1), 0) != call_key(seed_root(1), 1)


@pytest.mark.parametrize("api,axes", [("fused.channel1d", (2,)), ("fused.channel2d", (2, 3)), ("fused", (0,))])
def test_shared_masks_are_the_stream_over_the_mask_shape(backend, api, axes):
    """Channel layouts (compiled row loop) and other shared axes (NumPy broadcast): one draw per mask element."""
    shape = {"fused.channel1d": (8, 16, 40), "fused.channel2d": (4, 8, 5, 6), "fused": (3, 50, 7)}[api]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32) + 10
    spec = DropoutSpec(rate=0.3, seed=77, broadcast_axes=axes)
    y, grad = backend.forward_backward(x, np.ones_like(x), spec, api=api)
    mask_shape = spec.mask_shape(shape)
    m = reference_mask(77, 0, int(np.prod(mask_shape)), 0.7).reshape(mask_shape)
    multiplier = (m * (1 / 0.7)).astype(np.float32)
    np.testing.assert_array_equal(y, x * multiplier)
    np.testing.assert_array_equal(grad, np.broadcast_to(multiplier, shape))


PREPARE_PROBE = """
import json, sys
from backends.numba_backend import NumbaBackend
from suite.spec import DropoutSpec
from backends import numba_kernels as k
names = ("fused_forward", "masked_scale", "fill_mask", "scale_rows")
before = {n: len(getattr(k, n).signatures) for n in names}
b = NumbaBackend(threads=1)
api, shape, axes = sys.argv[1], tuple(json.loads(sys.argv[2])), tuple(json.loads(sys.argv[3]))
step = b.prepare(shape, DropoutSpec(rate=0.5, broadcast_axes=axes), api=api, direction="forward_backward")
after = {n: list(map(str, getattr(k, n).signatures)) for n in names}
for _ in range(3):
    step()
steps = {n: list(map(str, getattr(k, n).signatures)) for n in names}
print(json.dumps({"before": before, "after": after, "steps": steps}))
"""


@pytest.mark.parametrize("api", ["fused", "fused.channel2d"])
def test_compiled_in_prepare_never_in_a_step(api):
    """A fresh process: no signatures before prepare(), all after it, and timed steps add none.

    Catches lazy compilation in the first timed round, and a step passing other argument types
    (e.g. a Python int key) than prepare compiled for, which would compile inside the timing.
    """
    from backends.base import Layout  # noqa: PLC0415

    layout = NumbaBackend().api_info(api).layout
    shape = bench_shape(1 << 16, layout)
    axes = list(layout.broadcast_axes) if isinstance(layout, Layout) else []
    proc = subprocess.run([sys.executable, "-c", PREPARE_PROBE, api, json.dumps(list(shape)), json.dumps(axes)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert all(v == 0 for v in out["before"].values())
    used = ("fused_forward", "masked_scale") if api == "fused" else ("fill_mask", "scale_rows")
    assert all(out["after"][n] for n in used), out["after"]
    assert out["steps"] == out["after"]


def test_pin_threads_sets_numbas_pool(backend):
    import numba  # noqa: PLC0415

    record = backend.pin_threads(1)
    assert record["numba.get_num_threads"] == 1 == numba.get_num_threads()
    backend.forward(np.ones(8, np.float32), DropoutSpec(rate=0.5), api="fused")  # launches the pool
    expected = os.environ.get("NUMBA_THREADING_LAYER", "workqueue")
    assert backend.pin_threads(1)["threading_layer"] == expected  # not the omp layer (slow when oversubscribed)
    backend.pin_threads(2)
    assert numba.get_num_threads() == min(2, numba.config.NUMBA_NUM_THREADS)


@pytest.mark.parametrize("api", NumbaBackend.apis)
def test_conforms(backend, api):
    """Every conformance check passes (none failing, none erroring) for each API id."""
    records = check_api(backend, api)
    bad = [r for r in records if r.status in ("fail", "error")]
    assert not bad, bad
    assert sum(r.status == "pass" for r in records) >= 60
