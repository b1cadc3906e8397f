"""`dropbench run`: the main job — verify, probe, a quick benchmark and its report, for every installed backend.

Everything lands in ``results/<machine-id>/<timestamp>/``: verify.json, probe.json (+ matrix),
bench.json, report/ (tables, plots, HTML) and summary.md. Each stage runs each backend in its
own worker, so one framework's crash costs only its own rows. ``run.json`` records the options and
every finished stage, so ``--resume DIR`` continues an interrupted run: finished stages are kept,
bench keeps the backends it finished, and the report and summary are rebuilt.

``--device cuda`` is the device run (.ci/gpu-run): the probe adds its GPU cases and the bench times
on the GPU. A GPU was asked for, so none being visible (nvidia-smi lists none) or no GPU row timed
is a failure, said loudly, exit code 1; the stages still run and record why each case was skipped.
"""
from __future__ import annotations

import argparse
import contextvars
import datetime as _dt
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

from suite.bench.schema import READABLE
from suite.commands.cluster import run_per_machine
from suite.commands.options import add_executor_options, add_jobs_option, default_jobs, positive_float, positive_int
from suite.commands.progress import Progress, progress_bar
from suite.runtime.jsonio import ResultFileError, atomic_write_json, atomic_write_text, read_result
from suite.runtime.loader import BackendRef, UsageError, resolve
from suite.runtime.machine import machine_facts, machine_id
from suite.runtime.worker import allow_workers, stop_workers

NAME = "run"
HELP = "the main job: verify + probe + bench --quick (on the CPU, or --device cuda) for every installed backend, then report"
STAGES = ("verify", "probe", "bench")
STATE_FILE = "run.json"
RUN_PROCESSES = 1
"""Bench processes per backend in `dropbench run`. One, so that the main job stays under 6 minutes on a
2-core machine (3 processes: 914 s there, of which bench 637 s). The rows keep their interleaved ratios
to the same process's baselines; what one process cannot give is compare's calibrated verdict
(results/calibration/: 73 % of unchanged rows flagged with one process, 4.9 % with three)."""

RESUMED_OPTIONS = ("backend", "threads", "skip", "no_plots", "device", "processes")  # taken from run.json on --resume


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", action="append", default=[], metavar="NAME|module:attr",
                        help="backends to run (repeatable); default: every known backend")
    parser.add_argument("--out", metavar="DIR", help="results root (default: results/); the run goes to DIR/<machine-id>/<timestamp>/")
    parser.add_argument("--threads", type=positive_int, default=1, help="threads pinned for every framework in bench")
    parser.add_argument("--processes", type=positive_int, default=RUN_PROCESSES, metavar="K",
                        help=f"fresh bench worker processes per backend (default {RUN_PROCESSES}: a snapshot that keeps the run "
                             "short; `dropbench compare` gives a calibrated verdict only from 3 or more, as `bench --quick` times)")
    add_jobs_option(parser, "verify and probe workers (the bench always runs one worker at a time)",
                    default="the number of CPUs plus one, at least 3")
    parser.add_argument("--timeout", type=positive_float, default=600.0, metavar="S", help="per-worker timeout in seconds")
    parser.add_argument("--skip", action="append", default=[], choices=STAGES, help="leave out a stage (repeatable)")
    parser.add_argument("--no-plots", action="store_true", help="tables only (faster report)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: the device run (GPU probe cases, GPU timing); exit 1 when no GPU is visible")
    parser.add_argument("--resume", metavar="DIR", type=_resumable,
                        help="continue the interrupted run in DIR (a folder of an earlier `dropbench run`): keep its "
                             "finished stages and bench backends, run the rest with the options it was started with")
    add_executor_options(parser)


def _resumable(text: str) -> Path:
    path = Path(text)
    if not (path / STATE_FILE).is_file():
        what = "does not exist" if not path.exists() else f"has no {STATE_FILE} (not a folder of `dropbench run`)"
        raise argparse.ArgumentTypeError(f"cannot resume {text!r}: it {what}")
    return path


