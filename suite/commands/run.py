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
import datetime as _dt
import sys
import time
from pathlib import Path

from suite.bench.schema import READABLE
from suite.commands.cluster import run_per_machine
from suite.commands.options import add_executor_options, positive_float, positive_int
from suite.commands.progress import Progress, progress_bar
from suite.runtime.jsonio import ResultFileError, atomic_write_json, atomic_write_text, read_result
from suite.runtime.loader import BackendRef, UsageError, resolve
from suite.runtime.machine import machine_facts, machine_id

NAME = "run"
HELP = "the main job: verify + probe + bench --quick (on the CPU, or --device cuda) for every installed backend, then report"
STAGES = ("verify", "probe", "bench")
STATE_FILE = "run.json"
RESUMED_OPTIONS = ("backend", "threads", "skip", "no_plots", "device")  # taken from run.json on --resume


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", action="append", default=[], metavar="NAME|module:attr",
                        help="backends to run (repeatable); default: every known backend")
    parser.add_argument("--out", metavar="DIR", help="results root (default: results/); the run goes to DIR/<machine-id>/<timestamp>/")
    parser.add_argument("--threads", type=positive_int, default=1, help="threads pinned for every framework in bench")
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
        part = run_probe([ref], timeout=args.timeout, device=args.device)
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

    resume = getattr(args, "resume_bench", False) and (out / "bench.json").exists()
    options = BenchOptions(backends=tuple(args.backend), device=args.device, threads=args.threads, quick=True,
                           json_path=str(out / "bench.json"), timeout=args.timeout, resume=resume)
    payload = run_bench(options, progress=progress)
    for _ in names - done:
        bar.advance()
    return exit_code(payload), out / "bench.json"


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
            if "verify" in todo:
                verify_code, lines = _verify(refs, args, out, bar)
                done["verify"] = {"code": verify_code, "lines": lines}
                _save_state(out, state)
            if "probe" in todo:
                done["probe"] = {"code": 0, "lines": _probe(refs, args, out, bar)}
                _save_state(out, state)
            if "bench" in todo:
                args.resume_bench = "bench" in state.get("started", [])
                state.setdefault("started", []).append("bench")
                _save_state(out, state)
                bench_code, _ = _bench(refs, args, out, bar)
                done["bench"] = {"code": bench_code, "lines": []}
                _save_state(out, state)
            summary = [f"# dropbench run {out.name} on {out.parent.name}"
                       + (" (device run: cuda)" if args.device == "cuda" else ""), ""]
            for stage, title in (("verify", "## Conformance (verify)"), ("probe", "## Edge cases (probe)")):
                if stage in stages:
                    summary += [title, "", *done[stage]["lines"], ""]
            if "bench" in stages:
                bar.step("report")
                from suite.report.build import build_report

                files = build_report([out / "bench.json"], out / "report", plots=not args.no_plots)
                bar.advance()
                summary += [f"## Throughput (bench --quick, {args.device})", "", files.summary_md.read_text(encoding="utf-8"),
                            "", f"Tables, plots and HTML: [report/]({files.html.relative_to(out)})", ""]
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
    summary.append(f"_{time.perf_counter() - started:.0f} s{' (this resumed part)' if args.resume else ''} in all; "
                   f"exit code {code}._")
    atomic_write_text(out / "summary.md", "\n".join(summary) + "\n")
    print("\n".join(summary))
    print(f"\nwrote {out}")
    if problem:
        print(f"dropbench run --device cuda: FAILED: {problem}", file=sys.stderr)
    return code
