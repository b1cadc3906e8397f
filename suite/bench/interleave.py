"""Interleaved rounds: every case and baseline of one size group, timed in a shuffled round-robin.

Why: on a shared machine the clock, the neighbours' load and the cache state drift over seconds.
pytest-benchmark times one case after another, so a case timed in a quiet minute looks faster
than one timed in a busy minute, and its ratio to a baseline timed minutes earlier carries the
drift. Here each *sweep* runs every active case once (``loops`` back-to-back calls, one clock
reading around them) in a fresh random order, with the baselines between every two cases, so
drift hits all members alike, and a case's ratio to a baseline is taken round by round against
the baseline rounds right before and after it (its interleaved neighbours) before the median is
taken (Google Benchmark's random interleaving;
pyperf's calibrated loops; torch.utils.benchmark's adaptive stop on IQR/median).

Buffer sets: a member may hold several prepared closures (the same case with its own buffers,
suite/bench/cases.buffer_sets), used in turn round by round. Why: at memory-bound sizes a process's
figure depends on where its one set of buffers landed (physical pages, huge pages, cache-set
conflicts) and on what of them the cache still held from the last round; rotating several sets
averages that inside the process instead of leaving it between processes
(results/calibration/spread.py measured it: README, "Timing you can trust").

Adaptive stop (per case): after ``min_rounds`` sweeps a case stops when the relative IQR of its
per-call times is below ``target_rel_iqr``, or when its own time spent (``budget_s``) is used
up, or at ``max_rounds``. Baselines keep running while any case in the group is active, so every
case round has its neighbours. Nothing here imports a framework; the clock is injectable so the
order and the bookkeeping are testable without timing anything.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

Step = Callable[[], None]
SCHEDULES = {
    # min/max sweeps, relative IQR to stop at, seconds each case may spend, seconds one round should last,
    # and the fewer sweeps a case whose one round already takes over a third of its budget must have
    "quick": {"min_rounds": 7, "max_rounds": 30, "target_rel_iqr": 0.03, "budget_s": 0.15, "round_s": 0.001,
              "slow_min_rounds": 5},
    "full": {"min_rounds": 10, "max_rounds": 200, "target_rel_iqr": 0.02, "budget_s": 1.0, "round_s": 0.005,
             "slow_min_rounds": 10},
}


@dataclass(frozen=True)
class Schedule:
    min_rounds: int = 7
    max_rounds: int = 40
    target_rel_iqr: float = 0.03
    budget_s: float = 0.25
    round_s: float = 0.002  # loops are chosen so that one round of a member lasts about this long
    slow_min_rounds: int | None = None  # min_rounds of a case whose median round exceeds budget_s / 3 (None: min_rounds)

    @classmethod
    def named(cls, profile: str) -> "Schedule":
        return cls(**SCHEDULES[profile])


@dataclass
class Member:
    """One case or baseline of the group: its closure, loops per round and what was measured."""

    key: str  # the test id
    step: Step | Sequence[Step]  # several: one closure per buffer set, rotated round by round
    loops: int
    baseline: str | None = None  # "copy" | "rng32" for a baseline, None for a case
    times: list[float] = field(default_factory=list)  # per-call seconds, one per round it took part in
    cpu: list[float] = field(default_factory=list)  # per-call process CPU seconds of the same rounds
    sweeps: list[tuple[int, int]] = field(default_factory=list)  # the (sweep, position) slot of each entry of times
    spent: float = 0.0
    stop: str | None = None  # why it stopped: target | budget | max_rounds


def loops_for(per_call_s: float | None, round_s: float) -> int:
    """Calls per round so that a round lasts about ``round_s`` (at least one call)."""
    if not per_call_s or not math.isfinite(per_call_s) or per_call_s <= 0:
        return 1
    return max(1, math.ceil(round_s / per_call_s))


def rel_iqr(values: Sequence[float]) -> float:
    """Interquartile range over median (inf for fewer than 2 values)."""
    if len(values) < 2:
        return math.inf
    q1, med, q3 = np.percentile(np.asarray(values, dtype=np.float64), [25, 50, 75])
    return float((q3 - q1) / med) if med > 0 else math.inf


def sweep_order(keys: Sequence[str], rng: random.Random) -> list[str]:
    """One sweep: every key once, in a random order (a fresh permutation per sweep)."""
    order = list(keys)
    rng.shuffle(order)
    return order


def min_rounds(member: Member, schedule: Schedule) -> int:
    """Sweeps a case must have. A slow case (its median round over a third of the budget: tens of ms in
    --quick, the framework APIs at 2^22) has spent its budget after two or three rounds and stops at
    ``slow_min_rounds`` instead: in --quick 5 rounds of 50-150 ms, not 7 (``dropbench run`` spends most
    of its bench time there); the calibration in results/calibration/ was re-run after this change."""
    if schedule.slow_min_rounds is None or not member.times:
        return schedule.min_rounds
    slow = float(np.median(member.times)) * member.loops > schedule.budget_s / 3
    return min(schedule.min_rounds, schedule.slow_min_rounds) if slow else schedule.min_rounds


def _decide(member: Member, schedule: Schedule) -> str | None:
    if len(member.times) >= schedule.max_rounds:
        return "max_rounds"
    if len(member.times) < min_rounds(member, schedule):
        return None
    if rel_iqr(member.times) <= schedule.target_rel_iqr:
        return "target"
    if member.spent >= schedule.budget_s:
        return "budget"
    return None


def current_step(member: Member) -> Step:
    """The closure of this member's next round: with several buffer sets (a list of closures, one per
    set), round r uses set r mod len, so each process's figure averages over where several sets landed."""
    if callable(member.step):
        return member.step
    return member.step[len(member.times) % len(member.step)]


