"""`dropbench verify`: check every API of every installed backend against the spec."""
from __future__ import annotations

import argparse

from suite.commands.cluster import run_per_machine
from suite.commands.options import add_backend_options, add_executor_options, validate_apis, writable_path
from suite.report import table
from suite.runtime.jsonio import atomic_write_json
from suite.runtime.loader import resolve, select

NAME = "verify"
HELP = "check every API of every installed backend against the spec"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_backend_options(parser)
    add_executor_options(parser)
    parser.add_argument("--json", type=writable_path, metavar="PATH", help="also write the records as JSON")
    parser.add_argument("--all", action="store_true", help="list passing checks too, not only the rest (details uncut)")
    parser.add_argument("--verbose", "-v", action="store_true", help="show every detail uncut (framework errors whole)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="an API that is not certified (a family of its kind or declared scaling never ran) does not fail the run")


def run(args: argparse.Namespace) -> int:
    return run_per_machine(args, _run, paths=("json",))


def _run(args: argparse.Namespace) -> int:
    from suite.verify.runner import run_verify, summary_rows

    refs = resolve(select(args.backend, args.api))  # an API id implies its backend: only its worker starts
    apis = validate_apis(refs, args.api)
    report = run_verify(refs, apis, timeout=args.timeout, required=bool(args.backend or args.api), allow_partial=args.allow_partial)
    width = 10**6 if args.all or args.verbose else 90
    for b in report.backends:
        if b["status"] != "ok":
            print(f"{b['backend']}: {b['status']} — {b['reason']}")
    shown = report.records if args.all else [r for r in report.records if r["status"] != "pass"]
    if shown:
        print(table.render(["backend", "api", "check", "status", "detail"],
                           [[r["backend"], r["api"], r["check"], r["status"], r["detail"]] for r in shown], max_width=width))
        print()
    print(table.render(["api", "pass", "fail", "error", "known", "skip"], summary_rows(report)))
    for entry in report.stale:
        print(f"stale known divergence: {entry.api} {entry.check} no longer fails — remove it from known_divergences.toml")
    n = report.statistical_checks
    print(f"\n{n} statistical checks at alpha={report.to_json()['alpha_per_check']:g} each: "
          f"a correct backend fails this run falsely with probability <= {report.to_json()['family_false_fail_bound']:.2g}")
    print()
    for cov in report.coverage:
        print(cov.line())
    for b in report.missing:
        print(f"verify: backend {b['backend']} was asked for but did not run ({b['status']})")
    if args.json:
        atomic_write_json(args.json, report.to_json())
        print(f"wrote {args.json}")
    print(report.final_line())
    return report.exit_code()
