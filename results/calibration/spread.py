"""Where does the between-process spread at 2^22 come from? Variants of buffer handling, compared in one run.

    python results/calibration/spread.py run --processes 8 --out /tmp/spread.json
    python results/calibration/spread.py table /tmp/spread.json

``run`` starts ``--processes`` fresh interpreters per variant, the variants alternating in time
(v1, v2, v3, ..., v1, v2, ...) so machine drift and neighbours' load hit every variant alike. Each
process times numpy:fast forward at 2^22 (16 MiB in, 16 MiB out) and the copy baseline in
interleaved rounds like the harness (suite/bench/interleave.py) and reports its median per-call CPU
time and its median ratio to the copy neighbours. The spread of a variant is taken over its
processes: (max - min) / median and the standard deviation of the logs. Variants:

* ``one``: one buffer set per member, prepared once (the harness before issue 26);
* ``rotate4``: four buffer sets per member (four ``prepare`` calls), rotated round by round;
* ``fresh``: a new buffer set every round (prepared, warmed once, untimed);
* ``nohuge``: ``one`` with NumPy's transparent-huge-page madvise switched off before allocation.

Only ratios inside one run mean anything on a shared machine: compare variants with each other.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

VARIANTS = ("one", "rotate4", "fresh", "nohuge", "thpheap")
NUMEL = 2**22
THP_HEAP = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432"}
"""``thpheap``: ``one`` with glibc's malloc asked to back its heap with transparent huge pages and to keep
allocations below 32 MiB on the heap (glibc >= 2.35): buffers smaller than NumPy's own 4 MiB huge-page
threshold then lie in 2 MiB pages too, so their place in the physically indexed caches is the same in
every process (the question for cache-resident sizes such as 2^16)."""


def child(variant: str, rounds: int, seed: int, numel: int = NUMEL) -> dict:
    import random

    import numpy as np

    if variant == "nohuge":
        core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
        core.multiarray._set_madvise_hugepage(False)
    from backends.numpy_backend import NumpyBackend
    from suite.bench.baselines import make_baseline
    from suite.spec import DropoutSpec

    backend = NumpyBackend()
    spec = DropoutSpec.from_rate(0.5)
    shape = (numel // 1024, 1024)

    def fast() -> object:
        step = backend.prepare(shape, spec, api="fast", direction="forward")
        step()
        return step

    def copy() -> object:
        b = make_baseline("copy", numel, "float32", "cpu", 1)
        b.step()
        return b.step

    sets = 4 if variant == "rotate4" else 1
    members = {"fast": [fast() for _ in range(sets)], "copy": [copy() for _ in range(sets)]}
    rng = random.Random(seed)
    cpu: dict[str, list[float]] = {"fast": [], "copy_before": [], "copy_after": []}
    for r in range(rounds):
        if variant == "fresh":
            members = {"fast": [fast()], "copy": [copy()]}
        i = r % sets
        order = ["copy_before", "fast", "copy_after"]
        for name in order:
            step = members["copy" if name.startswith("copy") else "fast"][i]
            start = time.process_time()
            for _ in range(3):
                step()
            cpu[name].append((time.process_time() - start) / 3)
        rng.random()
    ratios = [f / ((a + b) / 2) for f, a, b in zip(cpu["fast"], cpu["copy_before"], cpu["copy_after"])]
    return {"variant": variant, "fast_cpu": statistics.median(cpu["fast"]),
            "copy_cpu": statistics.median(cpu["copy_before"] + cpu["copy_after"]),
            "ratio_copy": statistics.median(ratios)}


def spread(values: list[float]) -> dict:
    med = statistics.median(values)
    logs = [math.log(v) for v in values]
    return {"n": len(values), "median": med, "range_rel": (max(values) - min(values)) / med,
            "sd_log": statistics.stdev(logs)}


def run(args: argparse.Namespace) -> int:
    out = []
    for p in range(args.processes):
        for variant in args.variants:
            env = {**os.environ, **(THP_HEAP if variant == "thpheap" else {})}
            proc = subprocess.run([sys.executable, __file__, "child", variant, str(args.rounds), str(p), str(args.numel)],
                                  cwd=ROOT, capture_output=True, text=True, env=env)
            if proc.returncode:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 2
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["process"] = p
            row["numel"] = args.numel
            out.append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps({"rounds": args.rounds, "rows": out}, indent=1) + "\n", encoding="utf-8")
    return table(argparse.Namespace(path=args.out))


def table(args: argparse.Namespace) -> int:
    rows = json.loads(Path(args.path).read_text(encoding="utf-8"))["rows"]
    print("| variant | processes | fast CPU ms (median) | spread (max-min)/median | sd log | "
          "x copy (median) | spread | sd log | copy CPU spread |")
    print("|---|---|---|---|---|---|---|---|---|")
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]
        if not mine:
            continue
        f, c, k = (spread([r[key] for r in mine]) for key in ("fast_cpu", "ratio_copy", "copy_cpu"))
        print(f"| {variant} | {f['n']} | {f['median'] * 1e3:.2f} | {f['range_rel']:.1%} | {f['sd_log']:.3f} | "
              f"{c['median']:.3f} | {c['range_rel']:.1%} | {c['sd_log']:.3f} | {k['range_rel']:.1%} |")
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--processes", type=int, default=8)
    r.add_argument("--rounds", type=int, default=15)
    r.add_argument("--out", required=True)
    r.add_argument("--numel", type=int, default=NUMEL, help="elements (default 2^22)")
    r.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    t = sub.add_parser("table")
    t.add_argument("path")
    args = parser.parse_args()
    return run(args) if args.cmd == "run" else table(args)


if __name__ == "__main__":
    sys.exit(main())