def _load_state(folder: Path) -> dict:
    state = read_result(folder / STATE_FILE, kind="run-state")
    if not isinstance(state.get("options"), dict) or not isinstance(state.get("stages"), dict):
        raise ResultFileError(f"{folder / STATE_FILE}: no 'options' or 'stages' object")
    return state


def _save_state(folder: Path, state: dict) -> None:
    atomic_write_json(folder / STATE_FILE, state)


def _run_dir(root: str | None) -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = Path(root or "results") / machine_id() / stamp
    target.mkdir(parents=True, exist_ok=False)
    return target


def _verify_part(ref: BackendRef, args: argparse.Namespace) -> Any:
    from suite.verify.runner import run_verify

    return run_verify([ref], timeout=args.timeout, required=bool(args.backend))


def _probe_part(ref: BackendRef, args: argparse.Namespace) -> Any:
    from suite.probe.runner import run_probe

    return run_probe([ref], timeout=args.timeout, device=args.device)


def _verify_lines(parts: list[Any], out: Path) -> tuple[int, list[str]]:
    """verify.json from the per-backend parts, and the summary's table."""
    from suite.verify.runner import VerifyReport, summary_rows

    merged = VerifyReport()
    for part in parts:
        merged.required = part.required
        merged.backends += part.backends
        merged.records += part.records
        merged.stale += part.stale
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


def _probe_lines(parts: list[Any], out: Path, elapsed_s: float) -> tuple[int, list[str]]:
    """probe.json and the matrix from the per-backend parts, and the summary's line."""
    from suite.probe.cases import departs
    from suite.probe.render import matrix_csv, matrix_markdown

    merged = parts[0]
    for part in parts[1:]:
        merged.backends += part.backends
        merged.records += part.records
        merged.versions.update(part.versions)
    merged.elapsed_s = elapsed_s
    payload = merged.to_json()
    atomic_write_json(out / "probe.json", payload)
    atomic_write_text(out / "probe-matrix.md", matrix_markdown(payload))
    atomic_write_text(out / "probe-matrix.csv", matrix_csv(payload))
    departures = [r for r in payload["records"] if departs(r)]
    return 0, [f"probe: {len(payload['records'])} records; {len(departures)} depart from the spec — see probe-matrix.md"]


CHECKS = {"verify": _verify_part, "probe": _probe_part}


def check_jobs() -> int:
    """verify/probe workers at once: one more than ``default_jobs()``, since the checks spend part of their
    time starting processes and reading pipes (2 cores: 130 s with 3 against 155 s with 2, back to back)."""
    return default_jobs() + 1


def _checks(stages: list[str], refs: list[BackendRef], args: argparse.Namespace, out: Path, bar: Progress,
            finished: Callable[[str, int, list[str], float], None]) -> None:
    """verify and probe of every backend, ``args.jobs`` workers at a time, probe's first.

    Why at once: neither stage times anything (their statistical checks are seeded, their timeouts
    generous), so several workers share the cores; the bench that follows runs alone.
    ``finished(stage, code, lines, seconds)`` is called as soon as a stage's last backend is in
    (so an interrupted run keeps a finished probe). Ctrl-C kills every running worker and
    starts no new one before it propagates.
    """
    # probe first: its workers are the long ones (three per backend), verify's short ones fill the gaps at the end
    todo = [(stage, i, ref) for stage in sorted(stages, key=lambda s: s != "probe") for i, ref in enumerate(refs)]
    jobs = args.jobs or check_jobs()
    parts: dict[str, list[Any]] = {stage: [None] * len(refs) for stage in stages}
    started = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="dropbench-check")
    futures = {pool.submit(contextvars.copy_context().run, CHECKS[stage], ref, args): (stage, i, ref)
               for stage, i, ref in todo}  # each with the executor context of this thread (cluster runs)
    bar.step(f"{' + '.join(stages)}: {len(todo)} workers, {jobs} at a time")
    try:
        for future in as_completed(futures):
            stage, i, ref = futures[future]
            parts[stage][i] = future.result()
            bar.advance()
            bar.step(f"{stage} {ref.name} done")
            if all(part is not None for part in parts[stage]):
                seconds = time.perf_counter() - started
                if stage == "probe":
                    code, lines = _probe_lines(parts[stage], out, seconds)
                else:
                    code, lines = _verify_lines(parts[stage], out)
                finished(stage, code, lines, seconds)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        stop_workers()
        try:
            pool.shutdown(wait=True)
        finally:
            allow_workers()
        raise
    pool.shutdown(wait=True)


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

    resume = getattr(args, "resume_bench", False) and (out / "bench.json").exists()
    options = BenchOptions(backends=tuple(args.backend), device=args.device, threads=args.threads, quick=True,
                           json_path=str(out / "bench.json"), timeout=args.timeout, resume=resume,
                           processes=args.processes)
    payload = run_bench(options, progress=progress)
    for _ in names - done:
        bar.advance()
    return exit_code(payload), out / "bench.json"


