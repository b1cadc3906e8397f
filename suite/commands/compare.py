"""`dropbench compare OLD.json NEW.json`: flag significant regressions and improvements (exit 1 on a regression)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from suite.report import table

NAME = "compare"
HELP = "compare two benchmark runs round by round; exit 1 on a significant regression"


def _fraction(text: str, *, low_open: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0 or (low_open and value == 0):
        raise argparse.ArgumentTypeError(f"must be a {'positive' if low_open else 'non-negative'} finite number, got {text!r}")
    return value


def threshold_type(text: str) -> float:
    return _fraction(text, low_open=False)


def alpha_type(text: str) -> float:
    value = _fraction(text, low_open=True)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1), got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", type=Path, metavar="OLD.json", help="baseline run (from `dropbench bench --json`)")
    parser.add_argument("new", type=Path, metavar="NEW.json", help="run to judge against it")
    from suite.report.compare import CLOCKS, DEFAULT_ALPHA, DEFAULT_CLOCK, DEFAULT_NORMALIZE, DEFAULT_THRESHOLD, NORMALIZE  # noqa: PLC0415

    parser.add_argument("--threshold", type=threshold_type, default=DEFAULT_THRESHOLD, metavar="FRACTION",
                        help=f"practical threshold on the ratio of medians over processes (default {DEFAULT_THRESHOLD:g}, "
                             "from A/A runs on the development machine, results/calibration/: slower than "
                             f"x{1 + DEFAULT_THRESHOLD:g} is a regression, faster than x1/{1 + DEFAULT_THRESHOLD:g} an "
                             "improvement)")
    parser.add_argument("--alpha", type=alpha_type, default=DEFAULT_ALPHA, metavar="P",
                        help="significance level per benchmark of Welch's t-test over the per-process figures "
                             f"(Mann-Whitney on rounds for single-process files) (default {DEFAULT_ALPHA:g})")
    parser.add_argument("--normalize", choices=NORMALIZE, default=DEFAULT_NORMALIZE,
                        help="compare each process's time as a ratio to its own interleaved baseline neighbours "
                             f"(copy or rng32), or raw seconds (none); default {DEFAULT_NORMALIZE}")
    parser.add_argument("--clock", choices=CLOCKS, default=DEFAULT_CLOCK,
                        help="per-process figures on the wall clock, or in process CPU time (the time a process "
                             f"waited for a core on a busy machine left out; sums all its threads); default {DEFAULT_CLOCK}")
    parser.add_argument("--api", action="append", default=[], metavar="BACKEND:API",
                        help="only these API ids (repeatable), e.g. --api numpy:fast --api baseline:copy")


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def run(args: argparse.Namespace) -> int:
    from suite.report.build import load_run  # noqa: PLC0415 - validation only; pandas is not imported
    from suite.report.compare import (  # noqa: PLC0415
        CALIBRATION,
        DEFAULT_ALPHA,
        DEFAULT_CLOCK,
        DEFAULT_NORMALIZE,
        DEFAULT_THRESHOLD,
        NORMAL_MIN_ROUNDS,
        compare_runs,
        counts,
        exit_code,
    )
    from suite.runtime.loader import UsageError  # noqa: PLC0415

    old = load_run(args.old).payload
    new = load_run(args.new).payload
    if args.api:
        present = {b["extra_info"].get("api") for p in (old, new) for b in p["benchmarks"]}
        unknown = [a for a in args.api if a not in present]
        if unknown:
            raise UsageError(f"--api {unknown[0]!r} is in neither run (APIs there: {', '.join(sorted(present))})")
    results = compare_runs(old, new, threshold=args.threshold, alpha=args.alpha, normalize=args.normalize,
                           apis=tuple(args.api), clock=args.clock, old_name=str(args.old), new_name=str(args.new))
    if old.get("machine_id") != new.get("machine_id"):
        print(f"note: different machines ({old.get('machine_id')} vs {new.get('machine_id')}): "
              "differences include the hardware")
    rows = [[r.label, _time(r.old_median), _time(r.new_median), "—" if r.ratio is None else f"{r.ratio:.3f}",
             "—" if r.p_value is None else f"{r.p_value:.2g}", f"{r.processes[0]}+{r.processes[1]}",
             "—" if r.spread is None else f"{r.spread * 100:.0f}", r.method, r.verdict] for r in results]
    print(table.render(["benchmark", "old median", "new median", "ratio", "p-value", "procs", "spread %", "test",
                        "verdict"], rows, max_width=130))
    for r in results:
        if r.detail:
            print(f"{r.label}: {r.detail}")
    tally = counts(results)
    by_process = sum(1 for r in results if r.method == "welch-processes")
    by_rounds = sum(1 for r in results if r.p_value is not None and r.method != "welch-processes")
    what = "times" if args.normalize == "none" else f"times as ratios to the same process's interleaved {args.normalize}"
    what += " (process CPU time)" if args.clock == "cpu" else " (wall clock)"
    print(f"\ncompare: {', '.join(f'{n} {v}' for v, n in tally.items() if n)}")
    print(f"verdict: 'regression' means the median over processes of new/old {what} is above x{1 + args.threshold:g} "
          f"AND Welch's t-test over the per-process figures (logs) gives p < {args.alpha:g}; 'improvement' the same "
          f"below x1/{1 + args.threshold:g}.")
    defaults = (args.threshold, args.alpha, args.normalize, args.clock) == (
        DEFAULT_THRESHOLD, DEFAULT_ALPHA, DEFAULT_NORMALIZE, DEFAULT_CLOCK)
    c = CALIBRATION
    print(f"{'at these (default) settings' if defaults else 'at the default settings (not these)'}, on "
          f"{c['machine']} (shared 2-core VM): unchanged code flagged {c['aa_rate']:.1%} of rows (sd {c['aa_sd']:.1%} "
          f"over {c['pairs']} A/A pairs), a 25 % slowdown at 2^22 caught in {c['detect_25']:.0%}, a 10 % one in "
          f"{c['detect_10']:.0%} (results/calibration/; re-measure your machine with results/calibration/calibrate.py)")
    if by_rounds:
        print(f"{by_rounds} row(s) had one process on a side (an old file, `dropbench run`'s default, or --processes 1): "
              f"those were tested with the Mann-Whitney U test on per-round times (normal approximation from "
              f"{NORMAL_MIN_ROUNDS} rounds), which treats rounds as independent, so drift between the two runs can look "
              f"significant: in calibration it flagged {c['aa_rate_one_process']:.0%} of unchanged rows. "
              "Not a verdict to trust; for one, time "
              "both sides with 3 or more processes (`dropbench bench --quick`, or `dropbench run --processes 3`)")
    if by_process == 0 and not by_rounds:
        print("no row could be tested (see the verdicts)")
    return exit_code(results)