def _time(member: Member, slot: tuple[int, int], clock: Callable[[], float],
          cpu_clock: Callable[[], float]) -> None:
    step, loops = current_step(member), member.loops
    cpu_start = cpu_clock()
    start = clock()
    for _ in range(loops):
        step()
    took = clock() - start
    member.cpu.append((cpu_clock() - cpu_start) / loops)
    member.times.append(took / loops)
    member.sweeps.append(slot)
    member.spent += took


def run_interleaved(members: Sequence[Member], schedule: Schedule, *, seed: int = 0,
                    clock: Callable[[], float] = time.perf_counter,
                    cpu_clock: Callable[[], float] = time.process_time) -> int:
    """Sweep until every case has stopped; returns the number of sweeps. Fills ``times``/``sweeps``.

    One sweep: the active cases in a fresh random order, with every baseline (in random order too)
    right before each case and once more after the last, so each case round sits between two
    baseline rounds: its *neighbours*, taken seconds or less apart. ``sweeps`` holds slots
    (sweep, position): a case at (s, i) has the baseline rounds at (s, i) before and (s, i + 1)
    after it. Without any case (only baselines) the baselines get ``min_rounds`` sweeps.
    """
    rng = random.Random(seed)
    cases = [m for m in members if m.baseline is None]
    baselines = [m for m in members if m.baseline is not None]
    sweep = 0
    while True:
        active = [m for m in cases if m.stop is None]
        if cases and not active:
            break
        if not cases:
            if sweep >= schedule.min_rounds:
                break
            for b in sweep_order([m.key for m in baselines], rng):
                _time(next(m for m in baselines if m.key == b), (sweep, 0), clock, cpu_clock)
            sweep += 1
            continue
        by_key = {m.key: m for m in active}
        order = sweep_order(list(by_key), rng)
        for position, key in enumerate(order):
            for b in sweep_order([m.key for m in baselines], rng):
                _time(next(m for m in baselines if m.key == b), (sweep, position), clock, cpu_clock)
            _time(by_key[key], (sweep, position), clock, cpu_clock)
        for b in sweep_order([m.key for m in baselines], rng):
            _time(next(m for m in baselines if m.key == b), (sweep, len(order)), clock, cpu_clock)
        for m in active:
            m.stop = _decide(m, schedule)
        sweep += 1
    for m in members:
        if m.stop is None:
            m.stop = "group-done" if m.baseline is not None or cases else "min_rounds"
    return sweep


def neighbours(case: Member, baseline: Member, cpu: bool = False) -> list[float | None]:
    """Per case round: the mean of the baseline's rounds right before and right after it."""
    by_slot = dict(zip(baseline.sweeps, baseline.cpu if cpu else baseline.times))
    out: list[float | None] = []
    for sweep, position in case.sweeps:
        near = [by_slot[s] for s in ((sweep, position), (sweep, position + 1)) if s in by_slot]
        out.append(sum(near) / len(near) if near else None)
    return out


def neighbour_ratios(case: Member, baseline: Member, cpu: bool = False) -> list[float]:
    """Per case round: its per-call time over its baseline neighbours' (suite/bench/aggregate.py reads their median)."""
    return [t / n for t, n in zip(case.cpu if cpu else case.times, neighbours(case, baseline, cpu)) if n]


def record(member: Member, baselines: Sequence[Member], schedule: Schedule, sweeps: int, seed: int) -> dict[str, Any]:
    """The ``extra_info["interleaved"]`` entry of one member (per-call seconds, neighbours, why it stopped)."""
    out: dict[str, Any] = {
        "data": [float(t) for t in member.times], "slots": [list(s) for s in member.sweeps], "loops": member.loops,
        "median": float(np.median(member.times)) if member.times else None,
        "cpu": [float(t) for t in member.cpu],
        "cpu_median": float(np.median(member.cpu)) if member.cpu else None,
        "rel_iqr": rel_iqr(member.times) if len(member.times) > 1 else None,
        "stop": member.stop, "group_sweeps": sweeps, "seed": seed,
        "schedule": {k: getattr(schedule, k) for k in SCHEDULES["quick"]},
    }
    if member.baseline is None:
        out["neighbours"] = {}
        for b in baselines:
            out["neighbours"][b.baseline] = neighbours(member, b)
            ratios = neighbour_ratios(member, b)
            out[f"ratio_{b.baseline}"] = float(np.median(ratios)) if ratios else None
            cpu_ratios = [r for r in neighbour_ratios(member, b, cpu=True) if r > 0]
            out[f"cpu_ratio_{b.baseline}"] = float(np.median(cpu_ratios)) if cpu_ratios else None
    return out


