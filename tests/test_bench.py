"""The benchmark harness: option validation, the merged JSON, skip reasons, crash isolation.

Fake plugin backends (below) are timed end to end at a tiny size through real worker
processes; nothing here asserts on how long anything took.
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

from suite.bench import cases as timing
from suite.bench.baselines import make_baseline
from suite.bench.runner import TIMING, BenchOptions, exit_code, run_bench
from suite.bench.schema import READABLE
from suite.runtime.jsonio import read_result
from suite.runtime.loader import UsageError
from suite.runtime.threads import thread_env
from suite.runtime.worker import Task

TINY = 2**10


# -- plugins (loaded by the workers as tests.test_bench:NAME) ----------------------------------
class TimedPlugin:
    """A correct, duck-typed backend with a timing closure: y = x * mask / keep in NumPy."""

    name = "fakeplug"
    apis = ("scale",)
    capabilities = {"backward"}

    def available(self) -> bool:
        return True

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__, "fakeplug": "1.0"}

    def devices(self) -> list[str]:
        return ["cpu"]

    def prepare(self, shape, spec, *, api, direction, compiled=False):
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape).astype(spec.dtype)
        grad_out = np.ones_like(x)
        keep = spec.keep_prob

        def step() -> None:
            mask = rng.random(shape) < keep
            y = x * mask / keep
            if direction == "forward_backward":
                _ = grad_out * mask / keep
            del y

        return step


class NoClosurePlugin(TimedPlugin):
    """Conformance-only plugin: no prepare() at all."""

    name = "noclosure"
    prepare = None  # type: ignore[assignment]


class CrashOnBackward(TimedPlugin):
    """Forward times fine; forward_backward kills its own process (a segfault stand-in)."""

    name = "crashy"

    def prepare(self, shape, spec, *, api, direction, compiled=False):
        if direction == "forward_backward":
            os.kill(os.getpid(), signal.SIGKILL)
        return super().prepare(shape, spec, api=api, direction=direction, compiled=compiled)


class RaisingPlugin(TimedPlugin):
    """prepare() fails with a real error (not Unsupported): a failed case, not a skip."""

    name = "raising"

    def prepare(self, shape, spec, *, api, direction, compiled=False):
        raise RuntimeError("broken kernel for the test")


class HangingPlugin(TimedPlugin):
    name = "hanging"

    def prepare(self, shape, spec, *, api, direction, compiled=False):
        time.sleep(3600)


def _opts(*refs: str, **kw) -> BenchOptions:
    return BenchOptions(backends=refs, sizes=kw.pop("sizes", (TINY,)), quick=True, **kw)


def dropbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite.cli", *args], capture_output=True, text=True, timeout=300)


# -- options ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [("2^16", 65536), ("2**10", 1024), ("65536", 65536), ("1_000", 1000)])
def test_parse_size(text, value) -> None:
    assert timing.parse_size(text) == value


@pytest.mark.parametrize("text", ["2^x", "big", "", "1e6"])
def test_parse_size_rejects(text) -> None:
    with pytest.raises(ValueError, match="size"):
        timing.parse_size(text)


@pytest.mark.parametrize(
    "args, named",
    [
        (["--sizes", "0"], "'0'"),
        (["--sizes", "2^12,lots"], "lots"),
        (["--sizes", "2^40"], "2^40"),
        (["--dtype", "int8"], "int8"),
        (["--device", "tpu"], "tpu"),
        (["--threads", "0"], "'0'"),
        (["--rate", "1.5"], "1.5"),
        (["--timeout", "-1"], "-1"),
        (["--backend", "caffe"], "caffe"),
        (["--api", "torch:nope"], "torch:nope"),
        (["--json", "/proc/nope/x.json"], "/proc/nope/x.json"),
        (["--resume"], "--resume needs --json"),
    ],
)
def test_bad_options_exit_2_with_one_line(args, named) -> None:
    proc = dropbench("bench", *args)
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], proc.stderr


def test_absurd_size_names_the_memory_estimate() -> None:
    with pytest.raises(UsageError, match=r"needs about .* GiB .* available"):
        BenchOptions(sizes=(2**40,)).validated()


def test_defaults_are_filled_in() -> None:
    quick = BenchOptions(quick=True).validated()
    full = BenchOptions().validated()
    assert quick.sizes == timing.QUICK_SIZES and full.sizes == timing.DEFAULT_SIZES
    assert min(full.sizes) <= 2**12 and max(full.sizes) >= 2**24
    assert quick.threads == full.threads == timing.DEFAULT_THREADS
    assert quick.timeout < full.timeout


def test_thread_env_pins_every_pool() -> None:
    env = thread_env(3)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS"):
        assert env[name] == "3"


def test_a_backend_sets_its_own_import_time_thread_variables(monkeypatch) -> None:
    """The framework's own variables come from its adapter's pin_threads(), before the import."""
    from backends.mxnet_backend import MxnetBackend

    monkeypatch.delenv("MXNET_CPU_WORKER_NTHREADS", raising=False)
    record = MxnetBackend().pin_threads(3)
    assert os.environ["MXNET_CPU_WORKER_NTHREADS"] == "3" and record["env"] == {"MXNET_CPU_WORKER_NTHREADS": "3"}


# -- the traffic model and shapes ---------------------------------------------------------------
def test_useful_bytes_match_the_arrays_touched() -> None:
    x = np.zeros(TINY, np.float16)
    assert timing.useful_bytes("torch:F.dropout", "forward", TINY, "float16") == 2 * x.nbytes  # x, y
    assert timing.useful_bytes("torch:F.dropout", "forward_backward", TINY, "float16") == 4 * x.nbytes
    assert timing.useful_bytes("baseline:copy", "forward", TINY, "float64") == 2 * x.astype(np.float64).nbytes
    assert timing.useful_bytes("baseline:rng32", "forward", TINY, "float64") == np.zeros(TINY, np.uint32).nbytes


@pytest.mark.parametrize("numel", [1, 7, 1000, 2**12, 2**22 + 2**10])
def test_elementwise_shapes_hold_numel(numel) -> None:
    shape = timing.bench_shape(numel, None)
    assert len(shape) == 2 and int(np.prod(shape)) == numel


def test_channel_layout_needs_whole_samples() -> None:
    from backends.base import Layout

    assert timing.bench_shape(2**14, Layout(4, (2, 3))) == (4, 16, 16, 16)
    with pytest.raises(timing.CaseSkip, match="multiple of 4096"):
        timing.bench_shape(1000, Layout(3, (2,)))


def test_copy_baseline_copies() -> None:
    for threads, numel in ((1, TINY), (2, 2**19)):
        copy = make_baseline("copy", numel, "float32", "cpu", threads=threads)
        assert not copy.output.any()
        copy.step()
        assert (copy.output == 1).all() and copy.threads == threads


@pytest.mark.parametrize("threads", [1, 2])
def test_rng32_baseline_writes_fresh_uniform_words(threads) -> None:
    numel = 2**19
    rng = make_baseline("rng32", numel, "float32", "cpu", threads=threads)
    assert rng.threads == threads and "SFC64" in rng.impl
    rng.step()
    first = rng.output.copy()
    rng.step()
    assert first.dtype == np.uint32 and first.size == numel
    assert np.count_nonzero(first == rng.output) < 64  # a fresh draw: ~numel/2^32 equal words expected
    # mean of uniform uint32 words: sd = 2^32/sqrt(12 n); 6 sd bounds a false fail below 2e-9 (fixed seed anyway)
    sd = 2.0**32 / np.sqrt(12 * numel)
    assert abs(first.astype(np.float64).mean() - (2.0**32 - 1) / 2) < 6 * sd
    if threads == 2:  # independent streams per thread, not one stream repeated
        half = numel // 2
        assert np.count_nonzero(first[:half] == first[half:]) < 64


def test_gpu_baseline_without_gpu_says_why() -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: this test covers machines without one")
    from suite.bench.baselines import BaselineUnavailable

    with pytest.raises(BaselineUnavailable, match="CUDA device"):
        make_baseline("copy", TINY, "float32", "cuda:0")


# -- end to end through worker processes ----------------------------------------------------------
REQUIRED_INFO = ("backend", "api", "direction", "device", "dtype", "numel", "shape", "rate", "mode", "threads",
                 "versions", "bytes", "worker")


def test_plugin_timed_end_to_end(tmp_path) -> None:
    out = tmp_path / "bench.json"
    proc = dropbench("bench", "--backend", "tests.test_bench:TimedPlugin", "--sizes", "2^10", "--quick",
                     "--threads", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    payload = read_result(out, kind="bench", schemas=READABLE)
    for key in ("machine_id", "machine_facts", "machine_info", "commit_info", "datetime", "version", "run"):
        assert payload[key], key
    assert payload["run"]["threads"] == 2 and payload["run"]["complete"]
    [entry] = payload["backends"]
    assert entry["status"] == "ok" and entry["backend"] == "fakeplug" and entry["versions"]["fakeplug"] == "1.0"
    rows = {(b["extra_info"]["api"], b["extra_info"]["direction"]): b for b in payload["benchmarks"]}
    assert set(rows) == {("fakeplug:scale", "forward"), ("fakeplug:scale", "forward_backward"),
                         ("baseline:copy", "forward"), ("baseline:rng32", "forward")}
    assert len({b["fullname"] for b in payload["benchmarks"]}) == 4
    for (api, direction), bench in rows.items():
        info, stats = bench["extra_info"], bench["stats"]
        assert all(k in info for k in REQUIRED_INFO), info
        assert info["worker"] == "fakeplug" and info["threads"] == 2 and info["numel"] == TINY
        assert info["bytes"] == timing.useful_bytes(api, direction, TINY, "float32")
        # pytest-benchmark stops at max_time, so a loaded machine gets the profile's minimum of rounds
        assert len(stats["data"]) == stats["rounds"] >= TIMING["quick"]["min_rounds"]
        # schema 2: min/max/data pool pytest-benchmark's rounds; median is the median of the processes'
        # figures (interleaved rounds, which may run below pytest-benchmark's minimum; suite/bench/aggregate.py)
        assert stats["min"] <= statistics.median(stats["data"]) <= stats["max"]
        assert stats["median_of"] == "processes"
        assert stats["median"] == statistics.median(p["median"] for p in info["processes"])
    assert rows[("baseline:copy", "forward")]["extra_info"]["backend"] == "baseline"
    assert "fakeplug:scale" in proc.stdout  # the summary table
    assert not (tmp_path / "bench.json.parts").exists()  # nothing to look into: worker files removed


def test_bare_loop_calibrates_long_rounds_and_reports_the_median_call() -> None:
    calls = [0]
    costs = iter([0.004] + [0.001] * 10_000)  # the calibration call is slow (a cold first call)
    now = [0.0]

    def step() -> None:
        calls[0] += 1
        now[0] += next(costs)

    result = timing.bare_loop(step, rounds=5, min_round_s=0.02, clock=lambda: now[0])
    assert result["loops"] == 20  # 1 call: 4 ms -> 5 calls: 5 ms -> 20 calls: 20 ms, long enough
    assert calls[0] == (1 + 5 + 20) + 5 * 20
    assert result["median_s"] == pytest.approx(0.001) and result["min_s"] == pytest.approx(0.001)
    assert result["rounds"] == 5


def test_bare_loop_option_records_the_harness_overhead(tmp_path) -> None:
    out = tmp_path / "bench.json"
    proc = dropbench("bench", "--backend", "tests.test_bench:TimedPlugin", "--sizes", "2^10", "--quick",
                     "--bare-loop", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    payload = read_result(out, kind="bench", schemas=READABLE)
    bare = {b["extra_info"]["api"] + "/" + b["extra_info"]["direction"]: b["extra_info"].get("bare_loop")
            for b in payload["benchmarks"]}
    assert set(bare) == {"baseline:copy/forward", "baseline:rng32/forward", "fakeplug:scale/forward",
                         "fakeplug:scale/forward_backward"}
    for key in bare:
        assert bare[key]["rounds"] == timing.BARE_LOOP_ROUNDS and 0 < bare[key]["min_s"] <= bare[key]["median_s"]
        # loops is a positive count; how many depends on the machine's speed at that moment, so no
        # wall-clock bound here (the calibration rule is checked on a fake clock above)
        assert isinstance(bare[key]["loops"], int) and bare[key]["loops"] >= 1
    assert "harness overhead" in proc.stdout and "bare loop" in proc.stdout and "difference %" in proc.stdout
    assert payload["run"]["bare_loop"] is True


def test_crash_loses_only_its_own_backend(tmp_path) -> None:
    out = tmp_path / "bench.json"
    seen: list[str] = []
    payload = run_bench(_opts("tests.test_bench:CrashOnBackward", "tests.test_bench:TimedPlugin",
                              json_path=str(out)), seen.append)
    status = {b["backend"]: b for b in payload["backends"]}
    assert status["crashy"]["status"] == "crash"
    assert "SIGKILL" in status["crashy"]["reason"] and "forward_backward" in status["crashy"]["reason"]
    assert status["fakeplug"]["status"] == "ok"
    rows = {(b["extra_info"]["worker"], b["extra_info"]["api"], b["extra_info"]["direction"])
            for b in payload["benchmarks"]}
    # the crashing worker's forward row and baselines were salvaged from its outcome log
    assert {("crashy", "crashy:scale", "forward"), ("crashy", "baseline:copy", "forward")} <= rows
    assert ("crashy", "crashy:scale", "forward_backward") not in rows
    assert ("fakeplug", "fakeplug:scale", "forward_backward") in rows
    [interrupted] = [c for c in payload["skipped"] if c["status"] == "crash"]
    assert interrupted["id"].startswith("crashy:scale-forward_backward")
    assert exit_code(payload) == 1
    assert read_result(out, kind="bench", schemas=READABLE)["backends"] == payload["backends"]  # written, not only returned
    parts = tmp_path / "bench.json.parts"  # kept as evidence, one set of files per worker
    assert {p.name for p in parts.iterdir()} >= {"tests.test_bench_CrashOnBackward.log",
                                                 "tests.test_bench_TimedPlugin.pytest.json"}
    assert any(line.startswith("tests.test_bench:CrashOnBackward: running crashy:scale") for line in seen)


def test_hanging_worker_times_out() -> None:
    payload = run_bench(_opts("tests.test_bench:HangingPlugin", timeout=3.0))
    [entry] = payload["backends"]
    assert entry["status"] == "timeout" and "no result after 3 s" in entry["reason"]
    assert exit_code(payload) == 1


def test_skip_reasons_are_recorded_not_dropped() -> None:
    payload = run_bench(_opts("tests.test_bench:NoClosurePlugin", "tests.test_bench:RaisingPlugin",
                              "no_such_module:Thing"))
    status = {b["ref"]: b for b in payload["backends"]}
    no_closure = status["tests.test_bench:NoClosurePlugin"]
    assert no_closure["status"] == "skipped" and "no prepare()" in no_closure["reason"]
    raising = status["tests.test_bench:RaisingPlugin"]
    assert raising["status"] == "ok" and raising["errors"] == 2 and "broken kernel" in raising["reason"]
    missing = status["no_such_module:Thing"]
    assert missing["status"] == "unavailable" and "no_such_module" in missing["reason"]
    kinds = {(c["worker"], c["kind"]) for c in payload["skipped"]}
    assert ("noclosure", "no-closure") in kinds and ("raising", "error") in kinds
    assert exit_code(payload) == 1


def test_cuda_without_gpu_is_skipped_with_reason(tmp_path) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: this test covers machines without one")
    out = tmp_path / "gpu.json"
    proc = dropbench("bench", "--backend", "tests.test_bench:TimedPlugin", "--device", "cuda", "--sizes", "2^10",
                     "--quick", "--require-device", "--json", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    payload = read_result(out, kind="bench", schemas=READABLE)
    [entry] = payload["backends"]
    assert entry["status"] == "skipped" and "cuda:0" in entry["reason"]
    assert payload["benchmarks"] == []
    kinds = {(c["api"], c["kind"]) for c in payload["skipped"]}
    assert kinds == {("fakeplug:scale", "no-device"), ("baseline:copy", "no-device"), ("baseline:rng32", "no-device")}
    payload["run"]["require_device"] = False
    assert exit_code(payload) == 0  # without --require-device a missing GPU is not a failure


def test_pytest_benchmark_only_runs_despite_addopts_disable(tmp_path) -> None:
    """--benchmark-only next to pyproject's --benchmark-disable: the conftest turns timing on."""
    plan = timing.Plan(backends=(("fakeplug", "tests.test_bench:TimedPlugin"),), sizes=(TINY,), threads=1)
    task_file = tmp_path / "task.json"
    Task("bench", "tests.test_bench:TimedPlugin", {"plan": plan.to_json()}).write(task_file)
    out = tmp_path / "pb.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/benchmarks", "-q", "-p", "no:cacheprovider", "--benchmark-only",
         "--benchmark-max-time=0.01", f"--benchmark-json={out}", f"--dropbench-task={task_file}"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    names = {b["extra_info"]["api"] for b in json.loads(out.read_text())["benchmarks"]}
    assert names == {"fakeplug:scale", "baseline:copy", "baseline:rng32"}


