"""numba:fused against the fastest framework APIs, timed in ONE process, interleaved (issue 20's targets).

Why a script next to `dropbench bench`: the bench runs each backend in its own worker, so a
comparison of numba's rows with torch's rows is a comparison of two processes timed minutes
apart (× copy divides by each process's own copy baseline, which removes most but not all of
that). Here the prepared steps of both frameworks and the two baselines go through the suite's
own interleaved sweeps (suite/bench/interleave.py) in one process, so every ratio below is a
same-process, same-minute ratio: the sweeps' random order puts drift on every member alike.

Run from the repository root (one fresh process per thread count, since thread pools are sized at
import)::

    python results/numba-fused/crosscheck.py run --threads 1 --out results/numba-fused/crosscheck
    python results/numba-fused/crosscheck.py run --threads 2 --out results/numba-fused/crosscheck
    python results/numba-fused/crosscheck.py table results/numba-fused/crosscheck

Each run writes ``t<threads>-<numba threading layer>.json`` (per member: per-call seconds of every round, median, rel IQR,
and the per-round ratio medians to the interleaved copy baseline).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

NUMEL = 1 << 22
# (backend, api, layout group): element-wise APIs against each other, channel APIs against the
# same channel layout (the same input shape: suite/bench/cases.py's CHANNEL_BLOCKS)
MEMBERS = (
    ("numba", "fused", "element-wise"), ("numpy", "fast", "element-wise"),
    ("torch", "F.dropout", "element-wise"), ("torch", "nn.Dropout", "element-wise"),
    ("numba", "fused.channel1d", "channel1d"), ("torch", "nn.Dropout1d", "channel1d"),
    ("numba", "fused.channel2d", "channel2d"), ("torch", "nn.Dropout2d", "channel2d"),
)
DIRECTIONS = ("forward", "forward_backward")


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from backends import BUILTIN
    from suite.bench.baselines import make_baseline
    from suite.bench.cases import Case, build_closure
    from suite.bench.interleave import Member, Schedule, neighbour_ratios, rel_iqr, run_interleaved
    from suite.runtime.loader import load
    from suite.runtime.machine import machine_facts, machine_id
    from suite.runtime.threads import pin_threads, thread_env

    os.environ.update(thread_env(args.threads))
    backends = {}
    for name in dict.fromkeys(m[0] for m in MEMBERS):
        backends[name] = load(BUILTIN[name])
        pin_threads(backends[name], args.threads)
    members, layout = [], {}
    for name, api, group in MEMBERS:
        for direction in DIRECTIONS:
            case = Case(name, name, api, direction, NUMEL, "float32", "cpu")
            step, shape = build_closure(backends[name], case)
            for _ in range(10):  # warm: compiled loops, allocator pools, touched pages
                step()
            members.append(Member(case.test_id, step, 1))
            layout[case.test_id] = {"group": group, "api": case.api_id, "direction": direction, "shape": list(shape)}
    baselines = []
    for api in ("copy", "rng32"):
        prepared = make_baseline(api, NUMEL, "float32", "cpu", args.threads)
        prepared.step()
        baselines.append(Member(f"baseline:{api}", prepared.step, 1, baseline=api))
    everyone = members + baselines  # one call per round: at 2^22 every member takes milliseconds
    schedule = Schedule(min_rounds=args.rounds, max_rounds=args.rounds, target_rel_iqr=0.0, budget_s=1e9)
    sweeps = run_interleaved(everyone, schedule, seed=args.seed)
    copy = baselines[0]
    rows = {}
    for m in everyone:
        row = {"median_s": float(np.median(m.times)), "rel_iqr": rel_iqr(m.times), "rounds": len(m.times),
               "data": [float(t) for t in m.times], **layout.get(m.key, {"group": "baseline", "api": m.key})}
        if m.baseline is None:
            row["x_copy"] = float(np.median(neighbour_ratios(m, copy)))
        rows[m.key] = row
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    versions = {name: dict(b.versions()) for name, b in backends.items()}
    payload = {"kind": "numba-crosscheck", "machine_id": machine_id(), "machine_facts": machine_facts(),
               "python": platform.python_version(), "threads": args.threads, "numel": NUMEL, "sweeps": sweeps,
               "seed": args.seed, "versions": versions, "rows": rows,
               "load_before": os.getloadavg()[0], "command": " ".join(sys.argv)}
    import numba  # noqa: PLC0415 - loaded by the numba adapter by now; asked which pool it started

    payload["numba_threading_layer"] = numba.threading_layer()
    path = out / f"t{args.threads}-{payload['numba_threading_layer']}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path} ({sweeps} sweeps)")
    return 0


def _table(args: argparse.Namespace) -> int:
    lines = ["| threads | group | direction | API | median | × copy | rel IQR | ours faster? |", "|---|---|---|---|---:|---:|---:|---|"]
    lines[0] = lines[0].replace("| threads |", "| threads (numba layer) |")
    for path in sorted(Path(args.folder).glob("t*.json")):
        run = json.loads(path.read_text(encoding="utf-8"))
        run["threads"] = f"{run['threads']} ({run.get('numba_threading_layer', '?')})"
        rows = [r for r in run["rows"].values() if r["group"] != "baseline"]
        copy = run["rows"]["baseline:copy"]["median_s"]
        lines.append(f"| {run['threads']} | baseline | — | baseline:copy | {copy * 1e3:.3f} ms | 1.00× | "
                     f"{run['rows']['baseline:copy']['rel_iqr']:.1%} | |")
        for group in dict.fromkeys(r["group"] for r in rows):
            for direction in DIRECTIONS:
                cell = sorted((r for r in rows if r["group"] == group and r["direction"] == direction),
                              key=lambda r: r["median_s"])
                ours = next(r for r in cell if r["api"].startswith("numba:"))
                frameworks = [r for r in cell if r["api"].split(":")[0] not in ("numba", "numpy")]
                best = min(frameworks, key=lambda r: r["median_s"])
                for r in cell:
                    verdict = ""
                    if r is ours:
                        verdict = (f"yes, {best['median_s'] / ours['median_s']:.2f}× faster than {best['api']}"
                                   if ours["median_s"] < best["median_s"] else
                                   f"**no**: {best['api']} {ours['median_s'] / best['median_s']:.2f}× faster")
                    lines.append(f"| {run['threads']} | {group} | {direction} | {r['api']} | {r['median_s'] * 1e3:.3f} ms | "
                                 f"{r['x_copy']:.2f}× | {r['rel_iqr']:.1%} | {verdict} |")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="time every member interleaved in this process")
    run.add_argument("--threads", type=int, default=1)
    run.add_argument("--rounds", type=int, default=60, help="sweeps (every member once per sweep)")
    run.add_argument("--seed", type=int, default=20)
    run.add_argument("--out", required=True)
    table = sub.add_parser("table", help="the markdown table of the runs in a folder")
    table.add_argument("folder")
    args = parser.parse_args(argv)
    return _run(args) if args.command == "run" else _table(args)


if __name__ == "__main__":
    raise SystemExit(main())