def stage_times(done: dict[str, dict], stages: list[str], report_s: float | None, jobs: int) -> str:
    """" (verify 61 s, probe 120 s, ...)": where a run's time went; verify and probe overlap when this
    invocation ran both (``jobs`` at a time; 1: it did not, e.g. a resume that kept them)."""
    parts = [f"{stage} {done[stage]['seconds']:.0f} s" for stage in stages if "seconds" in done.get(stage, {})]
    if report_s is not None:
        parts.append(f"report {report_s:.0f} s")
    overlap = f"; verify and probe ran {jobs} workers at a time, their times overlap" if jobs > 1 and \
        {"verify", "probe"} <= set(stages) else ""
    return f" ({', '.join(parts)}{overlap})" if parts else ""


def report_inputs(out: Path) -> list[Path]:
    """What the run's page is built from: its bench.json, and its verify.json and probe.json where those stages ran."""
    return [p for p in (out / "bench.json", out / "verify.json", out / "probe.json") if p.is_file()]


def gpu_problem(device: str, bench_json: Path | None) -> str | None:
    """Why a run that asked for ``device`` "cuda" failed to use one (None: it did, or the CPU was asked for)."""
    if device != "cuda":
        return None
    gpus = machine_facts().get("gpu")
    if not gpus:
        return ("no GPU is visible (nvidia-smi is missing or lists none): every GPU case was skipped — "
                "run this on a machine with an NVIDIA GPU")
    if bench_json is not None and bench_json.exists():
        rows = [b for b in read_result(bench_json, kind="bench", schemas=READABLE).get("benchmarks", [])
                if str(b.get("extra_info", {}).get("device", "")).startswith("cuda")]
        if not rows:
            return f"nvidia-smi sees {gpus}, but no benchmark ran on it (see the skipped cases in bench.json)"
    return None


def _new_run(args: argparse.Namespace) -> tuple[Path, dict]:
    return _run_dir(args.out), {"schema": 1, "kind": "run-state",
                                "options": {k: getattr(args, k) for k in RESUMED_OPTIONS}, "stages": {}}


def _resumed_state(args: argparse.Namespace) -> dict | None:
    """With --resume: the interrupted run's state, its options copied onto ``args``; else None."""
    if args.resume is None:
        return None
    given = [f"--{k.replace('_', '-')}" for k in RESUMED_OPTIONS if getattr(args, k) not in (None, False, [], 1, "cpu")]
    given += ["--out"] if args.out else []
    if given:
        raise UsageError(f"--resume uses the options the run was started with; drop {' '.join(given)}")
    state = _load_state(args.resume)
    for key in RESUMED_OPTIONS:
        setattr(args, key, state["options"].get(key, getattr(args, key)))
    return state


def run(args: argparse.Namespace) -> int:
    return run_per_machine(args, _run)


