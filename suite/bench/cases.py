"""What one benchmark is: the cases, their closures, their traffic model and their extra_info.

The pytest-benchmark tests (tests/benchmarks/) and the orchestrator (suite/bench/runner.py) both
build on this module, so a case means the same thing in ``pytest --benchmark-only`` and in
``dropbench bench``. Nothing here imports a framework: closures come from the adapters'
``prepare()``, baselines from :mod:`suite.bench.baselines`.

Traffic model (bytes of *useful* traffic per step; the mask is not counted, since how it is
stored is exactly what differs between frameworks):
forward 2*numel*itemsize (read x, write y); forward_backward 4*numel*itemsize (x, y,
grad_out, grad_x); baseline:copy 2*numel*itemsize; baseline:rng32 4*numel (one uint32 each).

Bytes *moved* (``extra_info.bytes_moved``) add the mask as the API declares it keeps it
(``ApiInfo.traffic``, backends/base.py: Traffic): written in forward and read in backward, its width
per mask element (none when regenerated from the seed), over the mask's elements (fewer when shared
along axes). Baselines move what they use. The report's effective GB/s is bytes_moved / time.
"""
from __future__ import annotations

import math
import os
import re
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

from backends.base import Unsupported, api_info

DIRECTIONS = ("forward", "forward_backward")
ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
DEFAULT_SIZES = tuple(2**k for k in range(12, 25, 2))  # 16 KiB (L1/L2) ... 64 MiB (DRAM) of float32
QUICK_SIZES = (2**16, 2**22)  # one cache-resident, one memory-bound size
SMOKE_SIZES = (2**12,)  # plain `pytest`: every case once, at the smallest size
DEFAULT_RATE = 0.5
DEFAULT_THREADS = 1
"""Why 1: the baselines and most NumPy APIs are single-threaded, so one thread is the only count
at which every backend competes on equal terms (numpy:fast follows the pinned count too); it also
removes scheduler noise on shared machines. Use ``--threads N`` for scaling; the count is recorded
with every row either way."""
BASELINE_BACKEND = "baseline"
PEAK_ARRAYS = 8
"""Arrays of numel elements a forward_backward step may hold at once (x, grad_out, y, grad_x,
mask, temporaries): the memory estimate that rejects absurd sizes up front."""
ROW_WIDTH = 1024
CHANNEL_BLOCKS = {3: (64, 64), 4: (16, 16, 16)}  # per-sample (C, L) and (C, H, W) of channel-dropout layouts


