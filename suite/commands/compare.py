"""`dropbench compare OLD.json NEW.json`: flag significant regressions and improvements (exit 1 on a regression)."""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys

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
    parser.add_argument("old", metavar="OLD", help="baseline run (from `dropbench bench --json`); with --duet the OLD "
                                                   "backend (name or module:attr); alone: a duet result file (--duet --json)")
    parser.add_argument("new", nargs="?", metavar="NEW", help="run to judge against it; with --duet the NEW backend")
    from suite.report.compare import CLOCKS, DEFAULT_ALPHA, DEFAULT_CLOCK, DEFAULT_NORMALIZE, DEFAULT_THRESHOLD, NORMALIZE  # noqa: PLC0415
    from suite.report.paired import DUET_DEFAULTS, PAIRED_TESTS  # noqa: PLC0415

    d = DUET_DEFAULTS
    parser.add_argument("--threshold", type=threshold_type, default=None, metavar="FRACTION",
                        help=f"practical threshold on the ratio new/old (default {DEFAULT_THRESHOLD:g} for files, "
                             f"{d.threshold:g} with --duet; from the calibration in results/calibration/: slower than "
                             "x(1+FRACTION) is a regression, faster than x1/(1+FRACTION) an improvement)")
    parser.add_argument("--alpha", type=alpha_type, default=None, metavar="P",
                        help="significance level per benchmark: Welch's t-test over the per-process figures for files "
                             "(Mann-Whitney on rounds for single-process files), the paired --test with --duet "
                             f"(default {DEFAULT_ALPHA:g}; {d.alpha:g} with --duet)")
    parser.add_argument("--normalize", choices=NORMALIZE, default=None,
                        help="compare each process's time as a ratio to its own interleaved baseline neighbours "
                             f"(copy or rng32), or raw seconds (none); default {DEFAULT_NORMALIZE} ({d.normalize} with --duet)")
    parser.add_argument("--clock", choices=CLOCKS, default=None,
                        help="per-process figures on the wall clock, or in process CPU time (the time a process "
                             f"waited for a core on a busy machine left out; sums all its threads); default {DEFAULT_CLOCK} "
                             f"({d.clock} with --duet)")
    parser.add_argument("--api", action="append", default=[], metavar="BACKEND:API",
                        help="only these API ids (repeatable), e.g. --api numpy:fast --api baseline:copy")
    duet = parser.add_argument_group("duet (paired A/B in one run)")
    duet.add_argument("--duet", action="store_true",
                      help="OLD and NEW are backends, timed now in the same run: --pairs fresh processes each, "
                           "alternating OLD/NEW (ABBA), judged pair by pair with a paired test")
    duet.add_argument("--side-by-side", action="store_true",
                      help="run the two processes of a pair at the same time (one core each with the default 1 "
                           "thread) instead of one after the other: both see the same neighbours' load")
    duet.add_argument("--same-process", action="store_true",
                      help="time both backends in one worker process per pair, their cases interleaved round by round "
                           "(two backends of different names in one environment, e.g. numpy:fast and a plugin)")
    duet.add_argument("--pairs", type=int, default=None, metavar="K",
                      help="process pairs (default 3: the processes of two `bench --quick` files; 6 side by side, "
                           "which runs two at a time: the same wall time)")
    duet.add_argument("--test", choices=PAIRED_TESTS, default=None,
                      help=f"paired test on log(new/old) per pair: t, wilcoxon (exact signed-rank) or sign (default {d.test})")
    duet.add_argument("--old-env", action="append", default=[], metavar="KEY=VALUE",
                      help="environment variable of OLD's workers (repeatable), e.g. a plugin's knob")
    duet.add_argument("--new-env", action="append", default=[], metavar="KEY=VALUE", help="the same for NEW")
    duet.add_argument("--old-threads", type=int, default=None, metavar="N", help="OLD's thread count (default --threads)")
    duet.add_argument("--new-threads", type=int, default=None, metavar="N", help="NEW's thread count (default --threads)")
    duet.add_argument("--threads", type=int, default=None, metavar="N", help="threads of both sides (default 1)")
    duet.add_argument("--sizes", nargs="+", metavar="N", help="element counts (default the quick ones: 2^16 2^22)")
    duet.add_argument("--json", metavar="PATH", help="write the duet result (both sides, every process) here")


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _print_table(results: list, mode_note: str) -> None:
    rows = [[r.label, _time(r.old_median), _time(r.new_median), "—" if r.ratio is None else f"{r.ratio:.3f}",
             "—" if r.p_value is None else f"{r.p_value:.2g}", f"{r.processes[0]}+{r.processes[1]}",
             "—" if r.spread is None else f"{r.spread * 100:.0f}", r.method, r.verdict] for r in results]
    print(table.render(["benchmark", "old median", "new median", "ratio", "p-value", mode_note, "spread %", "test",
                        "verdict"], rows, max_width=130))
    for r in results:
        if r.detail:
            print(f"{r.label}: {r.detail}")


