"""The executor seam without a cluster: selection, per-machine fan-out, provenance, the missing extra."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from suite import cli
from suite.commands.cluster import per_machine_path
from suite.runtime import executors
from suite.runtime.executors import LocalExecutor, Target, node_matches, parse_selector
from suite.runtime.loader import BackendRef, UsageError
from suite.runtime.machine import (
    machine_facts,
    machine_id,
    reset_running_on,
    running_on,
)

EXAMPLE = "backends.example_plugin:ExampleDropout"


def test_executor_ray_without_ray_exits_2_with_the_install_command(monkeypatch, capsys) -> None:
    """Bug caught: a traceback, or a silent fall-back to the local executor, when the extra is missing."""
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert cli.main(["verify", "--backend", "numpy", "--executor", "ray"]) == 2
    assert 'pip install -e ".[ray]"' in capsys.readouterr().err


def test_cluster_options_without_a_cluster_executor_are_refused(capsys) -> None:
    assert cli.main(["verify", "--backend", "numpy", "--nodes", "kind=h200"]) == 2
    assert "--executor" in capsys.readouterr().err
    assert cli.main(["bench", "--backend", "numpy", "--executor", "nowhere"]) == 2
    assert "unknown executor 'nowhere'" in capsys.readouterr().err


def test_node_selectors() -> None:
    """Bugs caught: KEY=VALUE compared against resources, a zero resource counted as present, one of
    several selectors enough."""
    labels, resources = {"kind": "h200"}, {"CPU": 8.0, "gpu_x": 1.0, "spare": 0.0}
    assert node_matches(labels, resources, [])
    assert node_matches(labels, resources, ["kind=h200", "gpu_x"])
    assert not node_matches(labels, resources, ["kind=a100"])
    assert not node_matches(labels, resources, ["kind=h200", "spare"])
    assert not node_matches({}, {"kind": 1.0}, ["kind=1"])
    for bad in ("=x", "kind=", ""):
        with pytest.raises(UsageError, match="bad --nodes selector"):
            parse_selector(bad)


def test_per_machine_paths_keep_folder_and_suffix(tmp_path) -> None:
    assert per_machine_path(tmp_path / "v.json", "m-1") == tmp_path / "v.m-1.json"
    assert per_machine_path(tmp_path / "v.json", "m-1", kinds=3) == tmp_path / "v.m-1.json"
    assert per_machine_path(None, "m-1") is None


def test_a_cluster_of_one_machine_kind_writes_the_path_as_named(tmp_path) -> None:
    """Issue 27: `bench --executor ray --json b.json` on one kind of machine wrote b.<id>.json; scripts read b.json."""
    assert per_machine_path(tmp_path / "b.json", "m-1", kinds=1) == tmp_path / "b.json"
    assert per_machine_path(None, "m-1", kinds=1) is None


def test_run_targets_names_paths_by_the_number_of_machine_kinds(tmp_path) -> None:
    """The wrapper itself (no Ray): one target keeps the named path, two get one suffixed path each."""
    from suite.commands.cluster import _run_targets

    seen: list[Path] = []
    args = argparse.Namespace(json=str(tmp_path / "b.json"))
    body = lambda own: seen.append(Path(own.json)) or 0  # noqa: E731
    make = lambda mid: Target(machine_id=mid, facts={}, nodes=["n"], executor=LocalExecutor())  # noqa: E731
    assert _run_targets(args, body, [make("m-1")], ["json"]) == 0
    assert seen == [tmp_path / "b.json"]
    seen.clear()
    assert _run_targets(args, body, [make("m-1"), make("m-2")], ["json"]) == 0
    assert sorted(seen) == [tmp_path / "b.m-1.json", tmp_path / "b.m-2.json"]


def test_machine_name_and_running_on_stay_in_their_context(monkeypatch) -> None:
    """Bugs caught: a node's facts leaking into another thread or outliving the block; the name ignored."""
    monkeypatch.setenv("DROPBENCH_MACHINE_ID", "rack 4/node 2")
    assert machine_id() == "rack-4-node-2"
    monkeypatch.delenv("DROPBENCH_MACHINE_ID")
    here = machine_id()
    token = running_on({"name": "elsewhere", "cpu": "x"})
    seen: list[str] = []
    thread = threading.Thread(target=lambda: seen.append(machine_id()))
    thread.start()
    thread.join()
    assert machine_id() == "elsewhere" and machine_facts()["cpu"] == "x" and seen == [here]
    reset_running_on(token)
    assert machine_id() == here


