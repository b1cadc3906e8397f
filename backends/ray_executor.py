"""`--executor ray`: run each worker as a Ray task on a node of a Ray cluster (an optional extra).

Why Ray: placement by resources, node membership and failure detection come from an existing engine.
What stays ours: the unit of work is the same ``run_task`` as on one machine, started on the node
(its interpreter, its worker environments); the task returns the worker's result and the files it
left in its work folder, and the driver writes those files atomically as each result arrives.

Placement: a target is one machine kind (the machine id its nodes report, suite/runtime/machine.py);
its tasks are pinned to one alive node of the kind at a time (hard node affinity, no Ray retries).
Timed work (bench) asks for every CPU of its node, so no other dropbench task shares the node while
a timing runs; verify and probe ask for one CPU and may share. A node that dies costs its in-flight
task only: it is retried on another alive node of the same kind, or recorded as lost with the reason.
Ray is imported only here, and only when a cluster is opened.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from suite.runtime.executors import Target, node_matches
from suite.runtime.loader import UsageError
from suite.runtime.machine import machine_facts, machine_id
from suite.runtime.worker import Task, WorkerResult, run_task

INSTALL = 'pip install -e ".[ray]"'
NAME = "ray"
FACTS_TIMEOUT_S = 60.0
"""How long a node may take to say which machine it is before it is left out of the run."""
RESULT_GRACE_S = 120.0
"""How long past the worker's own timeout the driver waits for a task's result before giving up on it."""


def _import_ray() -> Any:
    try:
        import ray  # noqa: PLC0415 - an optional extra, imported only when asked for
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def node_facts() -> dict[str, Any]:
    """Runs on a node: what the driver keys its results by."""
    facts = machine_facts()
    return {"facts": facts, "machine_id": machine_id(facts)}


def node_run(task: Task, kw: dict[str, Any], keep_files: bool) -> dict[str, Any]:
    """Runs on a node: the same ``run_task`` as locally, in a node-local folder; its files come back as bytes."""
    with tempfile.TemporaryDirectory(prefix="dropbench-node-") as tmp:
        result = run_task(task, **({**kw, "workdir": tmp} if keep_files else kw))
        files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()} if keep_files else {}
    return {"result": dataclasses.asdict(result), "files": files}


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RayCluster:
    """The cluster at ``address`` (``None``: ``RAY_ADDRESS`` or the local one), restricted to ``selectors``."""

    name = NAME

    def __init__(self, address: str | None, selectors: Sequence[str]) -> None:
        self.ray = _import_ray()
        self.address = address or os.environ.get("RAY_ADDRESS") or "auto"
        self.selectors = list(selectors)
        try:
            self.ray.init(address=self.address, logging_level="ERROR", log_to_driver=False,
                          configure_logging=True, ignore_reinit_error=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"no Ray cluster at {self.address}: {exc} (start one with `ray start --head`)") from None
        self._facts = self.ray.remote(num_cpus=0, max_retries=0)(node_facts)
        self._run = self.ray.remote(max_retries=0)(node_run)

    def alive_nodes(self) -> dict[str, dict[str, Any]]:
        return {n["NodeID"]: n for n in self.ray.nodes() if n.get("Alive")}

    def _pin(self, node_id: str) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: PLC0415 - optional extra

        return NodeAffinitySchedulingStrategy(node_id, soft=False)

    def targets(self) -> list[Target]:
        """One target per machine kind among the alive nodes that match every selector."""
        nodes = {nid: n for nid, n in self.alive_nodes().items()
                 if node_matches(dict(n.get("Labels") or {}), dict(n.get("Resources") or {}), self.selectors)}
        if not nodes:
            raise UsageError(f"no alive Ray node at {self.address} matches --nodes {' '.join(self.selectors) or '(any)'}")
        refs = {nid: self._facts.options(scheduling_strategy=self._pin(nid)).remote() for nid in nodes}
        by_kind: dict[str, Target] = {}
        if not refs:
            return []
        for nid, ref in refs.items():
            try:
                info = self.ray.get(ref, timeout=FACTS_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - a node that died or hangs is left out, with the reason
                print(f"ray: node {nid[:12]} left out: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                      file=sys.stderr)
                continue
            kind = by_kind.get(info["machine_id"])
            if kind is None:
                kind = by_kind[info["machine_id"]] = Target(info["machine_id"], info["facts"], [], None,  # type: ignore[arg-type]
                                                            labels=dict(nodes[nid].get("Labels") or {}))
            kind.nodes.append(nid)
        for kind in by_kind.values():
            kind.executor = RayNodeExecutor(self, kind.machine_id, kind.nodes)
        if not by_kind:
            raise UsageError(f"no Ray node at {self.address} answered (nodes tried: {len(refs)})")
        return sorted(by_kind.values(), key=lambda t: t.machine_id)

    def close(self) -> None:
        self.ray.shutdown()


class RayNodeExecutor:
    """Runs tasks on the nodes of one machine kind, one node at a time; a dead node's task moves on."""

    name = NAME

    def __init__(self, cluster: RayCluster, kind: str, nodes: list[str]) -> None:
        self.cluster, self.kind, self.nodes = cluster, kind, list(nodes)

    def run(self, task: Task, *, timed: bool = False, **kw: Any) -> WorkerResult:
        ray = self.cluster.ray
        kw.pop("progress", None)  # a callback of this process: the node cannot call it
        workdir = kw.pop("workdir", None)
        attempts: list[dict[str, Any]] = []
        for node_id in list(self.nodes):
            alive = self.cluster.alive_nodes()
            if node_id not in alive:
                attempts.append({"node_id": node_id, "error": "node not alive"})
                continue
            cpus = float(alive[node_id].get("Resources", {}).get("CPU", 1.0)) if timed else min(
                1.0, float(alive[node_id].get("Resources", {}).get("CPU", 1.0)))
            where = {"executor": NAME, "node_id": node_id, "node_ip": alive[node_id].get("NodeManagerAddress"),
                     "machine_id": self.kind, "cpus": cpus, "address": self.cluster.address}
            ref = self.cluster._run.options(scheduling_strategy=self.cluster._pin(node_id), num_cpus=cpus).remote(
                task, kw, workdir is not None)
            try:
                out = ray.get(ref, timeout=float(kw.get("timeout", 600.0)) + RESULT_GRACE_S)
            except ray.exceptions.GetTimeoutError:
                ray.cancel(ref, force=True)
                return WorkerResult("timeout", None, f"no result from node {node_id} within the timeout "
                                    f"plus {RESULT_GRACE_S:g} s", where={**where, "attempts": attempts})
            except Exception as exc:  # noqa: BLE001 - the node or its Ray worker died, or the node left: try the next one
                attempts.append({"node_id": node_id, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"})
                continue
            if workdir is not None:
                folder = Path(workdir)
                folder.mkdir(parents=True, exist_ok=True)
                for name, data in out["files"].items():
                    _write_atomic(folder / name, data)
            fields = {k: v for k, v in out["result"].items() if k != "where"}
            return WorkerResult(**fields, where={**where, "attempts": attempts})
        reason = "; ".join(f"{a['node_id'][:12]}: {a['error']}" for a in attempts) or "no node"
        return WorkerResult("crash", None, f"lost: no alive node of machine {self.kind} could run it ({reason})",
                            where={"executor": NAME, "machine_id": self.kind, "attempts": attempts})
