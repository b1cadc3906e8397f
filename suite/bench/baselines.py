"""Roofline baselines timed next to every dropout: a plain copy and one random 32-bit word per element.

``baseline:copy`` reads the array once and writes it once (memory bound, the traffic a
forward dropout cannot avoid). ``baseline:rng32`` produces one 32-bit random word per
element (RNG bound, the randomness a per-element mask needs at the very least). Both write
into buffers allocated before timing, so neither pays for allocation or page faults.

CPU: NumPy. The RNG is ``SFC64.random_raw`` (see :data:`CHOSEN_BIT_GENERATOR` and
:func:`survey_rng`, ``python -m suite.bench.baselines`` reruns the measurement). A device: its
own copy and RNG, from a backend's ``device_baseline`` hook, else a :class:`BaselineUnavailable`
with the reasons. No framework is named or imported here.
"""
from __future__ import annotations

import argparse
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from backends.base import DeviceBaseline

BASELINE_APIS = ("copy", "rng32")
RNG_CANDIDATES = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")
CHOSEN_BIT_GENERATOR = "SFC64"
"""Why SFC64.random_raw (survey_rng, four runs on the 2-core AMD EPYC development VM, ns per
32-bit word written into the preallocated buffer): at 2^22 SFC64 was fastest in every run
(0.65-0.78; PCG64DXSM 0.74-0.93, PCG64 0.94-1.13, MT19937 0.95-1.26, Philox 1.65-2.14); at 2^16
it tied with PCG64/PCG64DXSM (0.77-0.90; MT19937 0.86-1.13, Philox 1.5). Raw output beat
``Generator.integers(0, 2**32, dtype=uint32)`` (1.1-1.7, and it allocates) and
``Generator.random(out=float32)`` (1.15-1.8, int->float conversion) for every generator.
SFC64 needs only add/xor/shift/rotate (PCG64 a 128-bit multiply), so the ranking should carry
over to other CPUs. Fixed rather than picked per run, so rng32 is the same work everywhere."""
CHUNK_WORDS = 2**15
"""random_raw has no ``out=``: it fills a fresh uint64 array. Drawing 2^15 words (256 KiB, L2
resident, reused by malloc) at a time and copying them into the preallocated uint32 buffer
keeps page faults out of the timing; the staging copy runs at cache speed."""
PARALLEL_MIN = 2**18
"""Below this many elements thread start-up costs more than it saves: baselines stay serial."""
_DEFAULT_SEED = 20240521

Step = Callable[[], None]


class BaselineUnavailable(RuntimeError):
    """This baseline cannot run here (no GPU, no GPU library); the message is the reason."""


Baseline = DeviceBaseline
"""One prepared baseline (CPU ones are built here, device ones by a backend)."""


def _storage_dtype(dtype: str) -> np.dtype:
    """NumPy has no bfloat16: a copy only moves bytes, so uint16 stands in for it."""
    return np.dtype(np.uint16) if dtype == "bfloat16" else np.dtype(dtype)


# -- CPU -----------------------------------------------------------------------------------
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """One persistent pool per thread count: creating threads inside the timed step would dominate."""
    with _POOL_LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dropbench-baseline")
        return _POOLS[threads]


def _slices(n: int, parts: int) -> list[slice]:
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i + 1] > bounds[i]]


def _parallel(threads: int, numel: int) -> int:
    return threads if threads > 1 and numel >= PARALLEL_MIN else 1


def _fill_raw(bit_generator: Any, out64: np.ndarray) -> None:
    """Raw 64-bit words into ``out64`` in cache-sized chunks (each word is two rng32 words)."""
    for start in range(0, out64.size, CHUNK_WORDS):
        stop = min(out64.size, start + CHUNK_WORDS)
        out64[start:stop] = bit_generator.random_raw(stop - start)


def cpu_copy(numel: int, dtype: str = "float32", threads: int = 1) -> Baseline:
    """np.copyto of a ``dtype`` array into a preallocated one; split over threads for large arrays."""
    storage = _storage_dtype(dtype)
    src = np.ones(numel, dtype=storage)  # touched, so no page is faulted in during timing
    dst = np.zeros(numel, dtype=storage)
    parts = _parallel(threads, numel)
    if parts == 1:
        step: Step = lambda: np.copyto(dst, src)  # noqa: E731
    else:
        pool, pieces = _pool(parts), _slices(numel, parts)

        def step() -> None:
            for future in [pool.submit(np.copyto, dst[s], src[s]) for s in pieces]:
                future.result()

    impl = "numpy.copyto" + (f" on {parts} threads" if parts > 1 else "")
    return Baseline("copy", impl, "cpu", parts, step, {"numpy": np.__version__}, dst)


