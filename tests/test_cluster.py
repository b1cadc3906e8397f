"""`--executor ray` on a real Ray cluster of several nodes on this machine, every one bound to 127.0.0.1.

The cluster is started by the fixture with `ray start` and stopped by it (only the processes it
started: every one carries a marker variable in its environment, found through /proc and killed by
pid), also when a test fails. Each node names its machine with DROPBENCH_MACHINE_ID, since nodes on
one host share their hardware facts. Ray 2.60 rewrites a loopback ``--node-ip-address`` to the host's
routable address on Linux; the head is started with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (which keeps
127.0.0.1) and the other nodes through a three-line shim that keeps the address as given.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "DROPBENCH_TEST_CLUSTER"
TOY = "tests.cluster_toy:StallsOnFirstNode"
KEEP_LOOPBACK = ("import sys; import ray._private.services as s; s.resolve_ip_for_localhost = lambda host: host; "
                 "from ray.scripts.scripts import main; sys.argv = ['ray', *sys.argv[1:]]; main()")
NODE_ARGS = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=100000000",
             "--disable-usage-stats"]

pytestmark = [pytest.mark.skipif(not Path("/proc").exists(), reason="finds the cluster's processes in /proc")]
ray = pytest.importorskip("ray", reason='the cluster tests need Ray: pip install -e ".[ray]"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environ(pid: str) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class Cluster:
    """The nodes this test module started; processes found by the marker in their environment."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
        self.toy_dir = Path(self.temp) / "toy"
        self.toy_dir.mkdir()

    def env(self, node: str, machine: str) -> dict[str, str]:
        return {**os.environ, MARKER: self.token, "DROPBENCH_TEST_NODE": node, "DROPBENCH_MACHINE_ID": machine,
                "DROPBENCH_TOY_DIR": str(self.toy_dir), "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}

    def start_head(self, node: str, machine: str, resources: dict[str, float], labels: str = "") -> None:
        env = {**self.env(node, machine), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        cmd = [sys.executable, "-c", KEEP_LOOPBACK, "start", "--head", f"--port={self.port}",
               "--include-dashboard=false", f"--temp-dir={self.temp}", f"--resources={json.dumps(resources)}",
               f"--labels={labels}", *NODE_ARGS]
        subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, timeout=180)

    def join(self, node: str, machine: str, resources: dict[str, float], labels: str = "") -> None:
        cmd = [sys.executable, "-c", KEEP_LOOPBACK, "start", f"--address={self.address}",
               f"--resources={json.dumps(resources)}", f"--labels={labels}", *NODE_ARGS]
        subprocess.run(cmd, env=self.env(node, machine), cwd=ROOT, check=True, capture_output=True, timeout=180)

    def pids(self, node: str | None = None, comm: str | None = None) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and entry.name != str(os.getpid()):
                env = _environ(entry.name)
                if env.get(MARKER) == self.token and (node is None or env.get("DROPBENCH_TEST_NODE") == node) \
                        and (comm is None or _comm(entry.name) == comm):
                    found.append(int(entry.name))
        return found

    def workers_of(self, node: str) -> list[int]:
        """The dropbench worker processes (`python -m suite.runtime.worker`) still alive on ``node``."""
        alive = []
        for pid in self.pids(node):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if b"suite.runtime.worker" in cmdline and state != "Z":
                alive.append(pid)
        return alive

    def kill(self, node: str | None = None, comm: str | None = None) -> int:
        pids = self.pids(node, comm)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def stop(self) -> None:
        for _ in range(5):  # a dying raylet may still start a worker: sweep until none is left
            if not self.kill():
                break
            time.sleep(0.5)
        shutil.rmtree(self.temp, ignore_errors=True)

    def listening_addresses(self) -> set[str]:
        """Local addresses of the LISTEN sockets our processes hold (from /proc/net/tcp{,6})."""
        inodes = set()
        for pid in self.pids():
            try:
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
            except OSError:
                continue
        found = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:
                    found.add(cols[1].rsplit(":", 1)[0])
        return found

    def dropbench(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
               "TF_CPP_MIN_LOG_LEVEL": "3", "DROPBENCH_TOY_DIR": str(self.toy_dir)}
        env.pop("DROPBENCH_MACHINE_ID", None)
        return subprocess.run([sys.executable, "-m", "suite.cli", *args, "--executor", "ray", "--address", self.address],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}
"""127.0.0.1 as /proc/net/tcp writes it, the same as an IPv4-mapped IPv6 address, and ::1."""


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    try:
        c.start_head("a", "node-a", {"kind_a": 1}, labels="kind=cpu-a")
        c.join("b", "node-b", {"kind_b": 1}, labels="kind=cpu-b")
        yield c
    finally:
        c.stop()


def test_a_run_covers_every_node_and_says_which_node_produced_each_result(cluster, tmp_path) -> None:
    """Bugs caught: work sent only to the head; results of two nodes written to one file; no provenance;
    a node bound to an address other than 127.0.0.1; --nodes ignored."""
    assert cluster.listening_addresses() and cluster.listening_addresses() <= LOOPBACK
    out = cluster.dropbench("verify", "--backend", "numpy", "--json", str(tmp_path / "verify.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    nodes = {}
    for machine in ("node-a", "node-b"):
        payload = json.loads((tmp_path / f"verify.{machine}.json").read_text())
        (entry,) = payload["backends"]
        assert entry["status"] == "ok" and entry["ran_on"]["executor"] == "ray"
        assert entry["ran_on"]["machine_id"] == machine and entry["ran_on"]["node_ip"] == "127.0.0.1"
        assert any(r["status"] == "pass" for r in payload["records"])
        nodes[machine] = entry["ran_on"]["node_id"]
    assert len(set(nodes.values())) == 2
    only_b = cluster.dropbench("verify", "--backend", "numpy", "--nodes", "kind_b", "--json", str(tmp_path / "b.json"))
    assert only_b.returncode == 0, only_b.stdout + only_b.stderr
    # one machine kind selected: the path is written as named (issue 27), and it holds node-b's run
    assert not list(tmp_path.glob("b.*.json"))
    assert json.loads((tmp_path / "b.json").read_text())["backends"][0]["ran_on"]["machine_id"] == "node-b"
    only_a = cluster.dropbench("verify", "--backend", "numpy", "--nodes", "kind=cpu-a", "--json", str(tmp_path / "a.json"))
    assert only_a.returncode == 0, only_a.stdout + only_a.stderr
    assert not list(tmp_path.glob("a.*.json"))
    assert json.loads((tmp_path / "a.json").read_text())["backends"][0]["ran_on"]["machine_id"] == "node-a"
    nobody = cluster.dropbench("verify", "--backend", "numpy", "--nodes", "kind=h200")
    assert nobody.returncode == 2 and "no alive Ray node" in nobody.stderr


@pytest.mark.slow
def test_a_killed_node_costs_only_its_unit_which_moves_to_a_node_of_its_kind(cluster, tmp_path) -> None:
    """Bugs caught: a dead node's unit silently dropped, or the whole run lost with it; a unit retried on a
    node of another kind; no reason recorded when no node of the kind is left."""
    cluster.join("c1", "node-c", {"kind_c": 1})
    cluster.join("c2", "node-c", {"kind_c": 1})
    first = cluster.toy_dir / "first"

    def run_and_kill(name: str) -> tuple[subprocess.CompletedProcess, str]:
        first.unlink(missing_ok=True)
        result: list[subprocess.CompletedProcess] = []
        thread = threading.Thread(target=lambda: result.append(cluster.dropbench(
            "verify", "--backend", "numpy", "--backend", TOY, "--nodes", "kind_c", "--json", str(tmp_path / name))))
        thread.start()
        deadline = time.monotonic() + 300
        while not first.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.exists(), "the toy backend never started"
        victim = first.read_text()
        assert cluster.kill(victim, comm="raylet") == 1
        thread.join(timeout=600)
        deadline = time.monotonic() + 30
        while cluster.workers_of(victim) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert cluster.workers_of(victim) == [], "the killed node's dropbench worker runs on"
        return result[0], victim

    out, _ = run_and_kill("retried.json")
    assert out.returncode == 0, out.stdout + out.stderr
    payload = json.loads((tmp_path / "retried.node-c.json").read_text())
    by_ref = {b["ref"]: b for b in payload["backends"]}
    assert by_ref["numpy"]["status"] == "ok" and any(r["status"] == "pass" for r in payload["records"])
    moved = by_ref[TOY]
    assert moved["status"] == "ok", moved
    assert moved["ran_on"]["machine_id"] == "node-c" and len(moved["ran_on"]["attempts"]) == 1
    assert moved["ran_on"]["node_id"] != moved["ran_on"]["attempts"][0]["node_id"]
    assert not list(tmp_path.glob("retried.node-a*")) and not list(tmp_path.glob("retried.node-b*"))

    out, _ = run_and_kill("lost.json")  # the last node of kind c dies: nothing to retry on
    assert out.returncode == 1, out.stdout + out.stderr
    payload = json.loads((tmp_path / "lost.node-c.json").read_text())
    by_ref = {b["ref"]: b for b in payload["backends"]}
    assert by_ref["numpy"]["status"] == "ok"
    assert by_ref[TOY]["status"] == "crash" and by_ref[TOY]["reason"].startswith("lost: ")
    assert any(r["api"] == f"{TOY}:*" and r["status"] == "crash" for r in payload["records"])