def test_local_runs_record_their_executor(tmp_path) -> None:
    from suite.verify.runner import run_verify

    report = run_verify([BackendRef("example", EXAMPLE)])
    assert [b["ran_on"] for b in report.backends] == [{"executor": "local"}]


class _Tagged(LocalExecutor):
    """Runs locally but says it ran on ``machine``; counts its tasks."""

    def __init__(self, machine: str) -> None:
        self.machine, self.tasks = machine, 0

    def run(self, task, *, timed=False, **kw):
        self.tasks += 1
        result = super().run(task, **kw)
        return dataclasses.replace(result, where={"executor": "fake", "machine_id": self.machine})


class FakeCluster:
    """Two machine kinds, both this machine: exercises the fan-out without an engine."""

    name = "fake"
    opened: ClassVar[list[FakeCluster]] = []

    def __init__(self, address, selectors) -> None:
        self.closed = False
        self.kinds = [Target(m, {"name": m}, [f"{m}-node"], _Tagged(m)) for m in ("m1", "m2")]
        FakeCluster.opened.append(self)

    def targets(self):
        return self.kinds

    def close(self) -> None:
        self.closed = True


def test_a_cluster_runs_the_command_once_per_machine_kind_into_its_own_file(tmp_path, capsys) -> None:
    """Bugs caught: every target writing the one --json file; tasks of one target sent to another's
    executor (the current executor leaking between threads); the cluster left open."""
    FakeCluster.opened.clear()
    code = cli.main(["verify", "--backend", EXAMPLE, "--executor", f"{__name__}:FakeCluster",
                     "--json", str(tmp_path / "v.json")])
    assert code == 0, capsys.readouterr()
    (cluster,) = FakeCluster.opened
    assert cluster.closed and [t.executor.tasks for t in cluster.kinds] == [1, 1]
    assert not (tmp_path / "v.json").exists()
    for machine in ("m1", "m2"):
        payload = json.loads((tmp_path / f"v.{machine}.json").read_text())
        assert [b["ran_on"] for b in payload["backends"]] == [{"executor": "fake", "machine_id": machine}]
    out = capsys.readouterr().out
    assert "== machine m1 (1 node(s)) ==" in out and "== machine m2 (1 node(s)) ==" in out


def test_dispatch_goes_to_the_local_executor_by_default() -> None:
    assert isinstance(executors.current(), LocalExecutor)


def test_bench_on_a_cluster_keys_each_file_by_its_machine_and_resumes_it(tmp_path, capsys) -> None:
    """Bugs caught: bench results stamped with the driver's machine id instead of the target's (report
    would pool machines); --resume refusing, or rerunning, each machine's own file."""
    args = ["bench", "--backend", EXAMPLE, "--quick", "--sizes", "2^12", "--executor", f"{__name__}:FakeCluster",
            "--json", str(tmp_path / "b.json")]
    FakeCluster.opened.clear()
    assert cli.main(args) == 0, capsys.readouterr()
    for machine in ("m1", "m2"):
        payload = json.loads((tmp_path / f"b.{machine}.json").read_text())
        assert payload["machine_id"] == machine and payload["backends"][0]["ran_on"]["machine_id"] == machine
    assert cli.main([*args, "--resume"]) == 0, capsys.readouterr()
    assert [t.executor.tasks for t in FakeCluster.opened[-1].kinds] == [0, 0]