def cpu_rng32(numel: int, threads: int = 1, bit_generator: str = CHOSEN_BIT_GENERATOR,
              seed: int = _DEFAULT_SEED) -> Baseline:
    """One random 32-bit word per element into a preallocated uint32 buffer.

    An odd ``numel`` draws one extra word into a padded buffer (the raw stream is 64-bit).
    Each thread owns an independent stream (SeedSequence.spawn), as a parallel RNG must.
    """
    buf = np.zeros(numel + (numel & 1), dtype=np.uint32)
    out64 = buf.view(np.uint64)
    parts = _parallel(threads, numel)
    streams = [getattr(np.random, bit_generator)(s) for s in np.random.SeedSequence(seed).spawn(parts)]
    if parts == 1:
        step: Step = lambda: _fill_raw(streams[0], out64)  # noqa: E731
    else:
        pool, pieces = _pool(parts), _slices(out64.size, parts)

        def step() -> None:
            for future in [pool.submit(_fill_raw, g, out64[s]) for g, s in zip(streams, pieces)]:
                future.result()

    impl = f"numpy {bit_generator}.random_raw into uint32 buffer" + (f" on {parts} threads" if parts > 1 else "")
    return Baseline("rng32", impl, "cpu", parts, step, {"numpy": np.__version__}, buf[:numel])


# -- devices --------------------------------------------------------------------------------
def device_baseline(api: str, numel: int, dtype: str, device: str, backend: Any | None = None) -> Baseline:
    """The device's own copy / RNG, from the first backend that offers one.

    The worker's own ``backend`` is asked first (its framework is already loaded), then every
    built-in adapter that has a ``device_baseline`` hook (backends/base.py: DeviceBaseline); none
    that can: BaselineUnavailable with every backend's reason.
    """
    from suite.runtime.loader import builtin_backends  # noqa: PLC0415 - adapters import no framework

    others = [b for b in builtin_backends() if backend is None or type(b) is not type(backend)]
    reasons = []
    for candidate in ([backend] if backend is not None else []) + others:
        hook = getattr(candidate, "device_baseline", None)
        if not callable(hook):
            continue
        try:
            return hook(api, numel, dtype, device)
        except Exception as exc:  # unavailable framework, no device, no such baseline
            reasons.append(f"{candidate.name}: {exc}")
    raise BaselineUnavailable(f"no device baseline on {device}: " + ("; ".join(reasons) or "no backend offers one"))


def make_baseline(api: str, numel: int, dtype: str, device: str, threads: int = 1,
                  backend: Any | None = None) -> Baseline:
    """The baseline ``api`` ("copy" | "rng32") for one size/dtype/device, buffers allocated."""
    if api not in BASELINE_APIS:
        raise ValueError(f"unknown baseline {api!r}; choose from {', '.join(BASELINE_APIS)}")
    if device == "cpu":
        return cpu_copy(numel, dtype, threads) if api == "copy" else cpu_rng32(numel, threads)
    return device_baseline(api, numel, dtype, device, backend)


# -- why SFC64: the measurement ------------------------------------------------------------
def _rng_methods(name: str, numel: int) -> dict[str, Step]:
    """Ways NumPy offers to get numel 32-bit random words out of bit generator ``name``."""
    bit_generator = getattr(np.random, name)(0)
    gen = np.random.Generator(bit_generator)
    buf = np.zeros(numel, dtype=np.uint32)
    as_float = buf.view(np.float32)
    return {
        "integers_uint32": lambda: gen.integers(0, 2**32, size=numel, dtype=np.uint32),
        "random_float32_out": lambda: gen.random(out=as_float, dtype=np.float32),
        "random_raw": lambda: bit_generator.random_raw(numel // 2),
        "random_raw_chunked_into_buffer": lambda: _fill_raw(bit_generator, buf.view(np.uint64)),
    }


def _best_of(step: Step, repeats: int, min_round_s: float = 2e-3) -> float:
    """Best per-call time over ``repeats`` rounds of enough calls to last ``min_round_s``."""
    step()
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            step()
        if time.perf_counter() - start >= min_round_s:
            break
        calls *= 2
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            step()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def survey_rng(sizes: tuple[int, ...] = (2**16, 2**22), repeats: int = 7) -> list[dict[str, Any]]:
    """ns per 32-bit word for every bit generator x method: the evidence behind CHOSEN_BIT_GENERATOR."""
    rows = []
    for numel in sizes:
        for name in RNG_CANDIDATES:
            for method, step in _rng_methods(name, numel).items():
                rows.append({"numel": numel, "bit_generator": name, "method": method,
                             "ns_per_word": _best_of(step, repeats) * 1e9 / numel})
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m suite.bench.baselines``: print the RNG survey (ns per 32-bit word, lower is better)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rows = survey_rng(repeats=args.repeats)
    print(f"numpy {np.__version__}, {os.cpu_count()} cpus; ns per 32-bit word (best of {args.repeats})")
    for r in rows:
        print(f"{r['numel']:>9}  {r['bit_generator']:<10} {r['method']:<32} {r['ns_per_word']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
