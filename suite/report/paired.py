"""Paired A/B (duet) verdicts: OLD and NEW timed in the same run, process pair by process pair.

Why pairs: on a shared machine whole processes shift together (the neighbours' load, where the
buffers landed, the clock), and two result files taken minutes apart carry that shift into every
row. ``dropbench compare --duet`` (suite/bench/duet.py) runs OLD's and NEW's worker processes
alternately (pair i: OLD then NEW, pair i+1: NEW then OLD), so each pair shares the machine's
state of those seconds. The figure compared is the per-pair ratio NEW_i / OLD_i of the processes'
figures (CPU time, optionally as ratios to the same process's interleaved copy baseline,
suite/bench/aggregate.py); drift that hits both members of a pair cancels in it.

Tests on the logs of those ratios d_i = log(NEW_i / OLD_i), two-sided, H0: no change:

* ``t``: one-sample Student t on the d_i (df = n - 1; works from n = 2 pairs, and is the only one of
  the three that can reject at alpha 0.05 with 3 pairs);
* ``wilcoxon``: the exact signed-rank test (no normality; it cannot reject at 0.05 below 6 pairs);
* ``sign``: the exact binomial sign test (the least assumptions; below 6 pairs it cannot reject).

The ratio reported is the geometric mean of the pair ratios, exp(mean d). A row counts as changed
only when the test rejects at ``alpha`` AND the ratio is beyond ``1 + threshold`` (or below its
inverse), as in file-vs-file compare. The defaults and their measured false-alarm and detection
rates come from results/calibration/ (``calibrate.py duet``), read from the file the calibration
wrote, not typed in here.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from suite.report.compare import Comparison, student_t_sf

PAIRED_TESTS = ("t", "wilcoxon", "sign")
CALIBRATION_FILE = Path(__file__).resolve().parents[2] / "results" / "calibration" / "modes.json"
"""What each compare mode measured on the development machine (written by ``calibrate.py duet``/
``analyze``): the chosen defaults and their A/A flag rate and detection rates per slowdown and size."""


class PairError(ValueError):
    """The two sides cannot be paired (too few pairs, a non-positive figure)."""


def log_ratios(old: Sequence[float], new: Sequence[float]) -> np.ndarray:
    """d_i = log(new_i / old_i) for the pairs present on both sides (same index = same pair)."""
    n = min(len(old), len(new))
    o, w = np.asarray(old[:n], dtype=np.float64), np.asarray(new[:n], dtype=np.float64)
    if n < 2:
        raise PairError(f"{n} pair(s); a paired test needs at least 2")
    if np.any(o <= 0) or np.any(w <= 0) or not (np.all(np.isfinite(o)) and np.all(np.isfinite(w))):
        raise PairError("a figure is not a positive finite number")
    return np.log(w / o)


def paired_t(d: Sequence[float]) -> float:
    """Two-sided p of the one-sample t-test of mean(d) = 0 (1.0 when every d is 0)."""
    a = np.asarray(d, dtype=np.float64)
    mean, sd = float(a.mean()), float(a.std(ddof=1))
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    t = mean / (sd / math.sqrt(a.size))
    return min(1.0, 2.0 * student_t_sf(abs(t), a.size - 1))


def sign_test(d: Sequence[float]) -> float:
    """Two-sided exact sign test (zeros dropped): P(a split at least this uneven | p = 1/2)."""
    a = np.asarray(d, dtype=np.float64)
    pos, neg = int(np.sum(a > 0)), int(np.sum(a < 0))
    n = pos + neg
    if n == 0:
        return 1.0
    k = min(pos, neg)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def wilcoxon_exact(d: Sequence[float]) -> float:
    """Two-sided exact Wilcoxon signed-rank p (zeros dropped, tied |d| get midranks; the null
    distribution of the positive rank sum by enumeration over doubled midranks, 2^n sign patterns
    counted with a subset-sum table, so ties are exact too)."""
    a = np.asarray(d, dtype=np.float64)
    a = a[a != 0]
    n = a.size
    if n == 0:
        return 1.0
    from suite.report.compare import midranks  # noqa: PLC0415

    ranks, _ = midranks(np.abs(a))
    doubled = np.rint(2 * ranks).astype(np.int64)
    total = int(doubled.sum())
    ways = np.zeros(total + 1)
    ways[0] = 1.0
    for v in doubled:
        ways[v:] = ways[v:] + ways[: total + 1 - v].copy()
    dist = ways / ways.sum()
    observed = int(doubled[a > 0].sum())
    return min(1.0, 2.0 * min(float(dist[: observed + 1].sum()), float(dist[observed:].sum())))


TESTS = {"t": paired_t, "wilcoxon": wilcoxon_exact, "sign": sign_test}


def judge_pairs(old: Sequence[float], new: Sequence[float], *, threshold: float, alpha: float,
                test: str = "t") -> tuple[float, float, str, int]:
    """Geometric-mean ratio of the pairs, the test's p, the verdict, and the number of pairs."""
    if test not in TESTS:
        raise ValueError(f"paired test must be one of {', '.join(PAIRED_TESTS)}, got {test!r}")
    d = log_ratios(old, new)
    ratio = float(math.exp(d.mean()))
    p = TESTS[test](d)
    if p < alpha and ratio > 1.0 + threshold:
        return ratio, p, "regression", d.size
    if p < alpha and ratio < 1.0 / (1.0 + threshold):
        return ratio, p, "improvement", d.size
    return ratio, p, "unchanged", d.size


