"""Calibration of `compare --duet` and of file-vs-file compare on the same processes (issue 26).

``duet`` takes the runs (one duet per layout per run); ``duet_analyze`` judges them over a grid of
settings, chooses compare's defaults of both modes and writes their rates to ``modes.json``, which the
verdict lines print. calibrate.py is the command line (its docstring says how to run it).
"""
from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from suite.bench.schema import upgrade
from suite.report.compare import CLOCKS, NORMALIZE, compare_runs
from suite.report.paired import QUIET_LOAD

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "results.calibration.slow_plugin"
BIG = str(2**22)
SMALL = str(2**16)
DUET_PLUGINS = {"calib25": ("Slow25", "DROPBENCH_CALIB25", 1.25), "calib10": ("Slow10", "DROPBENCH_CALIB10", 1.10),
                "calib05": ("Slow05", "DROPBENCH_CALIB05", 1.05), "calibaa": ("SlowAA", "DROPBENCH_CALIBAA", 1.0)}
AA_NAMES = ("calibaa", "calibab")  # the A/A rows: calibaa on both sides, or calibaa (OLD) against calibab (NEW)
MODES_FILE = ROOT / "results" / "calibration" / "modes.json"
LAYOUT_MODES = {"alternate": "duet", "side-by-side": "duet-side-by-side", "same-process": "duet-same-process"}


# ------------------------------------------------------------------------------------------ taking runs
def duet_sides(layout: str) -> tuple[Any, Any]:
    """OLD and NEW of one calibration duet. Each side's worker times four plugins at once (one duet, not four,
    per run and layout): alternate / side-by-side: the same four on both sides, NEW with the work factors
    1.25 / 1.10 / 1.05 / 1.0 (calibaa, the A/A rows); same-process: OLD calibaa, NEW calib25, calib10,
    calib05 and calibab (calibaa's twin at 1.0x), all in one process."""
    from suite.bench.duet import Side  # noqa: PLC0415

    refs = [f"{PLUGIN}:{attr}" for attr, _, _ in DUET_PLUGINS.values()]
    slowed = {var: str(factor) for _, var, factor in DUET_PLUGINS.values()}
    if layout == "same-process":
        return Side(f"{PLUGIN}:SlowAA"), Side(refs[0], tuple(refs[1:3]) + (f"{PLUGIN}:SlowAB",), slowed)
    return Side(refs[0], tuple(refs[1:]), {var: "1.0" for var in slowed}), Side(refs[0], tuple(refs[1:]), slowed)


def duet(args: argparse.Namespace) -> int:
    """``--runs`` runs; in each, one duet per layout (the layouts take turns, so load changes hit all alike),
    written as runs/RR-<layout>.json. Resumable: a run file already there is kept."""
    from suite.bench.duet import run_duet  # noqa: PLC0415
    from suite.bench.runner import BenchOptions  # noqa: PLC0415

    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    log_path = out / "runs.json"
    log = json.loads(log_path.read_text(encoding="utf-8")) if log_path.exists() else []
    options = BenchOptions(quick=True)
    for i in range(args.runs):
        for layout in args.layout:
            path = out / "runs" / f"{i:02d}-{layout}.json"
            if path.exists():
                continue
            start = time.time()
            old, new = duet_sides(layout)
            run_duet(old, new, options, args.pairs, json_path=str(path), layout=layout)
            took, load = time.time() - start, os.getloadavg()[0]
            log.append({"run": i, "layout": layout, "seconds": round(took, 1), "loadavg_1min_after": round(load, 2)})
            log_path.write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
            print(f"run {i} {layout}: {took:.0f} s load={load:.1f}", flush=True)
    return 0


# ------------------------------------------------------------------------------------------ the runs, cut
def processes_window(payload: dict[str, Any], start: int, k: int) -> dict[str, Any]:
    """A bench payload as if only processes start .. start+k-1 had run (medians recomputed from them)."""
    out = copy.deepcopy(upgrade(payload))
    for bench in out["benchmarks"]:
        info = bench["extra_info"]
        info["processes"] = info["processes"][start:start + k]
        bench["stats"]["median"] = statistics.median(p["median"] for p in info["processes"])
        if k == 1 and info["processes"][0].get("data"):
            bench["stats"]["data"] = info["processes"][0]["data"]  # one process: its rounds, as a schema-1 file
    return out