def _what(normalize: str, clock: str) -> str:
    what = "times" if normalize == "none" else f"times as ratios to the same process's interleaved {normalize}"
    return what + (" (process CPU time)" if clock == "cpu" else " (wall clock)")


def run(args: argparse.Namespace) -> int:
    from suite.runtime.loader import UsageError  # noqa: PLC0415

    duet_only = ("side_by_side", "same_process", "pairs", "test", "old_threads", "new_threads", "threads", "sizes", "json")
    if not args.duet:
        used = [n for n in duet_only if getattr(args, n)] + (["old_env"] if args.old_env else []) + \
            (["new_env"] if args.new_env else [])
        if used:
            raise UsageError(f"--{used[0].replace('_', '-')} needs --duet")
        if args.new is None:
            return _run_duet_file(args)
        return _run_files(args)
    if args.new is None:
        raise UsageError("--duet needs two backends: dropbench compare --duet OLD NEW")
    return _run_duet(args)


def _run_files(args: argparse.Namespace) -> int:
    from suite.report.build import load_run  # noqa: PLC0415 - validation only; pandas is not imported
    from suite.report.compare import (  # noqa: PLC0415
        DEFAULT_ALPHA,
        DEFAULT_CLOCK,
        DEFAULT_NORMALIZE,
        DEFAULT_THRESHOLD,
        NORMAL_MIN_ROUNDS,
        compare_runs,
        counts,
        exit_code,
    )
    from suite.report.paired import calibration, rates_line  # noqa: PLC0415
    from suite.runtime.loader import UsageError  # noqa: PLC0415

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    normalize = args.normalize or DEFAULT_NORMALIZE
    clock = args.clock or DEFAULT_CLOCK
    old = load_run(args.old).payload
    new = load_run(args.new).payload
    if args.api:
        present = {b["extra_info"].get("api") for p in (old, new) for b in p["benchmarks"]}
        unknown = [a for a in args.api if a not in present]
        if unknown:
            raise UsageError(f"--api {unknown[0]!r} is in neither run (APIs there: {', '.join(sorted(present))})")
    results = compare_runs(old, new, threshold=threshold, alpha=alpha, normalize=normalize,
                           apis=tuple(args.api), clock=clock, old_name=str(args.old), new_name=str(args.new))
    if old.get("machine_id") != new.get("machine_id"):
        print(f"note: different machines ({old.get('machine_id')} vs {new.get('machine_id')}): "
              "differences include the hardware")
    _print_table(results, "procs")
    tally = counts(results)
    by_process = sum(1 for r in results if r.method == "welch-processes")
    by_rounds = sum(1 for r in results if r.p_value is not None and r.method != "welch-processes")
    print(f"\ncompare: {', '.join(f'{n} {v}' for v, n in tally.items() if n)}")
    print(f"verdict: 'regression' means the median over processes of new/old {_what(normalize, clock)} is above "
          f"x{1 + threshold:g} AND Welch's t-test over the per-process figures (logs) gives p < {alpha:g}; "
          f"'improvement' the same below x1/{1 + threshold:g}.")
    entry = calibration("files")
    print("file-vs-file mode, " + rates_line(entry, {"threshold": threshold, "alpha": alpha, "normalize": normalize,
                                                     "clock": clock}))
    if by_rounds:
        one = f"in calibration it flagged {entry['aa_rate_one_process']:.0%} of unchanged rows. " \
            if entry and entry.get("aa_rate_one_process") is not None else ""
        print(f"{by_rounds} row(s) had one process on a side (an old file, `dropbench run`'s default, or --processes 1): "
              f"those were tested with the Mann-Whitney U test on per-round times (normal approximation from "
              f"{NORMAL_MIN_ROUNDS} rounds), which treats rounds as independent, so drift between the two runs can look "
              f"significant: {one}Not a verdict to trust; for one, time "
              "both sides with 3 or more processes (`dropbench bench --quick`, or `dropbench run --processes 3`), "
              "or pair them in one run (`dropbench compare --duet`)")
    if by_process == 0 and not by_rounds:
        print("no row could be tested (see the verdicts)")
    return exit_code(results)