# -- --resume ---------------------------------------------------------------------------------------
def test_resume_reruns_only_unfinished_backends(tmp_path) -> None:
    out = tmp_path / "bench.json"
    first_seen: list[str] = []
    crash, timed = "tests.test_bench:CrashOnBackward", "tests.test_bench:TimedPlugin"
    options = BenchOptions(backends=("numpy", crash), sizes=(2**12,), quick=True, json_path=str(out), resume=True)
    first = run_bench(options, first_seen.append)  # no file yet: --resume runs everything
    assert f"resumed: kept 0 backend(s) from {out}" in first_seen
    assert [(b["backend"], b["status"]) for b in first["backends"]] == [("numpy", "ok"), ("crashy", "crash")]

    seen: list[str] = []
    payload = run_bench(replace(options, backends=("numpy", crash, timed)), seen.append)
    assert f"resumed: kept 1 backend(s) from {out}" in seen
    started = [line.split(": starting worker ")[0] for line in seen if ": starting worker " in line]
    assert started == [crash, timed]  # crashy ran again, fakeplug for the first time, numpy not at all
    assert [(b["backend"], b["status"]) for b in payload["backends"]] == [
        ("numpy", "ok"), ("crashy", "crash"), ("fakeplug", "ok")]
    assert payload["backends"][0] == first["backends"][0]

    def rows(p, worker):
        return [b for b in p["benchmarks"] if b["extra_info"]["worker"] == worker]

    assert rows(payload, "numpy") == rows(first, "numpy") and rows(first, "numpy")  # the very same timings
    assert rows(payload, "fakeplug") and len(rows(payload, "crashy")) == len(rows(first, "crashy"))
    crashes = [c for c in payload["skipped"] if c["status"] == "crash"]
    assert len(crashes) == 1 and crashes[0]["worker"] == "crashy"  # the old crash replaced, not added
    assert payload["run"]["started"] == first["run"]["started"] and payload["run"]["complete"]
    assert read_result(out, kind="bench", schemas=READABLE) == json.loads(json.dumps(payload, default=str))
    assert exit_code(payload) == 1

    before = out.read_bytes()
    proc = dropbench("bench", "--backend", "numpy", "--sizes", "2^13", "--quick", "--json", str(out), "--resume")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "sizes=[4096]" in line and "sizes=[8192]" in line, line
    assert out.read_bytes() == before  # a refused resume leaves the file alone