# -- the pytest side: members collected test by test, swept when their group is complete ------------
@dataclass
class _Pending:
    members: list[Member] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)  # the benchmarks' extra_info dicts (written into)


class GroupScheduler:
    """Collects each timed test's closure under its size group; when the group's last test has run
    (``last_of_group``, known after collection), sweeps the group and writes ``extra_info["interleaved"]``.

    pytest-benchmark keeps a reference to every fixture's ``extra_info`` dict and serializes it when
    the session ends, so writing into it later still lands in the JSON. ``memory_cap`` bounds the
    estimated bytes of the cases held at once: above it the cases collected so far are swept early
    (the baselines stay and join the next chunk too).
    """

    def __init__(self, schedule: Schedule | None, seed: int = 0, memory_cap: float = math.inf,
                 announce: Callable[[str], None] | None = None) -> None:
        self.schedule = schedule
        self.seed = seed
        self.memory_cap = memory_cap
        self.announce = announce
        self.last_of_group: dict[str, str] = {}  # nodeid -> group it closes
        self.pending: dict[str, _Pending] = {}
        self._bytes: dict[str, float] = {}
        self.chunks = 0

    @property
    def enabled(self) -> bool:
        return self.schedule is not None

    def add(self, group: str, key: str, step: Step | Sequence[Step], per_call_s: float | None, info: dict[str, Any],
            baseline: str | None = None, nbytes: float = 0.0) -> None:
        if self.schedule is None:
            return
        pending = self.pending.setdefault(group, _Pending())
        if baseline is None and self._bytes.get(group, 0.0) + nbytes > self.memory_cap and \
                any(m.baseline is None for m in pending.members):
            self.flush(group, keep_baselines=True)
            pending = self.pending.setdefault(group, _Pending())
        pending.members.append(Member(key, step, loops_for(per_call_s, self.schedule.round_s), baseline))
        pending.infos.append(info)
        self._bytes[group] = self._bytes.get(group, 0.0) + (0.0 if baseline else nbytes)

    def finished(self, nodeid: str) -> None:
        """Called after every test: sweeps the group this test closes, if any."""
        group = self.last_of_group.get(nodeid)
        if group is not None and group in self.pending:
            self.flush(group)

    def flush_all(self) -> None:
        for group in list(self.pending):
            self.flush(group)

    def flush(self, group: str, keep_baselines: bool = False) -> None:
        pending = self.pending.pop(group, None)
        self._bytes.pop(group, None)
        if pending is None or self.schedule is None or not pending.members:
            return
        if self.announce:
            self.announce(f"interleaved rounds of {group} ({len(pending.members)} members)")
        seed = self.seed + self.chunks
        self.chunks += 1
        try:
            sweeps = run_interleaved(pending.members, self.schedule, seed=seed)
        except Exception as exc:  # a closure that fails here failed nowhere else: record, do not lose the rest
            for info in pending.infos:
                info["interleaved"] = {"error": f"{type(exc).__name__}: {exc}"[:600]}
            return
        baselines = [m for m in pending.members if m.baseline is not None]
        for member, info in zip(pending.members, pending.infos):
            entry = record(member, baselines, self.schedule, sweeps, seed)
            previous = info.get("interleaved")
            if member.baseline is not None and previous and "data" in previous:  # a baseline in several chunks
                entry["data"] = previous["data"] + entry["data"]
                entry["median"] = float(np.median(entry["data"]))
                entry["cpu"] = previous["cpu"] + entry["cpu"]
                entry["cpu_median"] = float(np.median(entry["cpu"]))
                entry["rel_iqr"] = rel_iqr(entry["data"])
                entry["slots"] = previous["slots"] + entry["slots"]
            info["interleaved"] = entry
        if keep_baselines:
            kept = _Pending()
            for member, info in zip(pending.members, pending.infos):
                if member.baseline is not None:
                    kept.members.append(Member(member.key, member.step, member.loops, member.baseline))  # fresh rounds
                    kept.infos.append(info)
            self.pending[group] = kept


def group_closers(items: Sequence[tuple[str, str | None]]) -> dict[str, str]:
    """nodeid -> group for the last item of each group, from (nodeid, group or None) in run order."""
    last: dict[str, str] = {}
    for nodeid, group in items:
        if group is not None:
            last[group] = nodeid
    return {nodeid: group for group, nodeid in last.items()}
