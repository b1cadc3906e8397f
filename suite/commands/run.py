"""`dropbench run`: the main job — verify, probe, a quick benchmark and its report, for every installed backend.

Everything lands in ``results/<machine-id>/<timestamp>/``: verify.json, probe.json (+ matrix),
bench.json, report/ (tables, plots, HTML) and summary.md. Each stage runs each backend in its
own worker, so one framework's crash costs only its own rows.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import time
from pathlib import Path

from suite.runtime.jsonio import atomic_write_json, atomic_write_text
from suite.runtime.loader import BackendRef, resolve
from suite.runtime.machine import machine_id
from suite.commands.cluster import run_per_machine
from suite.commands.options import add_executor_options, positive_float, positive_int
from suite.commands.progress import Progress, progress_bar

NAME = "run"
HELP = "the main job: verify + probe + bench --quick on the CPU for every installed backend, then report"
STAGES = ("verify", "probe", "bench")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", action="append", default=[], metavar="NAME|module:attr",
                        help="backends to run (repeatable); default: every known backend")
    parser.add_argument("--out", metavar="DIR", help="results root (default: results/); the run goes to DIR/<machine-id>/<timestamp>/")
    parser.add_argument("--threads", type=positive_int, default=1, help="threads pinned for every framework in bench (default 1)")
    parser.add_argument("--timeout", type=positive_float, default=600.0, metavar="S", help="per-worker timeout")
    parser.add_argument("--skip", action="append", default=[], choices=STAGES, help="leave out a stage (repeatable)")
    parser.add_argument("--no-plots", action="store_true", help="tables only (faster report)")
    add_executor_options(parser)


def _run_dir(root: str | None) -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = Path(root or "results") / machine_id() / stamp
    target.mkdir(parents=True, exist_ok=False)
    return target


def _verify(refs: list[BackendRef], args: argparse.Namespace, out: Path, bar: Progress) -> tuple[int, list[str]]:
    from suite.verify.runner import VerifyReport, run_verify, summary_rows

    merged = VerifyReport()
    for ref in refs:
        bar.step(f"verify {ref.name}")
        part = run_verify([ref], timeout=args.timeout, required=bool(args.backend))
        merged.required = part.required
        merged.backends += part.backends
        merged.records += part.records
        merged.stale += part.stale
        bar.advance()
    atomic_write_json(out / "verify.json", merged.to_json())
    lines = ["| api | pass | fail | error | known | skip |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in summary_rows(merged)]
    failed = merged.failed
    lines.append("")
    lines.append(f"verify: {len(failed)} unexpected failure(s)" if failed else
                 "verify: every failure is a documented known divergence")
    for b in merged.backends:
        if b["status"] != "ok":
            lines.append(f"- {b['backend']}: {b['status']} — {b['reason']}")
    return merged.exit_code(), lines


def _probe(refs: list[BackendRef], args: argparse.Namespace, out: Path, bar: Progress) -> list[str]:
    from suite.probe.render import matrix_csv, matrix_markdown
    from suite.probe.runner import ProbeReport, run_probe

    merged: ProbeReport | None = None
    started = time.perf_counter()
    for ref in refs:
        bar.step(f"probe {ref.name}")
        part = run_probe([ref], timeout=args.timeout)
        if merged is None:
            merged = part
        else:
            merged.backends += part.backends
            merged.records += part.records
            merged.versions.update(part.versions)
        bar.advance()
    assert merged is not None
    merged.elapsed_s = time.perf_counter() - started
    payload = merged.to_json()
    atomic_write_json(out / "probe.json", payload)
    atomic_write_text(out / "probe-matrix.md", matrix_markdown(payload))
    atomic_write_text(out / "probe-matrix.csv", matrix_csv(payload))
    from suite.probe.cases import departs

    departures = [r for r in payload["records"] if departs(r)]
    return [f"probe: {len(payload['records'])} records; {len(departures)} depart from the spec — see probe-matrix.md"]


def _bench(refs: list[BackendRef], args: argparse.Namespace, out: Path, bar: Progress) -> tuple[int, Path]:
    from suite.bench.runner import BenchOptions, exit_code, run_bench

    names = {ref.name for ref in refs}
    done: set[str] = set()

    def progress(message: str) -> None:
        backend, _, text = message.partition(": ")
        if text.startswith("starting worker"):
            bar.step(f"bench {backend}")
        elif text.startswith("running "):
            bar.note(text[len("running "):])
        elif backend in names and backend not in done and not text.startswith("starting"):
            done.add(backend)
            bar.advance()

    options = BenchOptions(backends=tuple(args.backend), device="cpu", threads=args.threads, quick=True,
                           json_path=str(out / "bench.json"), timeout=args.timeout)
    payload = run_bench(options, progress=progress)
    for _ in names - done:
        bar.advance()
    return exit_code(payload), out / "bench.json"


def run(args: argparse.Namespace) -> int:
    return run_per_machine(args, _run)


def _run(args: argparse.Namespace) -> int:
    from suite.bench.runner import BenchOptions

    refs = resolve(args.backend)
    BenchOptions(backends=tuple(args.backend), device="cpu", threads=args.threads, quick=True).validated()
    out = _run_dir(args.out)
    stages = [s for s in STAGES if s not in args.skip]
    code = 0
    summary = [f"# dropbench run {out.name} on {out.parent.name}", ""]
    started = time.perf_counter()
    with progress_bar(len(stages) * len(refs) + (1 if "bench" in stages else 0)) as bar:
        if "verify" in stages:
            verify_code, lines = _verify(refs, args, out, bar)
            code = max(code, verify_code)
            summary += ["## Conformance (verify)", "", *lines, ""]
        if "probe" in stages:
            summary += ["## Edge cases (probe)", "", *_probe(refs, args, out, bar), ""]
        if "bench" in stages:
            bench_code, bench_json = _bench(refs, args, out, bar)
            code = max(code, bench_code)
            bar.step("report")
            from suite.report.build import build_report

            files = build_report([bench_json], out / "report", plots=not args.no_plots)
            bar.advance()
            summary += ["## Throughput (bench --quick, CPU)", "", files.summary_md.read_text(encoding="utf-8"), "",
                        f"Tables, plots and HTML: [report/]({files.html.relative_to(out)})", ""]
    summary.append(f"_{time.perf_counter() - started:.0f} s in all; exit code {code}._")
    atomic_write_text(out / "summary.md", "\n".join(summary) + "\n")
    print("\n".join(summary))
    print(f"\nwrote {out}")
    return code