class CaseSkip(Exception):
    """This case cannot be timed here; ``kind`` says why in one word, the message in words.

    kinds: unavailable (framework missing), no-device (device not visible), unsupported (API
    cannot express the case), no-closure (backend has no prepare()).
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


# -- sizes ----------------------------------------------------------------------------------
_POWER = re.compile(r"^\s*(\d+)\s*(?:\^|\*\*|p)\s*(\d+)\s*$")


def parse_size(text: str) -> int:
    """"2^16", "2**16", "2p16" (the test-id form) or "65536" -> 65536; ValueError naming the text otherwise."""
    match = _POWER.match(text)
    try:
        value = int(match.group(1)) ** int(match.group(2)) if match else int(text.strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"not a size: {text!r} (give an integer or a power like 2^16)") from None
    return value


def size_label(numel: int) -> str:
    """2^k for powers of two, else the integer: the form used in ids and tables."""
    return f"2^{numel.bit_length() - 1}" if numel > 0 and numel & (numel - 1) == 0 else str(numel)


def id_size_label(numel: int) -> str:
    """The size in a test id: "2p16" (C's binary exponent, as in 0x1p16), else the integer.

    pytest's ``-k`` accepts only letters, digits and ``:+-.[]\\/`` in a name, so "2^16" could not be
    selected; "2p16" reads as a power of two, and no default size's label is part of another's.
    """
    return size_label(numel).replace("^", "p")


def peak_bytes(numel: int, dtype: str) -> int:
    return PEAK_ARRAYS * numel * ITEMSIZE[dtype]


BUFFER_SETS = 4
BUFFER_SETS_MIN_BYTES = 4 * 2**20
"""Buffer sets rotated in the interleaved rounds of a CPU case whose input is at least 4 MiB (past
the L2 caches, memory bound): 4. Measured with results/calibration/spread.py (24 processes per
variant, interleaved in one run, loaded 2-core VM): between-process sd of log CPU time of numpy:fast
at 2^22 0.106 with one set, 0.062 with four rotated (a fresh set every round 0.077; NumPy's huge-page
madvise off 0.140, and 26 % slower). Smaller cases stay cache resident: one set."""


def buffer_sets(numel: int, dtype: str, device: str) -> int:
    """How many buffer sets a case's interleaved rounds rotate (see BUFFER_SETS)."""
    return BUFFER_SETS if device == "cpu" and numel * ITEMSIZE[dtype] >= BUFFER_SETS_MIN_BYTES else 1


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo, else total physical memory; 0 if neither is known."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


# -- traffic --------------------------------------------------------------------------------
def useful_bytes(api: str, direction: str, numel: int, dtype: str) -> int:
    """Bytes a step must move at least (see the module docstring); ``api`` is a full id."""
    if api == f"{BASELINE_BACKEND}:rng32":
        return 4 * numel
    if api == f"{BASELINE_BACKEND}:copy":
        return 2 * numel * ITEMSIZE[dtype]
    return (2 if direction == "forward" else 4) * numel * ITEMSIZE[dtype]


def traffic_info(backend: Any, case: "Case", shape: Sequence[int]) -> dict[str, Any]:
    """``bytes_moved`` of one step by the API's declared traffic model, and the model itself, for extra_info."""
    info = api_info(backend, case.api)
    traffic = info.traffic
    mask_elements = None
    if info.layout is not None:
        mask_elements = math.prod(1 if axis in info.layout.broadcast_axes else int(n) for axis, n in enumerate(shape))
    moved = traffic.bytes_moved(case.direction, case.numel, ITEMSIZE[case.dtype], mask_elements)
    return {"bytes_moved": int(round(moved)),
            "traffic": {"mask": traffic.mask, "declared": traffic.declared,
                        "mask_elements": case.numel if mask_elements is None else mask_elements}}


def throughput(stats: Mapping[str, Any], extra: Mapping[str, Any], statistic: str = "median") -> dict[str, float]:
    """GB/s of useful traffic and elements/s from one benchmark's stats (median by default)."""
    seconds = float(stats[statistic])
    if seconds <= 0:
        return {"seconds": seconds, "gb_per_s": math.inf, "elements_per_s": math.inf}
    return {"seconds": seconds, "gb_per_s": extra["bytes"] / seconds / 1e9, "elements_per_s": extra["numel"] / seconds}


# -- the plan: which cases one process times ------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What one pytest process benchmarks; handed to a worker inside its task file (suite.runtime.worker.Task).

    ``backends``: (name, module:attr) pairs; ``apis``: full ids to keep (empty = all);
    ``worker``: the backend whose process this is ("pytest" when run by hand);
    ``threads``: pinned count, None when the process was not pinned.
    """

    backends: tuple[tuple[str, str], ...]
    sizes: tuple[int, ...] = DEFAULT_SIZES
    dtypes: tuple[str, ...] = ("float32",)
    devices: tuple[str, ...] = ("cpu",)
    apis: tuple[str, ...] = ()
    rate: float = DEFAULT_RATE
    threads: int | None = None
    worker: str = "pytest"
    baselines: bool = True
    bare_loop: bool = False  # also time each case and baseline with bare_loop() after pytest-benchmark (harness overhead)
    interleave: str | None = "quick"  # schedule of the interleaved rounds (suite/bench/interleave.py); None: off
    process: int = 0  # which of the backend's fresh worker processes this is (0-based)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "Plan":
        raw = dict(raw)
        raw["backends"] = tuple(tuple(pair) for pair in raw["backends"])
        for key in ("sizes", "dtypes", "devices", "apis"):
            raw[key] = tuple(raw[key])
        return cls(**raw)


def default_plan(smoke: bool) -> Plan:
    """A hand-run ``pytest``: every built-in backend on CPU and CUDA (skipped with a reason when absent)."""
    from backends import BUILTIN  # noqa: PLC0415 - adapter registry, imports no framework

    return Plan(backends=tuple(BUILTIN.items()), sizes=SMOKE_SIZES if smoke else DEFAULT_SIZES,
                devices=("cpu", "cuda"))


def device_id(device: str) -> str:
    """"cuda" -> "cuda:0"; "cpu" and "cuda:N" unchanged."""
    return "cuda:0" if device == "cuda" else device


@dataclass(frozen=True)
class Case:
    """One benchmark of one API: backend x api x direction x size x dtype x device x mode."""

    backend: str
    ref: str
    api: str  # short name as the adapter knows it
    direction: str
    numel: int
    dtype: str
    device: str  # "cpu" | "cuda:N"
    mode: str = "eager"  # "eager" | "tf.function" | "hybridized" | ...

    @property
    def api_id(self) -> str:
        return f"{self.backend}:{self.api}"

    @property
    def compiled(self) -> bool:
        return self.mode != "eager"

    @property
    def test_id(self) -> str:
        return "-".join([self.api_id, self.direction, id_size_label(self.numel), self.dtype, self.device, self.mode])


@dataclass(frozen=True)
class BaselineCase:
    api: str  # "copy" | "rng32"
    numel: int
    dtype: str  # the dtype of the rows it is a baseline for (rng32 always draws uint32)
    device: str
    worker: str

    @property
    def api_id(self) -> str:
        return f"{BASELINE_BACKEND}:{self.api}"

    @property
    def test_id(self) -> str:
        return "-".join([self.api_id, id_size_label(self.numel), self.dtype, self.device, f"in-{self.worker}"])


def plan_cases(plan: Plan, api_lists: Mapping[str, Sequence[str]], names: Mapping[str, str] | None = None,
               compiled: Mapping[str, Mapping[str, str | None]] | None = None) -> list[Case]:
    """Every case of the plan.

    ``api_lists`` maps a backend's ref to its declared API names; ``names`` maps a ref to the
    backend's own ``name`` where it is loaded (a plugin's ``module:attr`` becomes its name);
    ``compiled`` maps a ref to {api: the graph mode its ApiInfo declares, timed next to eager}.
    """
    cases = []
    for requested, ref in plan.backends:
        name = (names or {}).get(ref, requested)
        for api in api_lists.get(ref, ()):
            if plan.apis and f"{name}:{api}" not in plan.apis and f"{requested}:{api}" not in plan.apis:
                continue
            mode = (compiled or {}).get(ref, {}).get(api)
            modes = ["eager"] + ([mode] if mode else [])
            for device in plan.devices:
                for dtype in plan.dtypes:
                    for numel in plan.sizes:
                        for direction in DIRECTIONS:
                            for mode in modes:
                                cases.append(Case(name, ref, api, direction, numel, dtype, device_id(device), mode))
    return cases


def plan_baselines(plan: Plan) -> list[BaselineCase]:
    if not plan.baselines:
        return []
    return [BaselineCase(api, numel, dtype, device_id(device), plan.worker)
            for device in plan.devices for dtype in plan.dtypes for numel in plan.sizes for api in ("copy", "rng32")]


# -- building a case ------------------------------------------------------------------------
def bench_shape(numel: int, layout: Any | None) -> tuple[int, ...]:
    """The input shape of a case.

    Element-wise APIs get a 2-d (rows, width) batch, width 1024 where it divides (what a dense
    layer sees; the TF DropoutWrapper needs 2-d). Channel-dropout layouts (torch Dropout1d/2d)
    get (N, 64, 64) / (N, 16, 16, 16): numel must be a multiple of 4096 for them.
    """
    if numel < 1:
        raise ValueError(f"numel must be positive, got {numel}")
    if layout is None:
        width = math.gcd(numel, ROW_WIDTH)
        return (numel // width, width)
    block = CHANNEL_BLOCKS.get(layout.ndim)
    per_sample = math.prod(block) if block else 0
    if not block or numel % per_sample:
        raise CaseSkip("unsupported", f"a {layout.ndim}-d channel layout needs numel to be a multiple of "
                                      f"{per_sample or '?'}, got {numel}")
    return (numel // per_sample, *block)


def case_spec(backend: Any, case: Case, rate: float = DEFAULT_RATE) -> tuple[Any, tuple[int, ...]]:
    """The DropoutSpec and shape of a case: training, unseeded (a timed loop continues one stream)."""
    from suite.spec import DropoutSpec  # noqa: PLC0415

    info = api_info(backend, case.api)
    shape = bench_shape(case.numel, info.layout)
    axes = info.layout.broadcast_axes if info.layout is not None else ()
    return DropoutSpec(rate=rate, broadcast_axes=axes, dtype=case.dtype, device=case.device, kind=info.kind), shape


def check_case(backend: Any, case: Case) -> None:
    """Raise CaseSkip when the backend cannot run this case here (checked before any allocation)."""
    info = api_info(backend, case.api)
    if case.dtype not in info.dtypes:
        raise CaseSkip("unsupported", f"{case.api_id} does not declare dtype {case.dtype} "
                                      f"(declares {', '.join(info.dtypes)})")
    if case.device != "cpu":
        devices = list(backend.devices())
        if case.device not in devices:
            raise CaseSkip("no-device", f"{case.backend} sees no {case.device} here (devices: {', '.join(devices)})")
    if not callable(getattr(backend, "prepare", None)):
        raise CaseSkip("no-closure", f"{case.backend} has no prepare(): no timing closure")


def build_closure(backend: Any, case: Case, rate: float = DEFAULT_RATE) -> tuple[Callable[[], None], tuple[int, ...]]:
    """The adapter's timed step for ``case`` (inputs already on the device) and the input shape.

    Unsupported from the adapter becomes CaseSkip("unsupported"); every other exception is a
    real failure and propagates.
    """
    check_case(backend, case)
    spec, shape = case_spec(backend, case, rate)
    try:
        step = backend.prepare(shape, spec, api=case.api, direction=case.direction, compiled=case.compiled)
    except Unsupported as exc:
        kind = "no-closure" if "no timing closure" in str(exc) else "unsupported"
        raise CaseSkip(kind, str(exc)) from exc
    return step, shape


def extra_info(case: Case | BaselineCase, *, shape: Sequence[int], rate: float | None, threads: int | None,
               versions: Mapping[str, str], worker: str, **more: Any) -> dict[str, Any]:
    """The extra_info every row carries (the contract the report and compare commands read)."""
    is_baseline = isinstance(case, BaselineCase)
    direction = "forward" if is_baseline else case.direction
    info: dict[str, Any] = {
        "backend": BASELINE_BACKEND if is_baseline else case.backend,
        "api": case.api_id,
        "api_name": case.api,
        "direction": direction,
        "device": case.device,
        "dtype": case.dtype,
        "numel": case.numel,
        "size": size_label(case.numel),
        "shape": [int(n) for n in shape],
        "rate": rate,
        "mode": "eager" if is_baseline else case.mode,
        "threads": threads,
        "versions": dict(versions),
        "bytes": useful_bytes(case.api_id, direction, case.numel, case.dtype),
        "worker": worker,
    }
    info.update(more)
    info.setdefault("bytes_moved", info["bytes"])  # baselines move exactly what they use
    return info


def group_name(numel: int, dtype: str, device: str) -> str:
    """pytest-benchmark group: every row that shares size, dtype and device (baselines included)."""
    return f"{size_label(numel)} {dtype} {device}"


BARE_LOOP_ROUNDS = 15
BARE_LOOP_ROUND_S = 0.02


def bare_loop(step: Callable[[], None], rounds: int = BARE_LOOP_ROUNDS, min_round_s: float = BARE_LOOP_ROUND_S,
              clock: Callable[[], float] = time.perf_counter) -> dict[str, float | int]:
    """Time ``step`` with nothing around it: ``rounds`` rounds of ``loops`` back-to-back calls.

    The yardstick for the harness: like ``timeit``, each round is long (``loops`` grows until a
    calibration round lasts at least ``min_round_s``), so the clock's own cost vanishes; the figure is
    the median round divided by ``loops``. Compared with pytest-benchmark's median of the same
    closure in the same process right after it, it says how much the harness adds.
    """
    loops = 1
    while True:  # calibrate like timeit.autorange: grow loops until one round lasts min_round_s
        start = clock()
        for _ in range(loops):
            step()
        took = clock() - start
        if took >= min_round_s:
            break
        loops = max(loops + 1, math.ceil(loops * min_round_s / max(took, 1e-9)))
    per_call = []
    for _ in range(rounds):
        start = clock()
        for _ in range(loops):
            step()
        per_call.append((clock() - start) / loops)
    per_call.sort()
    return {"median_s": statistics.median(per_call), "min_s": per_call[0], "rounds": rounds, "loops": loops}


OVERHEAD_HEADERS = ("api", "mode", "direction", "size", "dtype", "threads", "pytest-benchmark", "bare loop", "difference %")


def harness_overhead(benchmarks: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Rows for the benchmarks timed with ``--bare-loop``: pytest-benchmark's median, the bare loop's,
    and pytest-benchmark's excess over the bare loop in percent (negative: the bare loop was slower)."""
    rows = []
    for bench in benchmarks:
        info = bench["extra_info"]
        bare = info.get("bare_loop")
        if not bare:
            continue
        harness, plain = float(bench["stats"]["median"]), float(bare["median_s"])
        rows.append([info["api"], str(info.get("mode") or "eager"), info["direction"], size_label(int(info["numel"])),
                     info["dtype"], str(info.get("threads")), f"{harness * 1e6:.1f} µs", f"{plain * 1e6:.1f} µs",
                     f"{(harness / plain - 1) * 100:+.1f}"])
    return rows
