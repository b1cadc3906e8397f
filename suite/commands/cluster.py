"""Run a command once per machine kind of a cluster (``--executor``), in parallel, one output block each.

Why here: a command's body stays the one-machine code; this wrapper points it at one target at a
time (:func:`suite.runtime.executors.running`: workers go to that machine kind, machine facts and ids
are its own, so default result paths land in ``results/<its machine id>/``) and gives every target its
own copy of the output paths the user named when the cluster has several machine kinds (``PATH`` -> ``PATH``
with ``.<machine id>`` before the suffix), so that two machines never write one file and ``--resume`` finds
each machine's file again; with one kind the path is written as named (a script that reads it finds it).
"""
from __future__ import annotations

import argparse
import copy
import io
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from suite.runtime.executors import LOCAL, Target, open_cluster, parse_selector, running
from suite.runtime.loader import UsageError

Body = Callable[[argparse.Namespace], int]


class _ThreadOutput(io.TextIOBase):
    """sys.stdout that keeps each target thread's lines apart (printed as one block when it ends)."""

    def __init__(self, real: io.TextIOBase) -> None:
        self.real, self.local = real, threading.local()

    def write(self, text: str) -> int:
        buffer = getattr(self.local, "buffer", None)
        return buffer.write(text) if buffer is not None else self.real.write(text)

    def flush(self) -> None:
        self.real.flush()


def per_machine_path(path: str | Path | None, machine: str, kinds: int = 2) -> Path | None:
    """The path one of ``kinds`` machine kinds writes: as named for one kind, else with ``.<machine>`` before the suffix."""
    if path is None:
        return None
    path = Path(path)
    return path if kinds == 1 else path.with_name(f"{path.stem}.{machine}{path.suffix}")


def run_per_machine(args: argparse.Namespace, body: Body, paths: Sequence[str] = (), refuse: Sequence[str] = ()) -> int:
    """``body(args)`` on this machine (``--executor local``), else once per target; the worst exit code.

    ``paths``: attributes of ``args`` holding output paths that get the machine id; ``refuse``: options
    that cannot be split per machine (UsageError when given with a cluster).
    """
    if getattr(args, "executor", LOCAL) == LOCAL:
        if args.address or args.nodes:
            raise UsageError("--address and --nodes need --executor NAME (a cluster); this run is local")
        return body(args)
    for name in refuse:
        if getattr(args, name, None):
            raise UsageError(f"--{name.replace('_', '-')} cannot be used with --executor {args.executor}: "
                             "it names one file for every machine")
    for text in args.nodes:
        parse_selector(text)
    cluster = open_cluster(args.executor, args.address, args.nodes)
    try:
        targets = cluster.targets()
        print(f"{args.executor}: {len(targets)} machine kind(s): "
              + ", ".join(f"{t.machine_id} ({len(t.nodes)} node(s))" for t in targets), flush=True)
        return _run_targets(args, body, targets, paths)
    finally:
        cluster.close()


def _run_targets(args: argparse.Namespace, body: Body, targets: list[Target], paths: Sequence[str]) -> int:
    codes: dict[str, int] = {}
    real = sys.stdout
    out = _ThreadOutput(real)
    lock = threading.Lock()

    def one(target: Target) -> None:
        own = copy.copy(args)
        for name in paths:
            setattr(own, name, per_machine_path(getattr(args, name, None), target.machine_id, len(targets)))
        out.local.buffer = io.StringIO()
        try:
            with running(target):
                codes[target.machine_id] = body(own)
        except UsageError as exc:
            print(f"dropbench: error: {exc}")
            codes[target.machine_id] = 2
        except Exception as exc:  # noqa: BLE001 - one machine's failure is reported; the others' results stand
            print(f"{target.machine_id}: failed: {type(exc).__name__}: {exc}")
            codes[target.machine_id] = 1
        finally:
            text = out.local.buffer.getvalue()
            out.local.buffer = None
            with lock:
                real.write(f"\n== machine {target.machine_id} ({len(target.nodes)} node(s)) ==\n{text}")
                real.flush()

    sys.stdout = out  # type: ignore[assignment]
    try:
        threads = [threading.Thread(target=one, args=(t,), name=f"dropbench-{t.machine_id}") for t in targets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.stdout = real
    for machine, code in sorted(codes.items()):
        print(f"{machine}: exit code {code}")
    return max(codes.values(), default=1)