def _duet_settings(args: argparse.Namespace):  # noqa: ANN202 - DuetSettings, imported lazily
    from suite.report.paired import DUET_DEFAULTS, DuetSettings  # noqa: PLC0415

    d = DUET_DEFAULTS
    return DuetSettings(threshold=d.threshold if args.threshold is None else args.threshold,
                        alpha=d.alpha if args.alpha is None else args.alpha, normalize=args.normalize or d.normalize,
                        clock=args.clock or d.clock, test=args.test or d.test)


def _run_duet(args: argparse.Namespace) -> int:
    from suite.bench.duet import DuetFailed, Side, default_pairs, parse_env, run_duet  # noqa: PLC0415
    from suite.bench.runner import BenchOptions  # noqa: PLC0415
    from suite.commands.bench import _sizes  # noqa: PLC0415
    from suite.runtime.loader import UsageError  # noqa: PLC0415

    for name in ("pairs", "old_threads", "new_threads", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    layout = _layout(args)
    pairs = default_pairs(layout) if args.pairs is None else args.pairs
    try:
        sizes = tuple(n for text in (args.sizes or []) for n in _sizes(text))
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"--sizes: {exc}") from None
    settings = _duet_settings(args)
    old = Side(args.old, env=parse_env(args.old_env), threads=args.old_threads)
    new = Side(args.new, env=parse_env(args.new_env), threads=args.new_threads)
    options = BenchOptions(quick=True, sizes=sizes, apis=tuple(args.api), threads=args.threads or 1)
    try:
        payload = run_duet(old, new, options, pairs, progress=_progress, json_path=args.json, layout=layout)
    except DuetFailed as exc:
        print(f"duet: not judged: {exc}")
        return 1
    return _judge_duet(payload, settings, args)


def _layout(args: argparse.Namespace) -> str:
    from suite.runtime.loader import UsageError  # noqa: PLC0415

    if args.side_by_side and args.same_process:
        raise UsageError("--side-by-side and --same-process exclude each other")
    return "side-by-side" if args.side_by_side else "same-process" if args.same_process else "alternate"


def _progress(message: str) -> None:
    if " running " not in message:  # the per-test lines of each worker: too many for a duet
        print(message, file=sys.stderr, flush=True)


def _run_duet_file(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from suite.bench.duet import read_duet  # noqa: PLC0415
    from suite.runtime.jsonio import ResultFileError  # noqa: PLC0415

    try:
        payload = read_duet(json.loads(open(args.old, encoding="utf-8").read()), args.old)
    except (OSError, ValueError) as exc:
        raise ResultFileError(f"{args.old}: not a duet result file ({exc})" if str(args.old) not in str(exc)
                              else str(exc)) from None
    return _judge_duet(payload, _duet_settings(args), args)


def _judge_duet(payload: dict, settings, args: argparse.Namespace) -> int:  # noqa: ANN001
    from suite.report.compare import counts, exit_code  # noqa: PLC0415
    from suite.report.paired import calibration, compare_duet, rates_line  # noqa: PLC0415

    results = compare_duet(payload["old"], payload["new"], settings, apis=tuple(args.api))
    sides = payload["sides"]
    layout = payload.get("layout", "alternate")
    from suite.bench.duet import Side  # noqa: PLC0415

    said = {n: Side(s["ref"], tuple(s.get("also") or ()), s.get("env") or {}, s.get("threads")).describe()
            for n, s in sides.items()}
    print(f"duet: OLD {said['old']} vs NEW {said['new']}, {payload['pairs']} process pairs in one run, "
          f"{layout.replace('-', ' ') if layout != 'alternate' else 'alternating'}")
    _print_table(results, "pairs")
    tally = counts(results)
    print(f"\ncompare --duet: {', '.join(f'{n} {v}' for v, n in tally.items() if n)}")
    print(f"verdict: 'regression' means the geometric mean over pairs of new/old {_what(settings.normalize, settings.clock)} "
          f"is above x{1 + settings.threshold:g} AND the paired {settings.test} test on log(new/old) per pair gives "
          f"p < {settings.alpha:g}; 'improvement' the same below x1/{1 + settings.threshold:g}.")
    mode = "duet" if layout == "alternate" else f"duet-{layout}"
    loads = payload.get("loadavg_1min") or []
    print(f"{mode.replace('-', ' ')} mode, " + rates_line(calibration(mode), dataclasses.asdict(settings),
                                                          pairs=payload["pairs"], load=max(loads, default=None)))
    if not any(r.p_value is not None for r in results):
        print("no row could be tested (see the verdicts)")
    return exit_code(results)