def test_resume_refuses_a_corrupt_file(tmp_path) -> None:
    out = tmp_path / "bench.json"
    out.write_text('{"schema": 1, "kind": "bench", "benchm')
    proc = dropbench("bench", "--backend", "numpy", "--sizes", "2^12", "--quick", "--json", str(out), "--resume")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert str(out) in line and "not valid JSON" in line, line


# -- interleaved rounds, processes, stability, schema ------------------------------------------------
from suite.bench import aggregate, interleave, stability  # noqa: E402
from suite.bench.schema import BENCH_SCHEMA, upgrade  # noqa: E402


class VirtualClock:
    """Time that only steps advance: a step of cost c at virtual time t takes c * drift(t)."""

    def __init__(self, drift=lambda t: 1.0) -> None:
        self.now, self.drift, self.log = 0.0, drift, []

    def step(self, name: str, cost: float):
        def run() -> None:
            self.log.append(name)
            self.now += cost * self.drift(self.now)
        return run

    def __call__(self) -> float:
        return self.now


def _members(clock: VirtualClock, costs: dict[str, float], baselines: dict[str, float]) -> list[interleave.Member]:
    out = [interleave.Member(k, clock.step(k, c), 1) for k, c in costs.items()]
    return out + [interleave.Member(k, clock.step(k, c), 1, baseline=k) for k, c in baselines.items()]


