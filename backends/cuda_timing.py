"""Per-call GPU times from CUDA events, warm and cold, as the GPU anchors measure them.

``triton.testing.do_bench`` (and nvbench) time a kernel with a pair of CUDA events around each call
and, for a *cold* figure, overwrite a buffer larger than the L2 cache before each call, so that the
call reads its inputs from HBM; a *warm* figure leaves L2 as the previous call left it (an H200's
60 MB L2 holds a 2^22-float32 input entirely). Both are recorded, labelled, with quantiles.

The timed step is an adapter's ``prepare()`` closure, which ends with the framework's own
synchronization; the events measure device time between the two records, and every event is read
only after a final synchronize (reading one earlier is an error in CUDA and in the tests' fake).

The stream API is passed in (``torch.cuda`` for torch and Triton; :class:`CupyEvents` for CuPy), so
the logic runs in tests with a fake device and no GPU (tests/test_cuda_timing.py). Nothing here
imports a framework at module level.
"""
from __future__ import annotations

import importlib
import statistics
from typing import Any, Callable

L2_FLUSH_BYTES = 256 * 2**20
"""What triton.testing.do_bench zeroes between calls: 256 MiB, over 4x the largest L2 of a current GPU."""
EVENT_CALLS = 50
MODES = ("warm", "cold")


def event_times(step: Callable[[], None], *, calls: int, cuda: Any, flush: Callable[[], None] | None = None) -> list[float]:
    """Seconds of each of ``calls`` calls of ``step`` between two CUDA events; ``flush`` before each (cold)."""
    if calls < 1:
        raise ValueError(f"calls must be at least 1, got {calls}")
    starts = [cuda.Event(enable_timing=True) for _ in range(calls)]
    ends = [cuda.Event(enable_timing=True) for _ in range(calls)]
    step()  # warm-up: lazy initialisation and allocator pools stay out of the figures
    cuda.synchronize()
    for start, end in zip(starts, ends):
        if flush is not None:
            flush()  # before the start event: the flush itself is not timed
        start.record()
        step()
        end.record()
    cuda.synchronize()  # every event has completed: only now may elapsed_time be read
    return [start.elapsed_time(end) / 1e3 for start, end in zip(starts, ends)]


def quantiles(seconds: list[float]) -> dict[str, float | int]:
    """median, quartiles, min, max and count of per-call times (what the report and compare read)."""
    values = sorted(seconds)
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (values[0],) * 3
    return {"median_s": median, "q1_s": q1, "q3_s": q3, "min_s": values[0], "max_s": values[-1], "calls": len(values)}


def event_timing(step: Callable[[], None], *, cuda: Any, flush: Callable[[], None], calls: int = EVENT_CALLS,
                 clock: str = "cuda events") -> dict[str, Any]:
    """Both modes of one step: {"warm": quantiles, "cold": quantiles, "flush_bytes", "clock"} for extra_info."""
    return {"clock": clock, "flush_bytes": L2_FLUSH_BYTES,
            "warm": quantiles(event_times(step, calls=calls, cuda=cuda)),
            "cold": quantiles(event_times(step, calls=calls, cuda=cuda, flush=flush))}


def torch_event_timing(step: Callable[[], None], device: str, calls: int = EVENT_CALLS) -> dict[str, Any]:
    """:func:`event_timing` through ``torch.cuda`` (torch and Triton kernels), flushing with a zeroed buffer."""
    torch = importlib.import_module("torch")
    with torch.cuda.device(torch.device(device)):
        buffer = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device=device)
        return event_timing(step, cuda=torch.cuda, flush=buffer.zero_, calls=calls, clock="torch.cuda.Event")


class CupyEvents:
    """CuPy's events behind the ``torch.cuda`` names event_times uses (Event(enable_timing), record,
    elapsed_time in ms, synchronize)."""

    def __init__(self, cupy: Any) -> None:
        self._cupy = cupy

    def Event(self, enable_timing: bool = True) -> Any:  # noqa: N802 - the torch.cuda spelling
        cupy = self._cupy
        event = cupy.cuda.Event(disable_timing=not enable_timing)

        class _Event:
            def record(self) -> None:
                event.record()

            def elapsed_time(self, end: Any) -> float:
                return float(cupy.cuda.get_elapsed_time(event, end.raw))

            raw = event

        return _Event()

    def synchronize(self) -> None:
        self._cupy.cuda.Device().synchronize()


def cupy_event_timing(step: Callable[[], None], device: str, calls: int = EVENT_CALLS) -> dict[str, Any]:
    """:func:`event_timing` through CuPy's events, flushing with a zeroed CuPy buffer."""
    cupy = importlib.import_module("cupy")
    with cupy.cuda.Device(int(device.partition(":")[2] or 0)):
        buffer = cupy.empty(L2_FLUSH_BYTES // 4, dtype=cupy.int32)
        return event_timing(step, cuda=CupyEvents(cupy), flush=lambda: buffer.fill(0), calls=calls,
                            clock="cupy.cuda.Event")


class NumbaEvents:
    """numba.cuda's events behind the ``torch.cuda`` names event_times uses."""

    def __init__(self, cuda: Any) -> None:
        self._cuda = cuda

    def Event(self, enable_timing: bool = True) -> Any:  # noqa: N802 - the torch.cuda spelling
        return self._cuda.event(timing=enable_timing)  # record(), elapsed_time(end) in ms: the same names

    def synchronize(self) -> None:
        self._cuda.synchronize()


def numba_event_timing(step: Callable[[], None], device: str, calls: int = EVENT_CALLS) -> dict[str, Any]:
    """:func:`event_timing` through numba.cuda's events, flushing with a zeroed device buffer (numba-cuda:fused)."""
    cuda = importlib.import_module("numba.cuda")
    kernels = importlib.import_module("backends.numba_cuda_kernels")
    cuda.select_device(int(device.partition(":")[2] or 0))
    buffer = cuda.device_array(L2_FLUSH_BYTES // 4, dtype="int32")
    blocks = min(65535, -(-buffer.size // kernels.THREADS))
    return event_timing(step, cuda=NumbaEvents(cuda), flush=lambda: kernels.zero_fill[blocks, kernels.THREADS](buffer),
                        calls=calls, clock="numba.cuda.event")
