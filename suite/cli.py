"""`dropbench` command line. Validates every option before any framework is imported."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from suite.jsonio import ResultFileError, atomic_write_json
from suite.loader import UsageError, resolve
from suite import table


class _Parser(argparse.ArgumentParser):
    """argparse that reports misuse in one line with exit 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def _writable_path(text: str) -> Path:
    """An output file whose folder exists (or can be made) and accepts a new file, checked up front."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, expected a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {exc.strerror or exc}") from None
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dropbench", description="Does dropout mean the same in every framework, and how fast is it?")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    verify = sub.add_parser("verify", help="check every API of every installed backend against the spec")
    verify.add_argument("--backend", action="append", default=[], metavar="NAME|module:attr",
                        help="backend to check (repeatable); default: every known backend")
    verify.add_argument("--api", action="append", default=[], metavar="BACKEND:API", help="only these API ids (repeatable)")
    verify.add_argument("--json", type=_writable_path, metavar="PATH", help="also write the records as JSON")
    verify.add_argument("--all", action="store_true", help="list passing checks too, not only the rest")
    verify.add_argument("--timeout", type=_positive_float, default=600.0, metavar="S", help="per-backend worker timeout")
    return parser


def _validate_apis(refs, apis: list[str]) -> set[str] | None:
    """API ids must exist; checked against built-in adapters without importing frameworks."""
    if not apis:
        return None
    from suite.loader import api_names

    known: set[str] = set()
    for ref in refs:
        try:
            known.update(f"{ref.name}:{a}" for a in api_names(ref.ref))
        except Exception:  # a plugin that cannot load here: its worker will report it
            known.update(a for a in apis if a.startswith(f"{ref.name}:"))
    for api in apis:
        if api not in known:
            raise UsageError(f"unknown api {api!r}; choose from {', '.join(sorted(known))}")
    return set(apis)


def cmd_verify(args: argparse.Namespace) -> int:
    from suite.verify import run_verify, summary_rows

    refs = resolve(args.backend)
    apis = _validate_apis(refs, args.api)
    report = run_verify(refs, apis, timeout=args.timeout)
    for b in report.backends:
        if b["status"] != "ok":
            print(f"{b['backend']}: {b['status']} — {b['reason']}")
    shown = report.records if args.all else [r for r in report.records if r["status"] != "pass"]
    if shown:
        print(table.render(["backend", "api", "check", "status", "detail"],
                           [[r["backend"], r["api"], r["check"], r["status"], r["detail"]] for r in shown]))
        print()
    print(table.render(["api", "pass", "fail", "error", "known", "skip"], summary_rows(report)))
    for entry in report.stale:
        print(f"stale known divergence: {entry.api} {entry.check} no longer fails — remove it from known_divergences.toml")
    n = report.statistical_checks
    print(f"\n{n} statistical checks at alpha={report.to_json()['alpha_per_check']:g} each: "
          f"a correct backend fails this run falsely with probability <= {report.to_json()['family_false_fail_bound']:.2g}")
    failed = report.failed
    print(f"verify: {len(failed)} unexpected failure(s)" if failed else "verify: OK (every failure is a known divergence)")
    if args.json:
        atomic_write_json(args.json, report.to_json())
        print(f"wrote {args.json}")
    return report.exit_code()


COMMANDS = {"verify": cmd_verify}


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (UsageError, ResultFileError) as exc:
        print(f"dropbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dropbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
