"""A/A and injected-slowdown calibration of `dropbench compare` on this machine.

    python results/calibration/calibrate.py run --runs 11 --out results/calibration/<machine-id>
    python results/calibration/calibrate.py analyze results/calibration/<machine-id>

``run`` takes ``--runs`` back-to-back ``dropbench bench --quick`` runs of unchanged code (numpy,
all APIs; torch, two APIs; and the two plugins of slow_plugin.py), sizes 2^16 and 2^22 (the quick
ones). Odd-numbered runs set the plugins' work factors to 1.25 (calib25) and 1.10 (calib10), even
ones to 1.0, so every consecutive pair of runs (i, i+1) is

* an A/A pair for every numpy, torch and baseline row (that code did not change), and
* a detection trial for the calib25 / calib10 rows (oriented so that "old" is the 1.0 run).

``analyze --pairs all`` (default) uses every (unslowed, slowed) pair of runs, 30 with 11 runs: each is
an A/A pair for the unchanged backends and a trial for the plugins. Pairs share runs, so they are
not independent; the spread over pairs understates the uncertainty. ``analyze`` runs
suite.report.compare.compare_runs on every pair for a grid of settings and writes
``calibration.json`` and ``calibration.md`` next to the runs: the A/A flag rate (mean and standard
deviation over pairs), and the fraction of trials in which the plugins' 2^22 rows were flagged as
regressions. Also for the first k processes only (k = 1, 2, 3), and per clock (wall, CPU) and
normalization. compare's defaults are the setting with the highest 25 % detection at 2^22 among
those whose mean A/A rate is at most 1 row in 20.

Duet mode (issue 26), both compare modes from the same processes:

    python results/calibration/calibrate.py duet --runs 12 --out results/calibration/<machine-id>-duet
    python results/calibration/calibrate.py duet-analyze results/calibration/<machine-id>-duet \
        [--pairs-used 3] [--also results/calibration/<another calibration>]

``duet`` makes ``--runs`` runs; each is one ``compare --duet`` run per layout (suite/bench/duet.py, quick
sizes, ``--pairs`` process pairs alternating OLD/NEW) of slow_plugin.py's plugins: calib25, calib10
and calib05 with NEW doing 1.25x / 1.10x / 1.05x the work, and calibaa with 1.0x on both sides (the
A/A rows, with every baseline row of every duet). ``duet-analyze`` judges

* duet mode: each duet with suite.report.paired.compare_duet over a grid (paired test, clock,
  normalization, threshold, alpha); the default is the setting with the highest 25 % (then 10 %)
  detection at 2^22 among those flagging at most 1 A/A row in 20 in the alternating layout;
* file-vs-file mode: OLD's processes of run i against NEW's of run j (i != j: two files taken
  minutes apart) with suite.report.compare.compare_runs over its own grid, chosen by the same rule;
* ``--pairs-used K``: each duet of P pairs is judged as P // K duets of K consecutive pairs (K = 3 is
  the budget of two `bench --quick` files), and the rates at all P pairs are stated too (``by_pairs``);
* ``--also FOLDER``: another calibration's rates (e.g. on a loaded machine) at the chosen settings,
  stored as ``elsewhere`` and printed next to these;

and writes ``duet.md`` next to the runs and the chosen settings with their rates to
``results/calibration/modes.json``, which compare's verdict line reads.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from results.calibration.duet_calibration import LAYOUT_MODES, MODES_FILE, duet, duet_analyze, processes_window  # noqa: E402
from suite.report.compare import CLOCKS, NORMALIZE, compare_runs  # noqa: E402

PLUGIN = "results.calibration.slow_plugin"
BACKENDS = ("numpy", "torch", f"{PLUGIN}:Slow25", f"{PLUGIN}:Slow10")
APIS = ("numpy:reference", "numpy:d2l-scratch", "numpy:fast", "numpy:fast.channel1d", "numpy:fast.channel2d",
        "torch:F.dropout", "torch:nn.Dropout1d", "calib25:fast", "calib10:fast")
SLOW = {"calib25": ("DROPBENCH_CALIB25", 1.25), "calib10": ("DROPBENCH_CALIB10", 1.10)}
THRESHOLDS = (0.05, 0.10, 0.15, 0.20)
ALPHAS = (0.05, 0.01, 1.0)  # 1.0: the threshold alone
BIG = 2**22


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    log = []
    for i in range(args.runs):
        slowed = i % 2 == 1
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        for _, (var, factor) in SLOW.items():
            env[var] = str(factor if slowed else 1.0)
        path = out / "runs" / f"run-{i:02d}.json"
        cmd = [sys.executable, "-m", "suite.cli", "bench", "--quick", *[a for b in BACKENDS for a in ("--backend", b)],
               *[a for api in APIS for a in ("--api", api)], "--json", str(path)]
        if args.processes:
            cmd += ["--processes", str(args.processes)]
        start = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        took = time.time() - start
        load = os.getloadavg()[0]
        log.append({"run": i, "slowed": slowed, "seconds": round(took, 1), "returncode": proc.returncode,
                    "loadavg_1min_after": round(load, 2)})
        print(f"run {i}: slowed={slowed} {took:.0f} s rc={proc.returncode} load={load:.1f}", flush=True)
        if proc.returncode not in (0, 1):
            print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
            return 2
        (out / "runs.json").write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
    return 0


def first_processes(payload: dict[str, Any], k: int) -> dict[str, Any]:
    """The payload as if only the first k processes had run (medians recomputed from them)."""
    return processes_window(payload, 0, k)


def _pairs(runs: list[dict[str, Any]], how: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs of runs, (unslowed, slowed) where their parities differ.

    consecutive: (0,1), (2,1), (2,3), ...; otherwise every (even, odd) pair (6 x 5 = 30 with 11 runs),
    used both as A/A pairs for the unchanged backends and as detection trials for the plugins."""
    if how == "consecutive":
        return [(runs[i], runs[i + 1]) if i % 2 == 0 else (runs[i + 1], runs[i]) for i in range(len(runs) - 1)]
    if how == "aa":
        return [(runs[i], runs[j]) for i in range(len(runs)) for j in range(i + 1, len(runs))]
    return [(runs[i], runs[j]) for i in range(0, len(runs), 2) for j in range(1, len(runs), 2)]