def _pair_key(bench: dict[str, Any], short: bool) -> tuple[Any, ...]:
    """A row's identity across the two sides: its API id, or with ``short`` the API without its backend
    name (OLD and NEW are two backends, e.g. numpy:fast against a plugin's fast); baselines keep theirs."""
    info = bench["extra_info"]
    api = str(info.get("api", ""))
    if short and not api.startswith("baseline:"):
        api = api.split(":", 1)[-1]
    return (api, info.get("direction"), info.get("device"), info.get("dtype"), info.get("numel"),
            info.get("mode") or "eager")


def _backends(payload: dict[str, Any]) -> set[str]:
    return {str(b["extra_info"].get("api", "")).split(":", 1)[0] for b in payload.get("benchmarks") or []} - {"baseline"}


def _figures(bench: dict[str, Any], normalize: str, clock: str) -> list[float | None]:
    """Per process, in process order (the pair index), the figure or None where it is missing."""
    prefix = "cpu_" if clock == "cpu" else ""
    field = f"{prefix}median" if normalize == "none" else f"{prefix}ratio_{normalize}"
    return [p.get(field) for p in (bench.get("extra_info") or {}).get("processes") or []]


def _seconds(bench: dict[str, Any], clock: str, pairs: int | None) -> float | None:
    """Median over the side's processes of their seconds per call (shown next to the ratio)."""
    values = [v for v in _figures(bench, "none", clock)[:pairs or None] if v]
    return float(np.median(values)) if values else None


@dataclass(frozen=True)
class DuetSettings:
    threshold: float
    alpha: float
    normalize: str
    clock: str
    test: str


DUET_DEFAULTS = DuetSettings(threshold=0.05, alpha=0.05, normalize="none", clock="cpu", test="t")
"""compare --duet's defaults: the setting calibrate.py duet-analyze chose (modes.json "duet" "defaults"; a
test checks that the two agree): on the quiet 2-core VM, duets of 3 pairs (the budget), the one closest
to issue 26's targets among those flagging at most 1 unchanged row in 20 (raw CPU seconds per call,
paired t, 5 % practical threshold); ties went to the loaded machine's calibration (CPU clock: the wall
clock there included the time waiting for a core)."""


