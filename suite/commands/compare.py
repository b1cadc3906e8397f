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
    parser.add_argument("--threshold", type=threshold_type, default=0.05, metavar="FRACTION",
                        help="practical threshold on the ratio of medians (default 0.05: slower than x1.05 "
                             "is a regression, faster than x1/1.05 an improvement)")
    parser.add_argument("--alpha", type=alpha_type, default=0.01, metavar="P",
                        help="significance level of the Mann-Whitney U test per benchmark (default 0.01)")


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def run(args: argparse.Namespace) -> int:
    from suite.report.build import load_run  # validation only; pandas is not imported
    from suite.report.compare import NORMAL_MIN_ROUNDS, compare_runs, counts, exit_code

    old = load_run(args.old).payload
    new = load_run(args.new).payload
    results = compare_runs(old, new, threshold=args.threshold, alpha=args.alpha,
                           old_name=str(args.old), new_name=str(args.new))
    if old.get("machine_id") != new.get("machine_id"):
        print(f"note: different machines ({old.get('machine_id')} vs {new.get('machine_id')}): "
              "differences include the hardware")
    rows = [[r.label, _time(r.old_median), _time(r.new_median), "—" if r.ratio is None else f"{r.ratio:.3f}",
             "—" if r.p_value is None else f"{r.p_value:.2g}", r.method, r.verdict] for r in results]
    print(table.render(["benchmark", "old median", "new median", "ratio", "p-value", "test", "verdict"], rows,
                       max_width=120))
    for r in results:
        if r.detail:
            print(f"{r.label}: {r.detail}")
    tally = counts(results)
    tested = sum(1 for r in results if r.p_value is not None)
    print(f"\ncompare: {', '.join(f'{n} {v}' for v, n in tally.items() if n)}")
    print(f"a change needs p < {args.alpha:g} (two-sided Mann-Whitney U on per-round times; normal approximation "
          f"with tie correction when both runs have >= {NORMAL_MIN_ROUNDS} rounds, exact below) AND a ratio of "
          f"medians beyond x{1 + args.threshold:g} or x1/{1 + args.threshold:g}; {tested} tests at alpha="
          f"{args.alpha:g} each: if nothing changed, about {tested * args.alpha:.2g} would pass the p-value part by "
          "chance (the threshold filters most of those). The test treats rounds as independent: load or clock "
          "changes between the two runs are not covered, so on a shared machine re-run or raise --threshold")
    return exit_code(results)
