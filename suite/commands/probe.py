"""`dropbench probe`: run the edge cases and conventions through every API and record what happens."""
from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from pathlib import Path

from suite.commands.cluster import run_per_machine
from suite.commands.options import add_backend_options, add_executor_options, positive_float, validate_apis, writable_path
from suite.report import table
from suite.runtime.jsonio import atomic_write_json, atomic_write_text, read_result
from suite.runtime.loader import UsageError, resolve, select

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
    add_executor_options(parser)
    parser.add_argument("--case", action="append", default=[], metavar="ID", help="only these cases (repeatable)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: also run the GPU cases (cuda:*), n/a with the reason for an API that sees no GPU")
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
    from suite.probe.cases import cases_for
    from suite.probe.render import check_markers

    known = [c.id for c in cases_for(getattr(args, "device", "cpu"))]
    for case in args.case:
        if case not in known:
            hint = " (the GPU cases need --device cuda)" if case in [c.id for c in cases_for("cuda")] else ""
            raise UsageError(f"unknown case {case!r}{hint}; choose from {', '.join(known)}")
    if args.diff and (args.backend or args.api or args.case or args.from_json or args.json or args.csv
                      or args.section or args.readme):
        raise UsageError("--diff compares two earlier runs; it takes only --markdown PATH besides its two files")
    if args.from_json and (args.backend or args.api or args.case):
        raise UsageError("--from renders an earlier run; it cannot be combined with --backend, --api or --case")
    if args.readme:
        check_markers(args.readme)


DEPARTS = "DEPARTS"  # marks an observed cell that the spec does not allow (the matrix lists the same cells)


def summary_rows(payload: dict) -> list[list[str]]:
    """Per case and observed outcome: the spec's outcome, whether it departs from it, and the APIs."""
    from suite.probe.cases import cell_label, departs  # noqa: PLC0415 - probe cases load only when printing

    grouped: OrderedDict[str, OrderedDict[str, list[dict]]] = OrderedDict()
    for r in payload["records"]:
        grouped.setdefault(r["case"], OrderedDict()).setdefault(cell_label(r), []).append(r)
    rows = []
    for case, labels in grouped.items():
        spec = next((r.get("expected") for group in labels.values() for r in group if r.get("expected")), None)
        for i, (label, records) in enumerate(labels.items()):
            apis = [r["api"] for r in records]
            mark = DEPARTS if any(departs(r) for r in records) else ""
            rows.append([case if i == 0 else "", (spec or "(silent)") if i == 0 else "", label, mark,
                         ", ".join(apis) if len(labels) > 1 else f"all {len(apis)} APIs"])
    return rows


def _print_summary(payload: dict) -> None:
    rows = summary_rows(payload)
    if not rows:
        print("no records")
        return
    print(table.render(["case", "spec", "observed", "", "APIs"], rows, max_width=200))
    print(f"\n{DEPARTS}: the observed outcome is not what the spec prescribes; (silent): the spec prescribes "
          "nothing, the APIs only split. Reasons and upstream links: matrix.md and the README.")


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
    return run_per_machine(args, _run, paths=("json", "markdown", "csv", "section"), refuse=("readme", "from_json"))


def _run(args: argparse.Namespace) -> int:
    from suite.probe.render import load_notes, matrix_csv, matrix_markdown, relative_link, rewrite_readme, section_markdown

    _check_args(args)
    if args.diff:
        return _run_diff(args)
    if args.from_json:
        payload = read_result(args.from_json, kind="probe")
        json_path = Path(args.from_json)
    else:
        from suite.probe.runner import run_probe

        refs = resolve(select(args.backend, args.api))  # an API id implies its backend
        apis = validate_apis(refs, args.api)
        report = run_probe(refs, apis, args.case or None, seed=args.seed, timeout=args.timeout,
                           case_timeout=args.case_timeout, device=args.device)
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