_CUT: dict[tuple[int, int], dict[str, Any]] = {}


def _cut(payload: dict[str, Any], k: int) -> dict[str, Any]:
    key = (id(payload), k)
    if key not in _CUT:
        _CUT[key] = first_processes(payload, k)
    return _CUT[key]


def evaluate(aa_pairs, trial_pairs, *, k: int, normalize: str, clock: str, threshold: float,
             alpha: float) -> dict[str, Any]:
    aa_rates, hits = [], {name: {n: [] for n in (2**16, BIG)} for name in SLOW}
    aa = []
    for old, new in aa_pairs:
        results = compare_runs(_cut(old, k), _cut(new, k), threshold=threshold, alpha=alpha,
                               normalize=normalize, clock=clock)
        aa = [r for r in results if str(r.key[0]).split(":")[0] not in SLOW and r.ratio is not None]
        aa_rates.append(sum(r.verdict in ("regression", "improvement") for r in aa) / max(1, len(aa)))
    for old, new in trial_pairs:
        results = compare_runs(_cut(old, k), _cut(new, k), threshold=threshold, alpha=alpha,
                               normalize=normalize, clock=clock, apis=("calib25:fast", "calib10:fast"))
        for r in results:
            backend = str(r.key[0]).split(":")[0]
            if backend in SLOW and r.key[4] in hits[backend]:
                hits[backend][r.key[4]].append(r.verdict == "regression")
    return {"k": k, "normalize": normalize, "clock": clock, "threshold": threshold, "alpha": alpha,
            "aa_rows_per_pair": len(aa), "aa_rate_mean": statistics.mean(aa_rates),
            "aa_rate_sd": statistics.stdev(aa_rates) if len(aa_rates) > 1 else 0.0,
            "aa_rate_max": max(aa_rates),
            "detect": {name: {str(n): (sum(v) / len(v) if v else None) for n, v in by.items()}
                       for name, by in hits.items()},
            "trials": {name: {str(n): len(v) for n, v in by.items()} for name, by in hits.items()}}


def measured_factor(pairs) -> dict[str, dict[str, list[float]]]:
    """What the plugins' slowdown looked like at 2^22: per trial, the ratio new/old of the medians over
    processes, for each clock and normalization (their work factor is known: 1.25 and 1.10)."""
    out: dict[str, dict[str, list[float]]] = {name: {} for name in SLOW}
    for old, new in pairs:
        for clock in CLOCKS:
            for norm in NORMALIZE:
                for r in compare_runs(old, new, normalize=norm, threshold=0.0, alpha=1.0, clock=clock,
                                      apis=("calib25:fast", "calib10:fast")):
                    backend = str(r.key[0]).split(":")[0]
                    if r.key[4] == BIG and r.ratio:
                        out[backend].setdefault(f"{clock}/{norm}", []).append(round(r.ratio, 3))
    return out