def duet_windows(payload: dict[str, Any], k: int | None) -> list[dict[str, Any]]:
    """A duet of P pairs as P // k duets of k consecutive pairs (each one a duet of that budget), or itself."""
    pairs = payload["pairs"]
    if not k or k >= pairs:
        return [payload]
    return [{**payload, "pairs": k, "old": processes_window(payload["old"], s, k),
             "new": processes_window(payload["new"], s, k)} for s in range(0, pairs - k + 1, k)]


Duets = dict[tuple[int, int], dict[str, Any]]  # (run, window) -> duet payload


def read_runs(folder: Path) -> list[tuple[int, str, dict[str, Any]]]:
    """(run, layout, duet payload) of every runs/RR-<layout>.json[.gz] in the folder (committed ones are gzipped)."""
    out = []
    for path in sorted((folder / "runs").glob("*.json*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            payload = json.load(f)
        run, _, layout = path.name.split(".", 1)[0].partition("-")
        out.append((int(run), layout, payload))
    return out


def load_duets(folder: Path, pairs_used: int | None) -> tuple[dict[str, Duets], list[dict[str, Any]]]:
    """The folder's duets per layout (cut to ``pairs_used`` pairs each) and its runs.json log."""
    by_layout: dict[str, Duets] = {}
    for run, layout, payload in read_runs(folder):
        for w, window in enumerate(duet_windows(payload, pairs_used)):
            by_layout.setdefault(layout, {})[(run, w)] = window
    log_path = folder / "runs.json"
    log = json.loads(log_path.read_text(encoding="utf-8")) if log_path.exists() else []
    return by_layout, log


def load_note(log: list[dict[str, Any]]) -> str:
    loads = [e["loadavg_1min_after"] for e in log]
    if not loads:
        return "shared 2-core VM"
    word = "quiet" if max(loads) <= QUIET_LOAD else "loaded"
    return f"shared 2-core VM, {word}: load average {min(loads):.1f}-{max(loads):.1f} after the duets"


# ------------------------------------------------------------------------------------------ judging
def _split(payload: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(NEW backend name, OLD, NEW) comparisons of one duet: one for all when both sides hold the same
    backends, else OLD against each NEW backend alone (same-process)."""
    from suite.report.paired import _backends  # noqa: PLC0415

    old, new = payload["old"], payload["new"]
    if _backends(old) == _backends(new):
        return [("*", old, new)]
    out = []
    for name in sorted(_backends(new)):
        rows = [b for b in new["benchmarks"] if str(b["extra_info"]["api"]).split(":", 1)[0] in (name, "baseline")]
        out.append((name, old, {**new, "benchmarks": rows}))
    return out


class Tally:
    """A/A flags and detections of one setting over many comparisons."""

    def __init__(self) -> None:
        self.aa: list[bool] = []
        self.aa_dropout: list[bool] = []
        self.hits: dict[str, dict[str, list[bool]]] = {}

    def add(self, r: Any, backend: str) -> None:
        if r.p_value is None:
            return
        is_base = str(r.key[0]).startswith("baseline:")
        if is_base or backend in AA_NAMES:
            self.aa.append(r.verdict in ("regression", "improvement"))
            if not is_base:
                self.aa_dropout.append(self.aa[-1])
        else:
            self.hits.setdefault(backend, {}).setdefault(str(r.key[4]), []).append(r.verdict == "regression")

    def rates(self) -> dict[str, Any]:
        return {"aa_rate": sum(self.aa) / max(1, len(self.aa)), "aa_rows": len(self.aa),
                "aa_rate_dropout_rows": sum(self.aa_dropout) / max(1, len(self.aa_dropout)),
                "aa_dropout_rows": len(self.aa_dropout),
                "detect": {n: {k: sum(v) / len(v) for k, v in by.items()} for n, by in sorted(self.hits.items())},
                "trials": {n: {k: len(v) for k, v in by.items()} for n, by in sorted(self.hits.items())}}


def duet_rates(duets: Duets, settings: Any) -> dict[str, Any]:
    """A/A rate (the calibaa rows and every baseline row) and detection per plugin and size of one setting."""
    from suite.report.paired import compare_duet  # noqa: PLC0415

    tally = Tally()
    for payload in duets.values():
        for name, old, new in _split(payload):
            for r in compare_duet(old, new, settings):
                tally.add(r, str(r.key[0]).split(":", 1)[0] if name == "*" else name)
    return tally.rates()


def files_rates(duets: Duets, **settings: Any) -> dict[str, Any]:
    """File-vs-file compare on the same processes: OLD side (every plugin at 1.0x) of one run against NEW
    side of another run (two files taken minutes apart); calibaa is the A/A case, as are the baselines."""
    tally = Tally()
    for (i, _), a in duets.items():
        for (j, _), b in duets.items():
            if i != j:
                for r in compare_runs(a["old"], b["new"], **settings):
                    tally.add(r, str(r.key[0]).split(":", 1)[0])
    return tally.rates()


def _duet_grid(pairs: int) -> Iterator[Any]:
    from suite.report.paired import DuetSettings  # noqa: PLC0415

    for test in ("t", "wilcoxon", "sign"):
        if test != "t" and pairs < 6:
            continue  # cannot reject at alpha 0.05 below 6 pairs
        for clock in CLOCKS:
            for norm in NORMALIZE:
                for thr in (0.0, 0.02, 0.03, 0.05, 0.10):
                    for alpha in (0.05, 0.01):
                        yield DuetSettings(thr, alpha, norm, clock, test)


def _files_grid() -> Iterator[dict[str, Any]]:
    for clock in CLOCKS:
        for norm in ("none", "copy"):
            for thr in (0.03, 0.05, 0.10):
                for alpha in (0.05, 0.01):
                    yield {"threshold": thr, "alpha": alpha, "normalize": norm, "clock": clock}


DUET_TARGETS = {("calib25", SMALL): 0.95, ("calib25", BIG): 0.95, ("calib10", BIG): 0.90}
FILES_TARGETS = {("calib25", SMALL): 0.95, ("calib25", BIG): 0.95, ("calib10", BIG): 0.80}
"""Issue 26's detection targets per mode: (plugin, size) -> the fraction of trials to catch."""
AA_LIMIT = 0.05


def target_score(v: dict[str, Any], targets: dict[tuple[str, str], float]) -> tuple:
    """How close one setting's rates come to the targets: each detection as a fraction of its target (capped at
    1, met is met), worst first, so comparing these tuples maximizes the worst-met target, then the next;
    then fewer A/A flags."""
    met = sorted(min(1.0, v["detect"][name][size] / goal) for (name, size), goal in targets.items())
    return (*met, -v["aa_rate"])


def choose(grid: list[dict[str, Any]], rates_of, targets: dict[tuple[str, str], float],
           elsewhere_of=None) -> dict[str, Any]:  # noqa: ANN001
    """Among the settings flagging at most 1 A/A row in 20 here, the one closest to the targets (target_score);
    ties (common: several thresholds catch the same trials) go to the one closest to them in the other
    calibrations (``elsewhere_of``: a loaded machine's rates of the same setting)."""
    ok = [g for g in grid if rates_of(g)["aa_rate"] <= AA_LIMIT]

    def key(g: dict[str, Any]) -> tuple:
        others = [target_score(v, targets) for v in (elsewhere_of(g) if elsewhere_of else [])]
        return target_score(rates_of(g), targets), *others

    return max(ok or grid, key=key)


# ------------------------------------------------------------------------------------------ modes.json
def _by_percent(detect: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {str(round((DUET_PLUGINS[n][2] - 1) * 100)): v for n, v in detect.items()}


def _figures(v: dict[str, Any]) -> dict[str, Any]:
    """A mode's stated rates (what rates_line prints)."""
    return {"aa_rate": v["aa_rate"], "aa_rows": v["aa_rows"], "detect": _by_percent(v["detect"]),
            "trials_per_cell": min((min(t.values()) for t in v["trials"].values()), default=0)}


def _file_pairs(keys: list[tuple[int, int]]) -> int:
    """How many (OLD file, NEW file) pairs files_rates judges: those from different runs."""
    return sum(i != j for i, _ in keys for j, _ in keys)


def _other(folder: Path, pairs: int, settings_of) -> dict[str, dict[str, Any]]:  # noqa: ANN001
    """Another calibration's rates (``--also``) per mode at the chosen settings, for the verdict line."""
    by_layout, log = load_duets(folder, pairs)
    out = {}
    for layout, duets in by_layout.items():
        out[LAYOUT_MODES[layout]] = {**_figures(duet_rates(duets, settings_of(None))), "pairs": pairs,
                                     "aa_runs": len(duets), "aa_unit": "duets", "note": load_note(log),
                                     "folder": folder.name}
    source = "alternate" if "alternate" in by_layout else next(iter(by_layout))
    keys = list(by_layout[source])
    out["files"] = {**_figures(files_rates(by_layout[source], **settings_of("files"))), "processes": pairs,
                    "aa_runs": _file_pairs(keys), "aa_unit": "pairs of files", "note": load_note(log),
                    "folder": folder.name}
    return out


def _settings(g: dict[str, Any]) -> Any:
    from suite.report.paired import DuetSettings  # noqa: PLC0415

    return DuetSettings(g["threshold"], g["alpha"], g["normalize"], g["clock"], g["test"])


def _files_kw(g: dict[str, Any]) -> dict[str, Any]:
    return {k: g[k] for k in ("threshold", "alpha", "normalize", "clock")}


def duet_analyze(args: argparse.Namespace) -> int:
    """Every layout over the duet settings grid and file-vs-file over its own grid, at ``--pairs-used`` pairs
    (the budget); compare's duet defaults are one setting for every layout, chosen on the alternating
    layout; the files defaults are chosen the same way. Also states the rates at every pair of the runs
    and, with ``--also``, another calibration's rates at the chosen settings."""
    folder = Path(args.folder)
    by_layout, log = load_duets(folder, args.pairs_used)
    layouts = [lay for lay in LAYOUT_MODES if lay in by_layout]
    lead = "alternate" if "alternate" in layouts else layouts[0]
    pairs = next(iter(by_layout[lead].values()))["pairs"]
    full = load_duets(folder, None)[0]
    full_pairs = max(p["pairs"] for d in full.values() for p in d.values())
    grid = [{"pairs": pairs, **s.__dict__, "layouts": {lay: duet_rates(by_layout[lay], s) for lay in layouts}}
            for s in _duet_grid(pairs)]
    others = [load_duets(Path(f), pairs)[0] for f in args.also]
    other_lead = [o.get(lead) or next(iter(o.values())) for o in others]
    best = choose(grid, lambda g: g["layouts"][lead], DUET_TARGETS,
                  lambda g: [duet_rates(o, _settings(g)) for o in other_lead])
    duet_settings = _settings(best)
    files_grid = [{**kw, "rates": files_rates(by_layout[lead], **kw)} for kw in _files_grid()]
    files_best = choose(files_grid, lambda g: g["rates"], FILES_TARGETS,
                        lambda g: [files_rates(o, **_files_kw(g)) for o in other_lead])
    files_kw = _files_kw(files_best)
    note = load_note(log)
    machine = next(iter(by_layout[lead].values()))["old"]["machine_id"]
    made = (f"python results/calibration/calibrate.py duet-analyze {os.path.relpath(folder, ROOT)}"
            + (f" --pairs-used {args.pairs_used}" if args.pairs_used else "")
            + "".join(f" --also {os.path.relpath(a, ROOT)}" for a in args.also))
    modes: dict[str, Any] = {"machine_id": machine, "made_by": made, "modes": {},
                             "chosen_for": "every duet layout, by the alternating layout's rates; files by its own grid"}
    full = full if full_pairs > pairs else {}
    for layout in layouts:
        v = best["layouts"][layout]
        entry = {"defaults": {k: best[k] for k in ("threshold", "alpha", "normalize", "clock", "test")}, "pairs": pairs,
                 **_figures(v), "aa_rate_dropout_rows": v["aa_rate_dropout_rows"], "aa_runs": len(by_layout[layout]),
                 "aa_unit": "duets", "note": note}
        if full:
            entry["by_pairs"] = {str(full_pairs): {**_figures(duet_rates(full[layout], duet_settings)),
                                                   "aa_runs": len(full[layout])}}
        modes["modes"][LAYOUT_MODES[layout]] = entry
    keys = list(by_layout[lead])
    modes["modes"]["files"] = {
        "defaults": files_kw, "processes": pairs, **_figures(files_best["rates"]),
        "aa_runs": _file_pairs(keys),
        "aa_unit": "pairs of files", "aa_rate_one_process": _one_process_rate(),
        "note": note + f"; OLD's {pairs} processes of one duet against NEW's of another run ({lead} layout)"}
    for other in args.also:
        for mode, figures in _other(Path(other), pairs, lambda m: files_kw if m == "files" else duet_settings).items():
            if mode in modes["modes"]:
                modes["modes"][mode].setdefault("elsewhere", []).append(figures)
    Path(args.modes).write_text(json.dumps(modes, indent=2) + "\n", encoding="utf-8")
    seconds: dict[str, list[float]] = {}
    for e in log:
        seconds.setdefault(e["layout"], []).append(e["seconds"])
    (folder / "duet.json").write_text(json.dumps({"pairs_used": pairs, "grid": grid, "files_grid": files_grid,
                                                  "seconds_per_duet": seconds, "log": log}, indent=1) + "\n",
                                      encoding="utf-8")
    n_runs = len({i for i, _ in by_layout[lead]})
    lines = _markdown(machine, n_runs, layouts, pairs, full_pairs, note, made, modes, grid, files_grid, seconds)
    (folder / "duet.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[:6]))
    print(json.dumps(modes, indent=1))
    return 0


def _cells(detect: dict[str, dict[str, float]]) -> str:
    return " | ".join(f"{detect[n][s]:.0%}" for n in ("calib25", "calib10", "calib05") for s in (SMALL, BIG))


def _markdown(machine, n_runs, layouts, pairs, full_pairs, note, made, modes, grid, files_grid, seconds) -> list[str]:  # noqa: ANN001, PLR0913
    head = ("A/A rate (all rows) | 25 % 2^16 | 25 % 2^22 | 10 % 2^16 | 10 % 2^22 | 5 % 2^16 | 5 % 2^22 |")
    lines = [f"# compare --duet calibration on {machine}", "",
             f"{n_runs} runs x {len(layouts)} layouts, one duet "
             f"each of {full_pairs} pairs (four plugins a side), judged as duets of {pairs} pairs; {note}.",
             f"Made by `{made}`; chosen duet defaults (every layout): {modes['modes'][LAYOUT_MODES[layouts[0]]]['defaults']}; "
             f"files: {modes['modes']['files']['defaults']}.", "",
             "| layout | test | clock | normalize | threshold | alpha | " + head + " A/A dropout rows |", "|" + "---|" * 15]
    for g in grid:
        for layout, v in g["layouts"].items():
            lines.append(f"| {layout} | {g['test']} | {g['clock']} | {g['normalize']} | {g['threshold']:g} | {g['alpha']:g} | "
                         f"{v['aa_rate']:.1%} ({v['aa_rows']}) | {_cells(v['detect'])} | "
                         f"{v['aa_rate_dropout_rows']:.1%} ({v['aa_dropout_rows']}) |")
    lines += ["", f"## file vs file ({pairs} processes a side: OLD of one run against NEW of another)", "",
              "| clock | normalize | threshold | alpha | " + head, "|" + "---|" * 11]
    for g in files_grid:
        v = g["rates"]
        lines.append(f"| {g['clock']} | {g['normalize']} | {g['threshold']:g} | {g['alpha']:g} | "
                     f"{v['aa_rate']:.1%} ({v['aa_rows']}) | {_cells(v['detect'])} |")
    lines += ["", f"seconds per duet (both sides, {full_pairs} pairs): {seconds}"]
    return lines


ONE_PROCESS_SOURCE = ROOT / "results" / "calibration" / "intel-r-xeon-r-processor-2c-134af65a" / "calibration.json"


def _one_process_rate() -> float | None:
    """The A/A rate of the one-process fallback (Mann-Whitney on rounds, wall, none, 0.05, 0.05) from
    the issue-15 calibration (the duet calibration has 3+ processes a side, so it cannot measure it)."""
    try:
        grid = json.loads(ONE_PROCESS_SOURCE.read_text(encoding="utf-8"))["grid"]
    except (OSError, ValueError, KeyError):
        return None
    return next((g["aa_rate_mean"] for g in grid if (g["k"], g["clock"], g["normalize"], g["threshold"], g["alpha"])
                 == (1, "wall", "none", 0.05, 0.05)), None)