def compare_duet(old: dict[str, Any], new: dict[str, Any], settings: DuetSettings, *, pairs: int | None = None,
                 apis: Sequence[str] = ()) -> list[Comparison]:
    """One Comparison per row present on both sides (and one per row missing on a side), sorted by
    ratio, largest first; ``pairs``: only the first that many pairs (calibration)."""
    from suite.report.compare import key_label  # noqa: PLC0415

    names = _backends(old), _backends(new)
    short = names[0] != names[1]
    if short and (len(names[0]) > 1 or len(names[1]) > 1):
        raise ValueError(f"cannot pair backends {sorted(names[0])} with {sorted(names[1])}: give each side one "
                         "backend, or the same backends on both")

    def index(payload: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
        return {_pair_key(b, short): b for b in payload.get("benchmarks") or []
                if not apis or b["extra_info"].get("api") in apis or str(b["extra_info"].get("api")).startswith("baseline:")}

    oi, ni = index(old), index(new)
    out = []
    for key in list(oi) + [k for k in ni if k not in oi]:
        o, n = oi.get(key), ni.get(key)
        ref = n or o
        info = ref["extra_info"]
        owner = info.get("worker") if str(key[0]).startswith("baseline:") else info.get("backend")
        label = key_label((info.get("api"), *key[1:5], key[5], owner or info.get("worker")))
        if o is None or n is None:
            out.append(Comparison(key, label, None, None, None, None, "—",
                                  "missing-in-old" if o is None else "missing-in-new"))
            continue
        if str(key[0]).startswith("baseline:") and o["extra_info"].get("processes") == n["extra_info"].get("processes"):
            continue  # one process timed both sides (same-process layout): the same rounds, nothing to compare
        how = "none" if str(key[0]).startswith("baseline:") else settings.normalize
        fo, fn = _figures(o, how, settings.clock), _figures(n, how, settings.clock)
        if pairs:
            fo, fn = fo[:pairs], fn[:pairs]
        both = [(a, b) for a, b in zip(fo, fn) if a and b]
        om, nm = (_seconds(b, settings.clock, pairs) for b in (o, n))
        try:
            ratio, p, verdict, k = judge_pairs([a for a, _ in both], [b for _, b in both], threshold=settings.threshold,
                                               alpha=settings.alpha, test=settings.test)
        except PairError as exc:
            out.append(Comparison(key, label, om, nm, None, None, "—", "no-data", f"not paired: {exc}"))
            continue
        d = log_ratios([a for a, _ in both], [b for _, b in both])
        out.append(Comparison(key, label, om, nm, ratio, p, f"paired-{settings.test}", verdict, processes=(k, k),
                              spread=float(np.exp(d.max()) - np.exp(d.min()))))
    out.sort(key=lambda r: (r.ratio is None, -(r.ratio or 0.0), r.label))
    return out


def calibration(mode: str, path: Path = CALIBRATION_FILE) -> dict[str, Any] | None:
    """The stored calibration of ``mode`` ("duet" | "files"), or None when none was written."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    entry = (data.get("modes") or {}).get(mode)
    return dict(entry, machine=data.get("machine_id"), source=str(path.name)) if entry else None


QUIET_LOAD = 2.5
"""A 1-minute load average above this during a duet means other work shared the 2-core machine (a duet
itself keeps one core busy, side by side two): compare then quotes the loaded machine's calibration
(results/calibration/duet_calibration.py uses the same bound to call a calibration quiet or loaded)."""


def _rates(figures: dict[str, Any]) -> str:
    det = figures["detect"]
    caught = "; ".join(f"a {int(s)} % slowdown caught in " + ", ".join(
        f"{det[s][n]:.0%} at {label}" for n, label in (("65536", "2^16"), ("4194304", "2^22")) if det[s].get(n) is not None)
        for s in sorted(det, key=lambda s: -int(s)))
    return (f"unchanged code flagged in {figures['aa_rate']:.1%} of rows ({figures['aa_rows']} A/A rows over "
            f"{figures['aa_runs']} {figures.get('aa_unit', 'runs')}); {caught} ({figures['trials_per_cell']} trials per cell)")


def _size_phrase(figures: dict[str, Any], pairs: int | None = None) -> str:
    """'3 pairs' for a duet's figures, '3 processes a side' for files' (``pairs``: the duet's own count)."""
    size = pairs or figures.get("pairs") or figures.get("processes")
    return f"{size} {'pairs' if 'pairs' in figures else 'processes a side'}"


def rates_line(entry: dict[str, Any] | None, settings: dict[str, Any], *, pairs: int | None = None,
               load: float | None = None) -> str:
    """The verdict line's calibrated rates of one mode: the calibration's own (and, for a duet of ``pairs``
    pairs, the figures measured at that many, where there are), saying whether ``settings`` are the
    calibrated defaults; the loaded machine's rates next to them, first when the duet's ``load`` (its
    highest 1-minute load average) says it ran on a loaded machine."""
    if entry is None:
        return "no calibration of this mode is stored (run results/calibration/calibrate.py duet and duet-analyze)"
    settings_match = all(settings.get(k) == v for k, v in entry["defaults"].items())
    where = "at these (default) settings" if settings_match else "at the default settings (not these)"
    size, by_pairs = entry.get("pairs") or entry.get("processes"), entry.get("by_pairs") or {}
    main = {**entry, **by_pairs.get(str(pairs), {})} if pairs else entry
    if pairs and pairs != size and str(pairs) not in by_pairs:
        calibrated = sorted({size, *map(int, by_pairs)} - {None})
        unit = f"calibrated with {' and '.join(map(str, calibrated))} pairs, not {pairs}"
    else:
        unit = _size_phrase(entry, pairs)
    quiet = f"on {entry['machine']} ({entry.get('note', 'shared 2-core VM')}; {unit}): {_rates(main)}"
    loaded = [f"on a loaded machine ({e.get('note', '')}; {_size_phrase(e)}): {_rates(e)}"
              for e in entry.get("elsewhere") or []]
    tail = f" (results/calibration/{entry['source']})"
    if load is not None and load > QUIET_LOAD:
        head = f"this duet ran on a loaded machine (1-minute load average up to {load:.1f})"
        if loaded:
            return f"{head}; {where}, " + "; ".join(loaded) + f". For comparison, {quiet}{tail}"
        return f"{head}, but no loaded calibration is stored: the rates below are a quiet machine's. {where}, {quiet}{tail}"
    return f"{where}, {quiet}" + "".join(f". O{text[1:]}" for text in loaded) + tail
