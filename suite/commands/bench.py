"""`dropbench bench`: time every API of every backend (one pytest-benchmark worker each) plus baselines."""
from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from suite.commands.cluster import run_per_machine
from suite.commands.options import add_backend_options, add_executor_options, positive_int, unit_interval, writable_path
from suite.report import table
from suite.runtime.loader import select

NAME = "bench"
HELP = "time forward and forward+backward of every API against copy and RNG baselines (pytest-benchmark)"


def _sizes(text: str) -> list[int]:
    from suite.bench.cases import parse_size  # noqa: PLC0415

    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            value = parse_size(part)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"size must be a positive number of elements, got {part!r}")
        out.append(value)
    if not out:
        raise argparse.ArgumentTypeError(f"no size in {text!r}")
    return out


def _dtypes(text: str) -> list[str]:
    from suite.bench.cases import ITEMSIZE  # noqa: PLC0415

    out = [p.strip() for p in text.split(",") if p.strip()]
    for dtype in out or [text]:
        if dtype not in ITEMSIZE:
            raise argparse.ArgumentTypeError(f"unknown dtype {dtype!r}; choose from {', '.join(ITEMSIZE)}")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from suite.bench.cases import DEFAULT_RATE, DEFAULT_SIZES, DEFAULT_THREADS, QUICK_SIZES, size_label  # noqa: PLC0415

    add_backend_options(parser)
    add_executor_options(parser)
    parser.set_defaults(timeout=None)  # BenchOptions: 600 s per worker with --quick, 1800 s without
    parser.add_argument("--device", default="cpu", type=_device, metavar="cpu|cuda",
                        help="where to time (cuda without a GPU: every case skipped with the reason)")
    parser.add_argument("--sizes", nargs="+", type=_sizes, metavar="N",
                        help="element counts, e.g. 2^16 65536 or 2^12,2^20 (default "
                             f"{' '.join(size_label(n) for n in DEFAULT_SIZES)}; --quick "
                             f"{' '.join(size_label(n) for n in QUICK_SIZES)})")
    parser.add_argument("--dtype", nargs="+", type=_dtypes, metavar="DTYPE", help="dtypes (default float32)")
    parser.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS, metavar="N",
                        help=f"CPU threads every framework is pinned to (default {DEFAULT_THREADS}, the same for all)")
    parser.add_argument("--rate", type=unit_interval, default=DEFAULT_RATE, metavar="P", help="dropout rate (default 0.5)")
    parser.add_argument("--quick", action="store_true", help="two sizes (2^16, 2^22), few rounds, 3 processes per backend")
    parser.add_argument("--json", type=writable_path, metavar="PATH",
                        help="merged result file (default results/<machine-id>/bench-<time>.json)")
    parser.add_argument("--resume", action="store_true",
                        help="with --json PATH: keep the backends that file already finished (ok, unavailable, "
                             "skipped) and run only the others; the options must match the file's")
    parser.add_argument("--bare-loop", action="store_true",
                        help="also time every case (and baseline) with a bare loop (15 rounds of >= 20 ms) right after "
                             "pytest-benchmark, in the same process, and print the harness overhead")
    parser.add_argument("--processes", type=positive_int, default=0, metavar="K",
                        help="fresh worker processes per backend; the reported time is the median over them "
                             "(default 3 with --quick, 5 without)")
    parser.add_argument("--no-interleave", dest="interleave", action="store_false",
                        help="skip the interleaved rounds after pytest-benchmark's (the per-process figure is then "
                             "pytest-benchmark's median and no same-round baseline ratio exists)")
    parser.add_argument("--require-device", action="store_true",
                        help="exit 1 when nothing could be timed on --device (default: skip with the reason)")