def test_interleaved_sweeps_shuffle_cases_with_baselines_between_every_two() -> None:
    """Each sweep runs every active case once, in a fresh random order, with both baselines before every
    case and after the last. Catches: a fixed order (drift would favour the first case), a case skipped or
    repeated within a sweep, baselines only once per sweep (neighbours seconds apart)."""
    clock = VirtualClock()
    members = _members(clock, {"a": 1.0, "b": 1.0, "c": 1.0}, {"copy": 0.1, "rng32": 0.1})
    schedule = interleave.Schedule(min_rounds=6, max_rounds=6, target_rel_iqr=0.0, budget_s=1e9)
    sweeps = interleave.run_interleaved(members, schedule, seed=3, clock=clock)
    assert sweeps == 6
    per_sweep = 3 * 3 + 2  # (copy, rng32, case) x 3, then copy and rng32 once more
    orders = []
    for s in range(6):
        chunk = clock.log[s * per_sweep:(s + 1) * per_sweep]
        cases = [x for x in chunk if x in "abc"]
        assert sorted(cases) == ["a", "b", "c"]
        for i in range(0, per_sweep - 2, 3):
            assert sorted(chunk[i:i + 2]) == ["copy", "rng32"] and chunk[i + 2] in "abc"
        orders.append(tuple(cases))
    assert len(set(orders)) > 1  # shuffled, not one fixed order
    assert all(len(m.times) == 6 for m in members[:3]) and len(members[3].times) == 6 * 4