def _run(args: argparse.Namespace) -> int:
    from suite.bench.runner import BenchOptions

    resumed = _resumed_state(args)  # first: --resume replaces the options by the run's own
    refs = resolve(args.backend)
    BenchOptions(backends=tuple(args.backend), device=args.device, threads=args.threads, quick=True).validated()
    early = gpu_problem(args.device, None)
    if early:
        print(f"dropbench run --device cuda: FAILING: {early}", file=sys.stderr, flush=True)
    out, state = (args.resume, resumed) if resumed is not None else _new_run(args)
    done = state["stages"]
    stages = [s for s in STAGES if s not in args.skip]
    if done:
        print(f"resuming {out}: keeping {', '.join(s for s in stages if s in done) or 'no finished stage'}", flush=True)
    code = max([int(v.get("code", 0)) for v in done.values()] or [0])
    started = time.perf_counter()
    _save_state(out, state)
    todo = [s for s in stages if s not in done]
    try:
        with progress_bar(len(todo) * len(refs) + (1 if "bench" in stages else 0)) as bar:
            def finished(stage: str, stage_code: int, lines: list[str], seconds: float) -> None:
                done[stage] = {"code": stage_code, "lines": lines, "seconds": round(seconds, 1)}
                _save_state(out, state)

            checks = [s for s in ("verify", "probe") if s in todo]
            if checks:
                _checks(checks, refs, args, out, bar, finished)
            if "bench" in todo:
                args.resume_bench = "bench" in state.get("started", [])
                state.setdefault("started", []).append("bench")
                _save_state(out, state)
                bench_started = time.perf_counter()
                bench_code, _ = _bench(refs, args, out, bar)
                done["bench"] = {"code": bench_code, "lines": [], "seconds": round(time.perf_counter() - bench_started, 1)}
                _save_state(out, state)
            summary = [f"# dropbench run {out.name} on {out.parent.name}"
                       + (" (device run: cuda)" if args.device == "cuda" else ""), ""]
            for stage, title in (("verify", "## Conformance (verify)"), ("probe", "## Edge cases (probe)")):
                if stage in stages:
                    summary += [title, "", *done[stage]["lines"], ""]
            report_s = None
            if "bench" in stages:
                bar.step("report")
                from suite.report.build import build_report

                report_started = time.perf_counter()
                files = build_report(report_inputs(out), out / "report", plots=not args.no_plots)
                report_s = time.perf_counter() - report_started
                bar.advance()
                processes = (f"{args.processes} process per backend: a snapshot; for a calibrated `dropbench compare` "
                             "verdict time with 3 or more (`dropbench bench --quick`, or `dropbench run --processes 3`)"
                             if args.processes < 3 else f"{args.processes} processes per backend")
                summary += [f"## Throughput (bench --quick, {args.device}, {processes})", "",
                            files.summary_md.read_text(encoding="utf-8"),
                            "", f"The page (conformance, difference map, speed) and every table and plot: "
                                f"[{files.html.relative_to(out)}]({files.html.relative_to(out)})", ""]
            elif report_inputs(out):  # --skip bench: the page still answers the other two questions
                from suite.report.build import build_report

                files = build_report(report_inputs(out), out / "report", plots=False)
                summary += [f"The page (conformance, difference map): [{files.html.relative_to(out)}]"
                            f"({files.html.relative_to(out)})", ""]
    except KeyboardInterrupt:
        kept = [s for s in STAGES if s in done]
        print(f"\ndropbench run: interrupted; {out} keeps {', '.join(kept) if kept else 'no finished stage'}"
              f"{' (and the backends bench.json holds)' if 'bench' not in done and (out / 'bench.json').exists() else ''}. "
              f"Continue with: dropbench run --resume {out}", file=sys.stderr)
        return 130
    code = max([code] + [int(v.get("code", 0)) for v in done.values()])
    problem = gpu_problem(args.device, out / "bench.json" if "bench" in stages else None)
    if problem:
        code = 1
        summary += [f"**FAILED: a GPU was asked for (--device cuda) and {problem}.**", ""]
    summary.append(f"_{time.perf_counter() - started:.0f} s{' (this resumed part)' if args.resume else ''} in all"
                   f"{stage_times(done, stages, report_s, (args.jobs or check_jobs()) if len(checks) == 2 else 1)}; exit code {code}._")
    atomic_write_text(out / "summary.md", "\n".join(summary) + "\n")
    print("\n".join(summary))
    print(f"\nwrote {out}")
    if problem:
        print(f"dropbench run --device cuda: FAILED: {problem}", file=sys.stderr)
    return code
