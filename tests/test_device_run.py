"""The device run: `dropbench run --device cuda` fails loudly without a GPU, and .ci/gpu-run is the README's command."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from suite.commands import run as run_command
from suite.runtime.archive import bench_files, pack, unpack
from suite.runtime.jsonio import atomic_write_json
from suite.runtime.loader import UsageError

ROOT = Path(__file__).resolve().parent.parent
REAL_RUN = ROOT / "results" / "intel-r-xeon-r-processor-2c-134af65a" / "20261201T235954Z"


def _bench_file(path: Path, devices: list[str]) -> Path:
    atomic_write_json(path, {"schema": 1, "kind": "bench", "machine_id": "m", "machine_facts": {}, "datetime": "",
                             "benchmarks": [{"extra_info": {"device": d}, "stats": {}} for d in devices]})
    return path


def test_a_gpu_run_without_a_gpu_is_a_failure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(run_command, "machine_facts", lambda: {"gpu": ""})
    assert "no GPU is visible" in run_command.gpu_problem("cuda", None)
    assert run_command.gpu_problem("cpu", None) is None  # a CPU run never asks


def test_a_visible_gpu_must_also_have_timed_rows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """nvidia-smi sees a GPU but every GPU case was skipped (e.g. the CPU build of torch): still a failure."""
    monkeypatch.setattr(run_command, "machine_facts", lambda: {"gpu": "NVIDIA H200"})
    assert "no benchmark ran on it" in run_command.gpu_problem("cuda", _bench_file(tmp_path / "a.json", ["cpu"]))
    assert run_command.gpu_problem("cuda", _bench_file(tmp_path / "b.json", ["cpu", "cuda:0"])) is None


def test_dry_run_of_the_device_command_exits_1_and_says_why(tmp_path: Path) -> None:
    """No nvidia-smi on PATH: every stage still runs and records its skips, then exit 1 with the reason."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    if any((Path(p) / "nvidia-smi").exists() for p in env["PATH"].split(":")):
        pytest.skip("nvidia-smi is on PATH here: this machine may have a GPU")
    proc = subprocess.run([sys.executable, "-m", "suite.cli", "run", "--device", "cuda", "--backend", "numpy",
                           "--skip", "verify", "--skip", "probe", "--no-plots", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env, check=False)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "FAILED: no GPU is visible" in proc.stderr
    (run_dir,) = list(tmp_path.glob("*/*"))
    assert "**FAILED: a GPU was asked for" in (run_dir / "summary.md").read_text()
    bench = json.loads((run_dir / "bench.json").read_text())
    assert bench["benchmarks"] == [] and bench["skipped"], bench.get("skipped")  # skipped, each with its reason
    assert all(s.get("reason") for s in bench["skipped"])


def test_the_readme_names_the_device_command_and_the_script_runs_it() -> None:
    script = (ROOT / ".ci" / "gpu-run").read_text()
    assert os.access(ROOT / ".ci" / "gpu-run", os.X_OK)
    assert "suite.cli run --device cuda" in script and "DROPBENCH_ONE_INTERPRETER=1" in script
    code = [line.split("#", 1)[0] for line in script.splitlines()]
    assert not [line for line in code if re.search(r"\bpip\b(?!_)", line) and "PIP_" not in line], "the device run starts pip"
    readme = (ROOT / "README.md").read_text()
    gpu = readme.split("\n## GPU\n", 1)[1].split("\n## ", 1)[0]
    assert "PYTHON=" in gpu and ".ci/gpu-run --out" in gpu and "gpu-run.tar.gz" in gpu
    proc = subprocess.run(["bash", "-n", str(ROOT / ".ci" / "gpu-run")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_the_archive_holds_machine_and_stamp_and_report_reads_it_packed_or_not(tmp_path: Path) -> None:
    run = tmp_path / "results" / "m-1" / "20270101T000000Z"
    (run / "report" / "plots" / "m-1").mkdir(parents=True)
    shutil.copy(REAL_RUN / "bench.json", run / "bench.json")  # a committed run: what report must read
    (run / "report" / "plots" / "m-1" / "a.png").write_bytes(b"png")
    archive = pack(run, tmp_path / "out" / "gpu-run.tar.gz")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"m-1/20270101T000000Z/bench.json", "m-1/20270101T000000Z/report/plots/m-1/a.png"} <= names
    assert all(n.startswith("m-1/20270101T000000Z") for n in names)  # `tar -xzf ... -C results` lands in results/m-1/
    files = bench_files([archive], tmp_path / "scratch")
    assert [f.relative_to(tmp_path / "scratch" / "archive-0") for f in files] == [Path("m-1/20270101T000000Z/bench.json")]
    assert json.loads(files[0].read_text()) == json.loads((run / "bench.json").read_text())
    assert bench_files([tmp_path / "results"], tmp_path / "s2") == [run / "bench.json"]  # the unpacked folder
    with pytest.raises(UsageError, match="holds no bench.json"):
        bench_files([run / "report"], tmp_path / "s3")
    proc = subprocess.run([sys.executable, "-m", "suite.cli", "report", str(archive), "--no-plots", "--out", str(tmp_path / "rep")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "rep" / "summary.md").exists()


def test_an_archive_cannot_write_outside_its_folder(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.json")
        tar.addfile(info)
    with pytest.raises(UsageError, match="refusing the archive member '../escape.json'"):
        unpack(bad, tmp_path / "x")
    assert not (tmp_path / "escape.json").exists()
