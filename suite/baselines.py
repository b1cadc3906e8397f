"""Roofline baselines timed next to every dropout: a plain copy and one random 32-bit word per element.

``baseline:copy`` reads the array once and writes it once (memory bound, the traffic a
forward dropout cannot avoid). ``baseline:rng32`` produces one 32-bit random word per
element (RNG bound, the randomness a per-element mask needs at the very least). Both write
into buffers allocated before timing, so neither pays for allocation or page faults.

CPU: NumPy. The RNG is ``SFC64.random_raw`` (see :data:`CHOSEN_BIT_GENERATOR` and
:func:`survey_rng`, ``python -m suite.baselines`` reruns the measurement). GPU: the device's
own copy and RNG through torch.cuda, else CuPy (cuRAND), else a :class:`BaselineUnavailable`
with the reason. No framework is imported at module level.
"""
from __future__ import annotations

import argparse
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

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


@dataclass
class Baseline:
    """One prepared baseline: ``step`` runs once and synchronizes the device."""

    api: str  # "copy" | "rng32"
    impl: str  # what exactly is timed, e.g. "numpy.copyto"
    device: str  # "cpu" | "cuda:N"
    threads: int  # threads the baseline itself uses
    step: Step
    versions: dict[str, str] = field(default_factory=dict)
    output: Any = None  # the buffer step() writes (for tests and sanity checks)


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


# -- GPU -----------------------------------------------------------------------------------
def _cuda_index(device: str) -> int:
    _, _, index = device.partition(":")
    return int(index or 0)


def _torch_cuda(device: str) -> Any:
    """torch when it sees ``device``, else BaselineUnavailable saying why."""
    try:
        import torch  # noqa: PLC0415 - lazy: only GPU baselines need it
    except Exception as exc:
        raise BaselineUnavailable(f"torch not importable ({type(exc).__name__})") from exc
    if not torch.cuda.is_available():
        raise BaselineUnavailable(f"torch {torch.__version__} sees no CUDA device")
    if _cuda_index(device) >= torch.cuda.device_count():
        raise BaselineUnavailable(f"torch sees {torch.cuda.device_count()} CUDA device(s), not {device}")
    return torch


def _cupy(device: str) -> Any:
    try:
        import cupy  # noqa: PLC0415
    except Exception as exc:
        raise BaselineUnavailable(f"cupy not importable ({type(exc).__name__})") from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise BaselineUnavailable(f"cupy sees no CUDA device ({type(exc).__name__}: {exc})") from exc
    if _cuda_index(device) >= count:
        raise BaselineUnavailable(f"cupy sees {count} CUDA device(s), not {device}")
    return cupy


def _torch_dtype(torch: Any, dtype: str) -> Any:
    return getattr(torch, dtype)


def gpu_baseline(api: str, numel: int, dtype: str, device: str) -> Baseline:
    """The device's own copy / RNG: torch.cuda first, CuPy second; both missing -> BaselineUnavailable."""
    reasons = []
    for maker in (_torch_gpu_baseline, _cupy_gpu_baseline):
        try:
            return maker(api, numel, dtype, device)
        except BaselineUnavailable as exc:
            reasons.append(str(exc))
    raise BaselineUnavailable(f"no GPU baseline on {device}: " + "; ".join(reasons))


def _torch_gpu_baseline(api: str, numel: int, dtype: str, device: str) -> Baseline:
    torch = _torch_cuda(device)
    dev = torch.device(f"cuda:{_cuda_index(device)}")
    versions = {"torch": str(torch.__version__), "cuda": str(torch.version.cuda)}
    sync = lambda: torch.cuda.synchronize(dev)  # noqa: E731
    if api == "copy":
        src = torch.ones(numel, dtype=_torch_dtype(torch, dtype), device=dev)
        dst = torch.empty_like(src)

        def step() -> None:
            dst.copy_(src)
            sync()

        impl, output = "torch.Tensor.copy_ (cuda)", dst
    else:
        # random_() on int32 draws one 32-bit Philox word per element (kept to 31 bits); torch
        # has no full-range uint32 fill, and this is the cheapest per-element RNG op it offers.
        buf = torch.empty(numel, dtype=torch.int32, device=dev)

        def step() -> None:
            buf.random_()
            sync()

        impl, output = "torch.Tensor.random_ int32 (cuda Philox4x32-10)", buf
    sync()
    return Baseline(api, impl, str(dev), 1, step, versions, output)


def _cupy_gpu_baseline(api: str, numel: int, dtype: str, device: str) -> Baseline:
    cupy = _cupy(device)
    with cupy.cuda.Device(_cuda_index(device)):
        stream = cupy.cuda.get_current_stream()
        versions = {"cupy": str(cupy.__version__)}
        if api == "copy":
            src = cupy.ones(numel, dtype=_storage_dtype(dtype))
            dst = cupy.empty_like(src)

            def step() -> None:
                cupy.copyto(dst, src)
                stream.synchronize()

            impl, output = "cupy.copyto", dst
        else:
            from cupy.cuda import curand  # noqa: PLC0415

            buf = cupy.empty(numel, dtype=cupy.uint32)
            generator = curand.createGenerator(curand.CURAND_RNG_PSEUDO_PHILOX4_32_10)
            curand.setPseudoRandomGeneratorSeed(generator, _DEFAULT_SEED)
            curand.setStream(generator, stream.ptr)

            def step() -> None:
                curand.generate(generator, buf.data.ptr, numel)  # raw 32-bit words
                stream.synchronize()

            impl, output = "cuRAND curandGenerate Philox4_32_10 (cupy)", buf
        stream.synchronize()
    return Baseline(api, impl, f"cuda:{_cuda_index(device)}", 1, step, versions, output)


def make_baseline(api: str, numel: int, dtype: str, device: str, threads: int = 1) -> Baseline:
    """The baseline ``api`` ("copy" | "rng32") for one size/dtype/device, buffers allocated."""
    if api not in BASELINE_APIS:
        raise ValueError(f"unknown baseline {api!r}; choose from {', '.join(BASELINE_APIS)}")
    if device == "cpu":
        return cpu_copy(numel, dtype, threads) if api == "copy" else cpu_rng32(numel, threads)
    return gpu_baseline(api, numel, dtype, device)


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
    """``python -m suite.baselines``: print the RNG survey (ns per 32-bit word, lower is better)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    from suite import table  # noqa: PLC0415

    rows = survey_rng(repeats=args.repeats)
    print(f"numpy {np.__version__}, {os.cpu_count()} cpus; ns per 32-bit word (best of {args.repeats})")
    print(table.render(["numel", "bit_generator", "method", "ns/word"],
                       [[r["numel"], r["bit_generator"], r["method"], f"{r['ns_per_word']:.3f}"] for r in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