def _device(text: str) -> str:
    import re  # noqa: PLC0415

    if text in ("cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"unknown device {text!r}; choose cpu or cuda")


def options_from_args(args: argparse.Namespace) -> Any:
    """BenchOptions from parsed arguments, validated (UsageError names the bad value)."""
    from suite.bench.runner import BenchOptions  # noqa: PLC0415

    sizes = tuple(n for group in (args.sizes or []) for n in group)
    dtypes = tuple(d for group in (args.dtype or [["float32"]]) for d in group)
    options = BenchOptions(backends=tuple(select(args.backend, args.api)), apis=tuple(args.api), device=args.device, sizes=sizes,
                           dtypes=dtypes, threads=args.threads, quick=args.quick, timeout=args.timeout,
                           rate=args.rate, require_device=args.require_device, resume=args.resume,
                           bare_loop=args.bare_loop, processes=args.processes, interleave=args.interleave,
                           json_path=str(args.json) if args.json else None)
    return options.validated()


def default_json_path() -> str:
    import datetime as dt  # noqa: PLC0415

    from suite.runtime.machine import machine_id  # noqa: PLC0415

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"results/{machine_id()}/bench-{stamp}.json"


SUMMARY_HEADERS = ["api", "mode", "direction", "size", "dtype", "device", "median µs", "CPU µs", "GB/s", "Melem/s",
                   "x copy", "x rng32", "x best", "procs", "spread %", "rel IQR %", "rounds", "stable"]


def summary_rows(payload: dict[str, Any]) -> list[list[Any]]:
    """One row per timed API case: median time (over processes), GB/s, the ratios to the same worker's
    baselines (per-sweep interleaved neighbours where recorded, else ratio of medians) and stability."""
    from suite.bench.cases import size_label, throughput  # noqa: PLC0415
    from suite.bench.stability import diagnose, percent  # noqa: PLC0415

    base: dict[tuple, float] = {}
    for b in payload["benchmarks"]:
        info = b["extra_info"]
        if info["backend"] == "baseline":
            base[(info["api"], info["worker"], info["numel"], info["dtype"], info["device"])] = b["stats"]["median"]
    rows, order, timed = [], [], []
    for b in payload["benchmarks"]:
        info = b["extra_info"]
        if info["backend"] == "baseline":
            continue
        t = throughput(b["stats"], info)
        key = (info["worker"], info["numel"], info["dtype"], info["device"])
        # groups (device, dtype, size, direction) in turn, fastest first within each
        order.append((info["device"], info["dtype"], info["numel"], info["direction"], t["seconds"]))
        ratios = []
        for name in ("copy", "rng32"):
            neighbour, median = info.get(f"ratio_{name}"), base.get((f"baseline:{name}", *key))
            ratios.append(f"{neighbour:.1f}" if neighbour else (f"{t['seconds'] / median:.1f}" if median else "-"))
        diag = diagnose(b)
        cpu = [p["cpu_median"] for p in info.get("processes") or [] if p.get("cpu_median")]
        rows.append([info["api"], info["mode"], info["direction"], size_label(info["numel"]), info["dtype"],
                     info["device"], f"{t['seconds'] * 1e6:.1f}",
                     f"{statistics.median(cpu) * 1e6:.1f}" if cpu else "-", f"{t['gb_per_s']:.2f}",
                     f"{t['elements_per_s'] / 1e6:.0f}", *ratios, "", str(len(info.get("processes") or [])),
                     percent(diag.spread), percent(diag.rel_iqr), str(diag.rounds),
                     "! " + "; ".join(diag.reasons) if diag.unstable else "ok"])
        timed.append(((info["direction"], info["numel"], info["dtype"], info["device"], len(info.get("shape") or ())),
                      info["api"], t["seconds"]))
    best_at = SUMMARY_HEADERS.index("x best")
    for row, x in zip(rows, best_column(timed)):
        row[best_at] = f"{x:.2f}" if x == x else "-"
    return [row for _, row in sorted(zip(order, rows), key=lambda pair: pair[0])]


def best_column(timed: list[tuple[Any, str, float]]) -> list[float]:
    """x best: time / the fastest API without a known divergence, same direction, size, dtype, device, layout."""
    from suite.report.build import best_ratios  # noqa: PLC0415
    from suite.verify.known import load_known  # noqa: PLC0415

    known = {d.api for d in load_known()}
    return best_ratios(timed, lambda api: api not in known)


def print_diagnostics(payload: dict[str, Any]) -> None:
    """Machine noise from the baselines, and the scaling fit (a + b·n) per API and direction."""
    from suite.bench.stability import CV_LIMIT, MAX_LIMIT, MIN_LIMIT, SPREAD_LIMIT, machine_noise, percent  # noqa: PLC0415
    from suite.report.fit import FIT_HEADERS, fit_rows  # noqa: PLC0415

    noise = machine_noise(payload["benchmarks"])
    if noise["baseline_rows"]:
        print(f"machine noise (baselines, {noise['baseline_rows']} rows): {percent(noise['rel_iqr'])} % relative IQR "
              f"within a process, {percent(noise['spread'])} % between processes ((max-min)/median); "
              f"{noise['unstable_rows']} baseline row(s) unstable")
    print(f"stable: '!' marks a row like `pyperf check` would: stdev > {CV_LIMIT:.0%} of the mean, min < "
          f"{MIN_LIMIT}x or max > {MAX_LIMIT}x the median, or processes more than {SPREAD_LIMIT:.0%} apart; "
          "x copy / x rng32: median of per-round ratios to the same process's interleaved baselines; "
          "CPU µs: the same rounds in process CPU time (far below the median: the processes waited for a core)")
    fits = fit_rows(payload["benchmarks"])
    if fits:
        print()
        print("scaling fit t = a + b·n over the measured sizes (a: per-call overhead, b: per-element cost)")
        print(table.render(list(FIT_HEADERS), fits))


def run(args: argparse.Namespace) -> int:
    return run_per_machine(args, _run, paths=("json",))


def _run(args: argparse.Namespace) -> int:
    from suite.bench.runner import exit_code, run_bench  # noqa: PLC0415

    options = options_from_args(args)
    if options.json_path is None:
        from dataclasses import replace  # noqa: PLC0415

        path = default_json_path()
        writable_path(path)
        options = replace(options, json_path=path)
    live = sys.stderr.isatty()

    def progress(message: str) -> None:
        if " running " in message:
            if live:
                print(f"\r\033[K{message}"[:200], end="", file=sys.stderr, flush=True)
            return
        print(("\r\033[K" if live else "") + message, file=sys.stderr, flush=True)

    payload = run_bench(options, progress)
    rows = summary_rows(payload)
    if rows:
        print(table.render(SUMMARY_HEADERS, rows))
        print("sorted by time within each device, dtype, size and direction; x copy / x rng32: time ÷ the "
              "baseline timed in the same worker process as the row (each worker times its own)")
        print_diagnostics(payload)
        print()
    from suite.bench.cases import OVERHEAD_HEADERS, harness_overhead  # noqa: PLC0415

    overhead = harness_overhead(payload["benchmarks"])
    if overhead:
        print("harness overhead: pytest-benchmark median vs a bare loop over the same closure, same process")
        print(table.render(list(OVERHEAD_HEADERS), overhead))
        print()
    for entry in payload["backends"]:
        line = f"{entry['backend']}: {entry['status']}, {entry['benchmarks']} timed, {entry['skipped']} skipped"
        print(line + (f" — {entry['reason']}" if entry["reason"] else ""))
    errors = [c for c in payload["skipped"] if c["status"] != "skipped"]
    for case in errors:
        print(f"{case['status']}: {case.get('id')}: {case['reason']}")
    print(f"bench: {payload['run']['seconds']:.0f} s; threads pinned to {options.threads}; wrote {options.json_path}")
    return exit_code(payload)