def test_neighbour_ratio_cancels_load_changes() -> None:
    """The machine's speed jumps between random levels (1x..4x slower) every 2 virtual seconds, i.e.
    every sweep or so. Case a costs exactly 2x copy. Its per-round ratio to the copy rounds right
    next to it is 2 whenever no jump falls inside, so the median ratio is 2 to 1e-3. Catches
    neighbours taken from another sweep or position (they sit in another load level)."""
    levels = np.random.default_rng(5).uniform(1.0, 4.0, size=10_000)
    clock = VirtualClock(drift=lambda t: float(levels[int(t / 2.0)]))
    members = _members(clock, {"a": 0.2, "b": 0.05}, {"copy": 0.1})
    schedule = interleave.Schedule(min_rounds=30, max_rounds=30, target_rel_iqr=0.0, budget_s=1e9)
    sweeps = interleave.run_interleaved(members, schedule, seed=1, clock=clock)
    a, _, copy = members
    rec = interleave.record(a, [copy], schedule, sweeps, 1)
    assert rec["ratio_copy"] == pytest.approx(2.0, rel=1e-3)
    assert len(rec["neighbours"]["copy"]) == len(rec["data"]) == 30
    assert max(a.times) / min(a.times) > 2.0  # the raw times moved a lot


def test_adaptive_stop_target_budget_and_max_rounds() -> None:
    """A steady case stops at min_rounds on the IQR target; a noisy one at its time budget; a noisy one
    with budget to spare at max_rounds. Catches a stop rule that ignores any of the three."""
    costs = iter(np.random.default_rng(0).uniform(0.5, 1.5, size=10_000))
    now = [0.0]

    def clock() -> float:
        return now[0]

    def steady() -> None:
        now[0] += 1.0

    def noisy() -> None:
        now[0] += float(next(costs))

    schedule = interleave.Schedule(min_rounds=5, max_rounds=30, target_rel_iqr=0.05, budget_s=12.0)
    members = [interleave.Member("steady", steady, 1), interleave.Member("noisy", noisy, 1)]
    interleave.run_interleaved(members, schedule, clock=clock)
    assert (members[0].stop, len(members[0].times)) == ("target", 5)
    assert members[1].stop == "budget" and 12.0 <= members[1].spent < 12.0 + 1.5 * 2
    capped = [interleave.Member("noisy", noisy, 1)]
    interleave.run_interleaved(capped, replace(schedule, budget_s=1e9), clock=clock)
    assert (capped[0].stop, len(capped[0].times)) == ("max_rounds", 30)


