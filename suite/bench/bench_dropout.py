"""Dropout throughput: one pytest-benchmark per API x direction x size x dtype x device x mode.

Collected by the worker of ``dropbench bench`` straight from the installed package, and by
``pytest`` from a checkout through tests/benchmarks/test_bench_dropout.py. ``pytest --benchmark-only``
times them; a plain ``pytest`` (addopts: --benchmark-disable) runs each case once at the smallest
size as a smoke test. ``dropbench bench`` runs this module once
per backend, in its own process. The baselines come first, so every process times them before
its backend: they are the yardstick of that process's rows (suite/bench/baselines.py). After
pytest-benchmark has timed every test of a size group, the group's closures are timed once more in
interleaved rounds (suite/bench/interleave.py), recorded in ``extra_info["interleaved"]``; a
memory-bound CPU case is prepared several times for them (buffer sets rotated round by round).

Inputs are created on the device by the adapter's ``prepare()`` before timing; the closure ends
with the framework's synchronization; one untimed call warms it up (lazy initialisation,
allocator pools, tracing).
"""
from __future__ import annotations

import pytest

from suite.bench import cases as timing
from suite.bench.baselines import BaselineUnavailable, make_baseline
from suite.bench.plugin import register_interleaved


def test_baseline(timed, baseline: timing.BaselineCase, bench) -> None:
    try:
        prepared = make_baseline(baseline.api, baseline.numel, baseline.dtype, baseline.device,
                                 bench.plan.threads or 1, backend=bench.own_backend())
    except BaselineUnavailable as exc:
        pytest.skip(f"[no-device] {exc}")
    prepared.step()
    timed.group = timing.group_name(baseline.numel, baseline.dtype, baseline.device)
    timed.extra_info.update(timing.extra_info(
        baseline, shape=(baseline.numel,), rate=None, threads=bench.plan.threads, versions=prepared.versions,
        worker=bench.worker, impl=prepared.impl, baseline_threads=prepared.threads))
    timed(prepared.step)
    _bare_loop(timed, prepared.step, bench)
    steps = [prepared.step] + [_warmed(make_baseline(baseline.api, baseline.numel, baseline.dtype, baseline.device,
                                                     bench.plan.threads or 1, backend=bench.own_backend()).step)
                               for _ in range(_sets(timed, bench, baseline) - 1)]
    register_interleaved(bench, timed, baseline, steps)
    _device_events(timed, prepared.step, bench.own_backend(), baseline.device)


def test_dropout(timed, case: timing.Case, bench) -> None:
    state = bench.state(case.ref, case.backend)
    if state.backend is None:
        pytest.skip(f"[unavailable] {state.reason}")
    try:
        step, shape = timing.build_closure(state.backend, case, bench.plan.rate)
    except timing.CaseSkip as exc:
        pytest.skip(f"[{exc.kind}] {exc.reason}")
    step()
    timed.group = timing.group_name(case.numel, case.dtype, case.device)
    timed.extra_info.update(timing.extra_info(
        case, shape=shape, rate=bench.plan.rate, threads=bench.plan.threads, versions=state.versions,
        worker=bench.worker, **timing.traffic_info(state.backend, case, shape)))
    timed(step)
    _bare_loop(timed, step, bench)
    steps = [step] + [_warmed(timing.build_closure(state.backend, case, bench.plan.rate)[0])
                      for _ in range(_sets(timed, bench, case) - 1)]
    register_interleaved(bench, timed, case, steps, nbytes=len(steps) * timing.peak_bytes(case.numel, case.dtype))
    _device_events(timed, step, state.backend, case.device)


def _sets(timed, bench, case) -> int:
    """Buffer sets for the interleaved rounds (suite/bench/cases.buffer_sets); recorded on the row."""
    if timed.disabled or not bench.interleaver.enabled:
        return 1
    sets = timing.buffer_sets(case.numel, case.dtype, case.device)
    timed.extra_info["buffer_sets"] = sets
    return sets


def _warmed(step):
    """An extra buffer set's closure after its first (untimed) call, as the first set had."""
    step()
    return step


def _device_events(timed, step, backend, device: str) -> None:
    """On a GPU, also per-call CUDA-event times, warm and cold (L2 flushed), from the adapter's
    ``event_timing`` hook (backends/cuda_timing.py): ``extra_info.device_events``; a CPU row has none."""
    hook = getattr(backend, "event_timing", None)
    if device.startswith("cuda") and callable(hook) and not timed.disabled:
        timed.extra_info["device_events"] = hook(step, device)


def _bare_loop(timed, step, bench) -> None:
    """With --bare-loop: the same closure, same process, right after pytest-benchmark (harness overhead)."""
    if bench.plan.bare_loop and not timed.disabled:
        timed.extra_info["bare_loop"] = timing.bare_loop(step)
