"""`dropbench env`: this machine's id and facts, and which backends can run here, with versions and devices.

``dropbench env create NAME [--force]`` builds a worker environment (backends/environments.toml) and
``dropbench env list`` shows them; ``dropbench env`` with no action is the backend table.
"""
from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from suite.commands.options import add_jobs_option, default_jobs, positive_float
from suite.report import table
from suite.runtime.loader import BackendRef, load_for_worker, resolve
from suite.runtime.machine import machine_facts, machine_id
from suite.runtime.worker import Task, run_task

NAME = "env"
HELP = "show the machine id and which backends are installed, their versions and devices; build worker environments"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", action="append", default=[], metavar="NAME|module:attr",
                        help="backends to show (repeatable); default: every known backend")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--timeout", type=positive_float, default=120.0, metavar="S", help="per-worker timeout in seconds")
    add_jobs_option(parser, "workers started")
    actions = parser.add_subparsers(dest="action", metavar="{create,list}", parser_class=type(parser))
    create = actions.add_parser("create", help="build a worker environment (a virtual environment outside the "
                                               "repository, $DROPBENCH_ENV_DIR or ~/.cache/dropbench/envs)")
    create.add_argument("name", metavar="NAME", help="an environment defined in backends/environments.toml (`dropbench env list`)")
    create.add_argument("--force", action="store_true", help="rebuild even when it is up to date")
    create.add_argument("--quiet", action="store_true", help="show pip's output only when a step fails")
    actions.add_parser("list", help="the worker environments: where, status, backends that run in them")
    pins = actions.add_parser("pins", help="this interpreter's versions of an environment's pinned packages, next to "
                                           "the pins (no install, no import: what .ci/gpu-run records)")
    pins.add_argument("name", metavar="NAME", help="an environment defined in backends/environments.toml")
    pins.add_argument("--json", dest="pins_json", metavar="FILE", help="also write the rows to FILE")


def worker_task(task: Task) -> dict[str, Any]:
    """Child side: availability, versions and devices of one backend."""

    backend, payload = load_for_worker(task.ref)
    payload["apis"] = list(backend.apis) if backend is not None else []
    payload["devices"] = backend.devices() if backend is not None else []
    return payload


def _row(ref: BackendRef, timeout: float) -> dict[str, Any]:
    from suite.runtime.environments import ONE_INTERPRETER_NOTE, declaration, one_interpreter  # noqa: PLC0415

    result = run_task(Task("env", ref.ref, name=ref.name), timeout=timeout)
    if result.status == "unavailable":
        row = {"backend": ref.name, "available": False, "reason": result.detail}
    elif result.payload is None:
        row = {"backend": ref.name, "available": False, "reason": f"{result.status}: {result.detail}"}
    else:
        row = dict(result.payload)
        if row.get("backend") != ref.name:  # keras3-jax, keras3-torch, ...: one backend name, several workers
            row["backend"] = f"{row.get('backend')} ({ref.name})"
    named = declaration(ref.ref)[0]
    row["environment"] = "main" if named is None else f"{named} ({ONE_INTERPRETER_NOTE})" if one_interpreter() else named
    return row


def collect(names: list[str], timeout: float, jobs: int | None = None) -> dict[str, Any]:
    """One worker per backend, ``jobs`` at a time: each worker mostly waits on its framework's import,
    so running them side by side takes the time of the slowest few, not the sum (rows keep their order)."""
    refs = resolve(names)
    with ThreadPoolExecutor(max_workers=max(1, jobs or default_jobs())) as pool:
        rows = list(pool.map(lambda ref: _row(ref, timeout), refs))
    facts = machine_facts()
    return {"machine_id": machine_id(facts), "machine_facts": facts, "backends": rows}


def _create(args: argparse.Namespace) -> int:
    from suite.runtime.environments import EnvCreateError, create

    try:
        create(args.name, force=args.force, quiet=args.quiet)
    except EnvCreateError as exc:
        print(f"dropbench env create: {exc}")
        return 1
    return 0


def _list(args: argparse.Namespace) -> int:
    from suite.runtime.environments import definitions, env_root, state

    defs = definitions()
    states = {name: state(name, defs) for name in defs}
    if args.json:
        print(json.dumps({"root": str(env_root()), "environments": [
            {"name": n, "path": str(s.path), "status": s.status, "detail": s.detail, "backends": list(defs[n].backends),
             "requirements": list(defs[n].requirements)} for n, s in states.items()]}, indent=2))
        return 0
    print(f"worker environments in {env_root()} (set DROPBENCH_ENV_DIR to move them)")
    print(table.render(["environment", "status", "backends", "description / what to do"],
                       [[n, s.status, ", ".join(defs[n].backends), s.detail or defs[n].description]
                        for n, s in states.items()], max_width=100))
    return 0


def _pins(args: argparse.Namespace) -> int:
    """The pins table; differences are facts to record (exit 0), only a bad NAME is an error (exit 2)."""
    from suite.runtime.jsonio import atomic_write_json
    from suite.runtime.stack import stack_record

    record = stack_record(args.name)
    print(f"python {record['python']}: the installed versions next to the pins of environment {args.name}")
    print(table.render(["package", "pinned", "installed", "status"],
                       [[r["package"], r["pinned"], r["installed"] or "-", r["status"]] for r in record["rows"]]))
    if args.pins_json:
        atomic_write_json(args.pins_json, record)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "pins":
        return _pins(args)
    if args.action == "create":
        return _create(args)
    if args.action == "list":
        return _list(args)
    info = collect(args.backend, args.timeout, args.jobs)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"machine {info['machine_id']}: " + ", ".join(f"{k}={v}" for k, v in info["machine_facts"].items()))
    print(table.render(
        ["backend", "env", "status", "versions / reason", "devices", "apis"],
        [[b["backend"], b.get("environment", "main"), "ok" if b.get("available") else "unavailable",
          ", ".join(f"{k} {v}" for k, v in b.get("versions", {}).items()) if b.get("available") else b.get("reason"),
          ", ".join(b.get("devices", [])), len(b.get("apis", []))] for b in info["backends"]],
        max_width=70))
    return 0