def test_slow_cases_stop_at_slow_min_rounds_and_fast_ones_at_min_rounds() -> None:
    """A case whose round takes over a third of the budget stops at slow_min_rounds once the budget is
    spent; a fast one still needs min_rounds. Catches the slow rule applied to every case or to none."""
    now = [0.0]

    def clock() -> float:
        return now[0]

    def ticking(seconds: float):
        def step() -> None:
            now[0] += seconds
        return step

    schedule = interleave.Schedule(min_rounds=7, max_rounds=30, target_rel_iqr=0.0, budget_s=0.15, slow_min_rounds=5)
    slow, fast = interleave.Member("slow", ticking(0.1), 1), interleave.Member("fast", ticking(0.001), 1)
    interleave.run_interleaved([slow, fast], schedule, clock=clock)
    assert (slow.stop, len(slow.times)) == ("budget", 5)
    assert len(fast.times) >= 7
    plain = interleave.Member("slow", ticking(0.1), 1)
    interleave.run_interleaved([plain], replace(schedule, slow_min_rounds=None), clock=clock)
    assert len(plain.times) == 7


def test_buffer_sets_rotate_round_by_round() -> None:
    """A member with three closures (buffer sets) uses set r mod 3 in round r, every set equally often,
    and its baselines rotate theirs too. Catches a rotation stuck on the first set (the spread it exists
    to average would stay between processes) or one that skips sets."""
    clock = VirtualClock()
    case = interleave.Member("a", [clock.step(f"a{i}", 1.0) for i in range(3)], 1)
    copy = interleave.Member("copy", [clock.step(f"copy{i}", 0.1) for i in range(2)], 1, baseline="copy")
    schedule = interleave.Schedule(min_rounds=6, max_rounds=6, target_rel_iqr=0.0, budget_s=1e9)
    interleave.run_interleaved([case, copy], schedule, seed=2, clock=clock)
    assert [x for x in clock.log if x.startswith("a")] == ["a0", "a1", "a2"] * 2
    copies = [x for x in clock.log if x.startswith("copy")]
    assert copies == ["copy0", "copy1"] * (len(copies) // 2) and len(copies) == 12


def test_buffer_sets_only_for_memory_bound_cpu_cases() -> None:
    assert timing.buffer_sets(2**22, "float32", "cpu") == timing.BUFFER_SETS > 1
    assert timing.buffer_sets(2**20, "float32", "cpu") == 4  # 4 MiB: past the L2 caches
    assert timing.buffer_sets(2**20, "float16", "cpu") == 1
    assert timing.buffer_sets(2**16, "float32", "cpu") == 1
    assert timing.buffer_sets(2**22, "float32", "cuda:0") == 1  # device memory is not the harness's to multiply


def test_loops_make_rounds_last_round_s() -> None:
    assert interleave.loops_for(1e-5, 0.002) == 200
    assert interleave.loops_for(0.5, 0.002) == 1
    assert interleave.loops_for(None, 0.002) == 1


def test_group_scheduler_sweeps_when_the_group_closes_and_chunks_on_memory() -> None:
    """Rows are written into the extra_info dicts only when the group's last test ran; over the memory cap
    the cases so far are swept early and the baselines join the next chunk too. Catches a sweep per test
    (no interleaving), lost rows, and a memory cap that drops the baselines."""
    clock_calls = []
    sched = interleave.GroupScheduler(interleave.Schedule(min_rounds=3, max_rounds=3, target_rel_iqr=0.0),
                                      memory_cap=250.0, announce=clock_calls.append)
    sched.last_of_group = interleave.group_closers([("t-copy", "g"), ("t-a", "g"), ("t-b", "g"), ("t-c", "g"),
                                                    ("other", None)])
    assert sched.last_of_group == {"t-c": "g"}
    infos = {k: {} for k in ("copy", "a", "b", "c")}
    sched.add("g", "copy", lambda: None, 1e-3, infos["copy"], baseline="copy")
    for key in ("a", "b", "c"):
        sched.add("g", key, lambda: None, 1e-3, infos[key], nbytes=100.0)
        sched.finished(f"t-{key}")
    assert len(clock_calls) == 2  # a+b (200 bytes) swept when c (300) would pass the cap; then c at the close
    for key in ("a", "b", "c"):
        assert len(infos[key]["interleaved"]["data"]) == 3 and infos[key]["interleaved"]["ratio_copy"] > 0
    assert len(infos["copy"]["interleaved"]["data"]) == 3 * 3 + 3 * 2  # chunk a+b: 3 per sweep; chunk c: 2; both kept
    assert sched.pending == {}


def _process_bench(api: str, numel: int, process: int, data: list[float], ratio_copy: float) -> dict:
    return {"name": f"{api}-{numel}", "stats": {"median": float(np.median(data)) * 1.5, "data": list(data),
                                                "iterations": 1},
            "extra_info": {"api": api, "direction": "forward", "device": "cpu", "dtype": "float32", "numel": numel,
                           "mode": "eager", "worker": "w", "backend": api.split(":")[0], "process": process,
                           "interleaved": {"data": list(data), "ratio_copy": ratio_copy, "ratio_rng32": None,
                                           "rel_iqr": 0.0, "stop": "target"}}}


def test_processes_fold_into_one_row_with_the_median_over_processes() -> None:
    """Three processes with interleaved medians 1, 2 and 10: the row's median is 2 (not the pooled median,
    not the mean), the spread (10-1)/2, the copy ratio the median of 3, 4, 5. Catches pooling rounds
    across processes and using pytest-benchmark's median when interleaved rounds exist."""
    per_process = [[_process_bench("x:y", 64, p, [m] * 3, r)] for p, (m, r) in enumerate([(1.0, 3.0), (2.0, 5.0),
                                                                                           (10.0, 4.0)])]
    [row] = aggregate.merge_processes(per_process)
    assert row["stats"]["median"] == 2.0 and row["stats"]["median_of"] == "processes"
    assert row["stats"]["rounds"] == 9 and row["stats"]["max"] == 10.0
    assert row["extra_info"]["spread"] == pytest.approx(4.5)
    assert row["extra_info"]["ratio_copy"] == 4.0
    assert [p["median"] for p in row["extra_info"]["processes"]] == [1.0, 2.0, 10.0]
    assert {p["source"] for p in row["extra_info"]["processes"]} == {"interleaved"}
    assert "interleaved" not in row["extra_info"]
    assert aggregate.process_values(row, "copy") == [3.0, 5.0, 4.0]


def test_stability_marks_like_pyperf_check() -> None:
    """Steady rounds pass; a 30 % CV, a max at 3x the median and processes 50 % apart are each reported."""
    steady = aggregate.merge_processes([[_process_bench("x:y", 64, p, [1.0, 1.01, 0.99, 1.0], 1.0)] for p in range(3)])
    assert not stability.diagnose(steady[0]).unstable
    noisy = aggregate.merge_processes([[_process_bench("x:y", 64, 0, [1.0, 1.0, 1.0, 3.0], 1.0)],
                                       [_process_bench("x:y", 64, 1, [1.5, 1.5, 1.5, 1.5], 1.0)]])
    diag = stability.diagnose(noisy[0])
    assert any("stdev" in r for r in diag.reasons) and any("max" in r for r in diag.reasons)
    assert any("processes" in r for r in diag.reasons) and diag.rounds == 8


def test_schema_1_rows_are_read_as_one_process() -> None:
    """An old file gets one process entry per row from its pytest-benchmark median; a new one is untouched.
    Catches old files that stop loading or lose their medians."""
    old = {"schema": 1, "kind": "bench", "benchmarks": [{"stats": {"median": 0.5, "data": [0.5]},
                                                         "extra_info": {"api": "x:y"}}]}
    new = upgrade(old)
    assert new["schema"] == BENCH_SCHEMA and new["upgraded_from"] == 1 and old["schema"] == 1
    [proc] = new["benchmarks"][0]["extra_info"]["processes"]
    assert proc["median"] == 0.5 and proc["source"] == "pytest-benchmark"
    assert upgrade(new) is new


def test_old_result_file_loads_through_the_report_reader(tmp_path) -> None:
    from suite.report.build import load_run  # noqa: PLC0415
    from tests.fixtures.synthetic_bench import synthetic_run, write_run  # noqa: PLC0415

    path = write_run(tmp_path / "old.json", synthetic_run(sizes=(4096,)))  # the fixture writes schema 1
    run = load_run(path)
    assert run.payload["upgraded_from"] == 1
    assert all(len(b["extra_info"]["processes"]) == 1 for b in run.payload["benchmarks"])


def test_processes_option_runs_fresh_workers_and_records_each(tmp_path) -> None:
    """--processes 2: two worker processes, each row with two process entries (interleaved figures)."""
    out = tmp_path / "bench.json"
    proc = dropbench("bench", "--backend", "tests.test_bench:TimedPlugin", "--sizes", "2^10", "--quick",
                     "--processes", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    payload = read_result(out, kind="bench", schemas=READABLE)
    assert payload["schema"] == BENCH_SCHEMA and payload["backends"][0]["processes"] == 2
    for bench in payload["benchmarks"]:
        procs = bench["extra_info"]["processes"]
        assert [p["process"] for p in procs] == [0, 1] and all(p["source"] == "interleaved" for p in procs)
        assert bench["stats"]["median"] == pytest.approx(float(np.median([p["median"] for p in procs])))
        if bench["extra_info"]["backend"] != "baseline":
            assert all(p["ratio_copy"] > 0 and p["ratio_rng32"] > 0 for p in procs)
    assert "machine noise" in proc.stdout and "scaling fit" not in proc.stdout  # one size: no fit