def analyze(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    paths = sorted((folder / "runs").glob("run-*.json"))
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    aa_pairs, trial_pairs = _pairs(runs, args.pairs), _pairs(runs, "consecutive" if args.pairs == "consecutive" else "trials")
    grid = [evaluate(aa_pairs, trial_pairs, k=k, normalize=norm, clock=clock, threshold=thr, alpha=alpha)
            for k in (1, 2, 3) for clock in CLOCKS for norm in NORMALIZE for thr in THRESHOLDS for alpha in ALPHAS
            if not (k == 1 and alpha == 0.01)]
    seconds = {}
    for payload in runs:
        for entry in payload["backends"]:
            seconds.setdefault(entry["backend"], []).append(entry["seconds"])
    summary = {"machine_id": runs[0]["machine_id"], "machine_facts": runs[0]["machine_facts"], "runs": len(runs),
               "pairing": args.pairs, "aa_pairs": len(aa_pairs), "trials": len(trial_pairs),
               "files": [p.name for p in paths],
               "backend_seconds_median": {b: statistics.median(v) for b, v in seconds.items()},
               "measured_factor_2^22": measured_factor(trial_pairs), "grid": grid}
    (folder / "calibration.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    lines = [f"# compare calibration on {summary['machine_id']}", "",
             f"{len(runs)} runs (files in runs/); pairing {args.pairs!r}: {len(aa_pairs)} A/A pairs, "
             f"{len(trial_pairs)} slowdown trials; generated by `python results/calibration/calibrate.py analyze "
             f"--pairs {args.pairs}`.", "",
             "| k | clock | normalize | threshold | alpha | A/A rate mean | sd | max | calib25 2^22 | calib10 2^22 | "
             "calib25 2^16 | calib10 2^16 |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in grid:
        d = g["detect"]
        cell = lambda v: "—" if v is None else f"{v:.0%}"  # noqa: E731
        lines.append(f"| {g['k']} | {g['clock']} | {g['normalize']} | {g['threshold']:g} | {g['alpha']:g} | {g['aa_rate_mean']:.3f} | "
                     f"{g['aa_rate_sd']:.3f} | {g['aa_rate_max']:.3f} | {cell(d['calib25'][str(BIG)])} | "
                     f"{cell(d['calib10'][str(BIG)])} | {cell(d['calib25'][str(2**16)])} | "
                     f"{cell(d['calib10'][str(2**16)])} |")
    lines += ["", f"measured new/old at 2^22 per pair: {summary['measured_factor_2^22']}", "",
              f"median seconds per backend worker set: {summary['backend_seconds_median']}"]
    (folder / "calibration.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--runs", type=int, default=11)
    r.add_argument("--out", required=True)
    r.add_argument("--processes", type=int, default=0)
    a = sub.add_parser("analyze")
    a.add_argument("folder")
    a.add_argument("--pairs", choices=("all", "consecutive"), default="all",
                   help="all: every (unslowed, slowed) pair, as A/A pair and as trial (pairs share runs, so they "
                        "are not independent); consecutive: only neighbouring runs")
    d = sub.add_parser("duet")
    d.add_argument("--runs", type=int, default=12)
    d.add_argument("--pairs", type=int, default=3)
    d.add_argument("--layout", nargs="+", default=list(LAYOUT_MODES), choices=list(LAYOUT_MODES))
    d.add_argument("--out", required=True)
    da = sub.add_parser("duet-analyze")
    da.add_argument("folder")
    da.add_argument("--modes", default=str(MODES_FILE), help="where compare reads the modes' rates (default: %(default)s)")
    da.add_argument("--pairs-used", type=int, default=None, metavar="K",
                    help="judge each duet of P pairs as P // K duets of K pairs (the budget; default: all pairs)")
    da.add_argument("--also", action="append", default=[], metavar="FOLDER",
                    help="another duet calibration (e.g. a loaded machine's) whose rates at the chosen settings "
                         "are stored and printed next to these")
    args = parser.parse_args()
    return {"run": run, "analyze": analyze, "duet": duet, "duet-analyze": duet_analyze}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
