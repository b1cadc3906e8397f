"""`dropbench env`: this machine's id and facts, and which backends can run here, with versions and devices."""
from __future__ import annotations

import argparse
import json
from typing import Any

from suite import table
from suite.loader import resolve
from suite.machine import machine_facts, machine_id
from suite.options import positive_float
from suite.worker import run_in_worker

NAME = "env"
HELP = "show the machine id and which backends are installed, their versions and devices"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", action="append", default=[], metavar="NAME|module:attr")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--timeout", type=positive_float, default=120.0, metavar="S")


def worker_task(ref: str, options: dict[str, Any]) -> dict[str, Any]:
    """Child side: availability, versions and devices of one backend."""
    from suite.verify import load_backend_for_task

    backend, payload = load_backend_for_task(ref)
    payload["apis"] = list(backend.apis) if backend is not None else []
    payload["devices"] = backend.devices() if backend is not None else []
    return payload


def collect(names: list[str], timeout: float) -> dict[str, Any]:
    rows = []
    for ref in resolve(names):
        result = run_in_worker("env", ref.ref, {}, timeout=timeout)
        if result.payload is None:
            rows.append({"backend": ref.name, "available": False, "reason": f"{result.status}: {result.detail}"})
        else:
            rows.append(result.payload)
    facts = machine_facts()
    return {"machine_id": machine_id(facts), "machine_facts": facts, "backends": rows}


def run(args: argparse.Namespace) -> int:
    info = collect(args.backend, args.timeout)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"machine {info['machine_id']}: " + ", ".join(f"{k}={v}" for k, v in info["machine_facts"].items()))
    print(table.render(
        ["backend", "status", "versions / reason", "devices", "apis"],
        [[b["backend"], "ok" if b.get("available") else "unavailable",
          ", ".join(f"{k} {v}" for k, v in b.get("versions", {}).items()) if b.get("available") else b.get("reason"),
          ", ".join(b.get("devices", [])), len(b.get("apis", []))] for b in info["backends"]],
        max_width=70))
    return 0
