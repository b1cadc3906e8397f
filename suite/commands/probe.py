"""`dropbench probe`: run the edge cases and conventions through every API and record what happens."""
from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from pathlib import Path

from suite.commands.options import add_backend_options, positive_float, validate_apis, writable_path
from suite.report import table
from suite.runtime.jsonio import atomic_write_json, atomic_write_text, read_result
from suite.runtime.loader import UsageError, resolve

NAME = "probe"
HELP = "run edge cases (rate 0/1/NaN, int, empty, fp16, eval, ...) and conventions through every API; record what happens"


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value < 2**31:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**31), got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from suite.probe.runner import DEFAULT_CASE_TIMEOUT_S, DEFAULT_SEED

    add_backend_options(parser)
    parser.add_argument("--case", action="append", default=[], metavar="ID", help="only these cases (repeatable)")
    parser.add_argument("--seed", type=_seed, default=DEFAULT_SEED, help=f"seed of every seeded call (default {DEFAULT_SEED})")
    parser.add_argument("--case-timeout", type=positive_float, default=DEFAULT_CASE_TIMEOUT_S, metavar="S",
                        help="a case running longer is recorded as `timeout` and the rest go on (default %(default)g)")
    parser.add_argument("--json", type=writable_path, metavar="PATH", help="write the records (probe.json)")
    parser.add_argument("--markdown", type=writable_path, metavar="PATH", help="write the case x API matrix as markdown")
    parser.add_argument("--csv", type=writable_path, metavar="PATH", help="write the case x API matrix as CSV")
    parser.add_argument("--section", type=writable_path, metavar="PATH",
                        help='write the README section "How the frameworks differ" to its own file')
    parser.add_argument("--readme", metavar="PATH",
                        help="rewrite the text between <!-- probe:begin --> and <!-- probe:end --> in PATH, in place")
    parser.add_argument("--from", dest="from_json", metavar="PATH",
                        help="render the outputs from an earlier probe.json instead of running")
    parser.add_argument("--diff", nargs=2, metavar=("OLD", "NEW"),
                        help="print what changed between two probe.json runs (versions, machine, cells); "
                             "--markdown PATH writes it as markdown; nothing runs")


def _check_args(args: argparse.Namespace) -> None:
    """Every bad value is reported before anything runs (a probe takes a minute)."""
    from suite.probe.cases import CASE_IDS
    from suite.probe.render import check_markers

    for case in args.case:
        if case not in CASE_IDS:
            raise UsageError(f"unknown case {case!r}; choose from {', '.join(CASE_IDS)}")
    if args.diff and (args.backend or args.api or args.case or args.from_json or args.json or args.csv
                      or args.section or args.readme):
        raise UsageError("--diff compares two earlier runs; it takes only --markdown PATH besides its two files")
    if args.from_json and (args.backend or args.api or args.case):
        raise UsageError("--from renders an earlier run; it cannot be combined with --backend, --api or --case")
    if args.readme:
        check_markers(args.readme)


def _print_summary(payload: dict) -> None:
    from suite.probe.cases import cell_label

    grouped: OrderedDict[str, OrderedDict[str, list[str]]] = OrderedDict()
    for r in payload["records"]:
        grouped.setdefault(r["case"], OrderedDict()).setdefault(cell_label(r), []).append(r["api"])
    if not grouped:
        print("no records")
        return
    rows = []
    for case, labels in grouped.items():
        for i, (label, apis) in enumerate(labels.items()):
            rows.append([case if i == 0 else "", label, ", ".join(apis) if len(labels) > 1 else f"all {len(apis)} APIs"])
    print(table.render(["case", "observed", "APIs"], rows, max_width=200))


def _run_diff(args: argparse.Namespace) -> int:
    from suite.probe.diff import MISSING, diff, diff_markdown

    old_path, new_path = args.diff
    d = diff(read_result(old_path, kind="probe"), read_result(new_path, kind="probe"))
    if d.empty:
        print(f"no difference between {old_path} and {new_path}: same versions, machine and all {d.compared} cells")
    if d.context:
        print(table.render(["what", old_path, new_path], [list(r) for r in d.context], max_width=200))
    if d.cells:
        print(f"\n{len(d.cells)} cell(s) changed ({d.compared} compared; {MISSING}: the run lacks that API or case):")
        print(table.render(["API", "case", "old", "new"], [list(r) for r in d.cells], max_width=200))
    elif not d.empty:
        print(f"\nall {d.compared} cells are the same")
    if args.markdown:
        atomic_write_text(args.markdown, diff_markdown(d, old_path, new_path))
        print(f"wrote {args.markdown}")
    return 0


def run(args: argparse.Namespace) -> int:
    from suite.probe.render import load_notes, matrix_csv, matrix_markdown, relative_link, rewrite_readme, section_markdown

    _check_args(args)
    if args.diff:
        return _run_diff(args)
    if args.from_json:
        payload = read_result(args.from_json, kind="probe")
        json_path = Path(args.from_json)
    else:
        from suite.probe.runner import run_probe

        refs = resolve(args.backend)
        apis = validate_apis(refs, args.api)
        report = run_probe(refs, apis, args.case or None, seed=args.seed, timeout=args.timeout,
                           case_timeout=args.case_timeout)
        payload = report.to_json()
        json_path = args.json or Path("results/probe/probe.json")
    for b in payload["backends"]:
        if b["status"] != "ok":
            print(f"{b['backend']}: {b['status']} — {b['reason']}")
    _print_summary(payload)
    if not args.from_json:
        print(f"\nprobe: {len(payload['records'])} records from {sum(b['status'] == 'ok' for b in payload['backends'])} "
              f"backend(s) in {payload['elapsed_s']:.1f} s")
    notes = load_notes()
    matrix_path = args.markdown or json_path.with_name("matrix.md")
    if args.json and not args.from_json:
        atomic_write_json(args.json, payload)
        print(f"wrote {args.json}")
    if args.markdown:
        atomic_write_text(args.markdown, matrix_markdown(payload))
        print(f"wrote {args.markdown}")
    if args.csv:
        atomic_write_text(args.csv, matrix_csv(payload))
        print(f"wrote {args.csv}")
    for target, write in ((args.section, atomic_write_text), (args.readme, rewrite_readme)):
        if target:
            section = section_markdown(payload, notes, matrix_link=relative_link(matrix_path, target),
                                       json_link=relative_link(json_path, target))
            write(target, section)
            print(f"wrote {target}")
    sys.stdout.flush()
    return 0
