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
from suite.runtime.archive import pack, result_files, unpack
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
    for name in ("bench.json", "verify.json"):  # a committed run: what report must read (the page's speed and conformance)
        shutil.copy(REAL_RUN / name, run / name)
    (run / "report" / "plots" / "m-1" / "a.png").write_bytes(b"png")
    archive = pack(run, tmp_path / "out" / "gpu-run.tar.gz")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"m-1/20270101T000000Z/bench.json", "m-1/20270101T000000Z/report/plots/m-1/a.png"} <= names
    assert all(n.startswith("m-1/20270101T000000Z") for n in names)  # `tar -xzf ... -C results` lands in results/m-1/
    files = result_files([archive], tmp_path / "scratch")
    assert [f.relative_to(tmp_path / "scratch" / "archive-0") for f in files] == [
        Path("m-1/20270101T000000Z/bench.json"), Path("m-1/20270101T000000Z/verify.json")]
    assert json.loads(files[0].read_text()) == json.loads((run / "bench.json").read_text())
    assert result_files([tmp_path / "results"], tmp_path / "s2") == [run / "bench.json", run / "verify.json"]  # unpacked
    with pytest.raises(UsageError, match="holds no bench.json, verify.json, probe.json"):
        result_files([run / "report"], tmp_path / "s3")
    proc = subprocess.run([sys.executable, "-m", "suite.cli", "report", str(archive), "--no-plots", "--out", str(tmp_path / "rep")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "rep" / "summary.md").exists()
    assert "certified" in proc.stdout  # the page's conformance answer came from the archive's verify.json


def test_an_archive_cannot_write_outside_its_folder(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.json")
        tar.addfile(info)
    with pytest.raises(UsageError, match="refusing the archive member '../escape.json'"):
        unpack(bad, tmp_path / "x")
    assert not (tmp_path / "escape.json").exists()


# -- the rehearsal (issue 24): the device command on the device's stack, network cut -----------------------
REHEARSAL_ENV = "device-rehearsal"
REHEARSAL_BACKENDS = ("numpy", "jax")
"""What CI's rehearsal runs besides the numba-cuda simulator check: jax proves the one-interpreter mapping (it
names the `jax` environment) and has GPU cases to skip. The GPU machine runs every backend (no --backend)."""
AUDIT_HOOK = '''
import os, sys
_log = os.environ.get("DROPBENCH_AUDIT_LOG")
if _log:
    def _write(line):
        with open(_log, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {line}\\n")
    _write("start " + " ".join(sys.argv[:3]))
    def _hook(event, args):
        if event == "socket.connect" and getattr(args[0], "family", None) in (2, 10):  # AF_INET, AF_INET6
            _write(f"connect {args[1]!r}")
        elif event == "socket.getaddrinfo":
            _write(f"getaddrinfo {args[0]!r}")
        elif event == "import" and args[0] in ("pip", "pip._internal"):
            _write("import pip")
        elif event in ("subprocess.Popen", "os.exec", "os.posix_spawn") and "pip" in " ".join(map(str, args[1] or ()))[:200]:
            _write(f"started {list(args[1] or ())[:4]!r}")
    sys.addaudithook(_hook)
'''
"""A sitecustomize every Python of the run loads (PYTHONPATH): it logs any network connection, name lookup,
import of pip or process that names pip, and one 'start' line per interpreter, which shows the hook was there."""


def _offline(args: list[str], tmp: Path) -> dict:
    """.ci/gpu-run ``args`` on the rehearsal interpreter in a network-less namespace, every Python audited."""
    from suite.runtime.environments import state

    env_state = state(REHEARSAL_ENV)
    if not env_state.usable:
        pytest.skip(f"the rehearsal environment is not built here: {env_state.detail}")
    try:
        cut = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        pytest.skip("unshare is not installed: no network-less namespace for the rehearsal")
    if cut.returncode != 0:
        pytest.skip(f"unshare -n is not permitted here ({cut.stderr.strip()[-200:]}): the rehearsal needs root")
    hook_dir, shims = tmp / "hook", tmp / "bin"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(AUDIT_HOOK)
    shims.mkdir()
    for name in ("pip", "pip3"):  # a pip started from the shell lands here, logs itself and fails
        (shims / name).write_text(f"#!/bin/sh\necho \"$$ started {name} $*\" >> {tmp / 'audit.log'}\nexit 1\n")
        (shims / name).chmod(0o755)
    env = {"PATH": f"{shims}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
           "PYTHON": str(env_state.python), "PYTHONPATH": str(hook_dir), "DROPBENCH_AUDIT_LOG": str(tmp / "audit.log"),
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "DROPBENCH_ENV_DIR": str(tmp / "no-envs")}
    if any((Path(p) / "nvidia-smi").exists() for p in env["PATH"].split(":")):
        pytest.skip("nvidia-smi is on PATH here: this machine may have a GPU, the rehearsal is for one without")
    command = ["unshare", "-n", "bash", str(ROOT / ".ci" / "gpu-run"), *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1500, cwd=tmp, env=env, check=False)
    audit = (tmp / "audit.log").read_text() if (tmp / "audit.log").exists() else ""
    return {"proc": proc, "audit": audit.splitlines(), "tmp": tmp, "python": str(env_state.python)}


def _no_registry(audit: list[str], interpreters: int) -> None:
    """Every interpreter carried the audit hook (its start line); none looked up a name, connected, or ran pip."""
    assert len([line for line in audit if " start " in line]) >= interpreters, audit
    assert not [line for line in audit if " start " not in line], audit


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("rehearsal")
    args = ["--out", str(tmp / "out"), *[arg for name in REHEARSAL_BACKENDS for arg in ("--backend", name)]]
    return {**_offline(args, tmp), "out": tmp / "out"}


def test_dry_run_offline_prints_the_stack_and_runs_no_stage(tmp_path: Path) -> None:
    result = _offline(["--dry-run"], tmp_path)
    proc = result["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "next to the pins of environment device-rehearsal" in proc.stdout
    assert "numba-cuda  " in proc.stdout and "jax (mapped to the one interpreter)" in proc.stdout
    assert "no stage ran" in proc.stderr
    _no_registry(result["audit"], 3)  # the pins, env and its workers


def _unpacked(rehearsal: dict) -> Path:
    target = rehearsal["tmp"] / "unpacked"
    if not target.exists():
        unpack(rehearsal["out"] / "gpu-run.tar.gz", target)
    (run_dir,) = list(target.glob("*/*"))
    return run_dir


def test_rehearsal_exits_1_for_no_gpu_and_prints_the_summary_last(rehearsal: dict) -> None:
    proc = rehearsal["proc"]
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FAILED: no GPU is visible" in proc.stderr.splitlines()[-1]
    summary = (rehearsal["out"] / "summary.md").read_text()
    assert proc.stdout.rstrip().endswith(summary.rstrip())  # the summary is the last thing on stdout


def test_rehearsal_contacted_no_registry(rehearsal: dict) -> None:
    _no_registry(rehearsal["audit"], 8)  # the CLI stages and their workers (verify, probe, bench, env ...)


def test_rehearsal_ran_every_stage_and_skipped_every_gpu_case_with_its_reason(rehearsal: dict) -> None:
    run_dir = _unpacked(rehearsal)
    state = json.loads((run_dir / "run.json").read_text())
    assert set(state["stages"]) == {"verify", "probe", "bench"}
    summary = (run_dir / "summary.md").read_text()
    for title in ("## Conformance (verify)", "## Edge cases (probe)", "## Throughput", "## Installed stack"):
        assert title in summary
    probe = json.loads((run_dir / "probe.json").read_text())
    gpu = [r for r in probe["records"] if r.get("case", "").startswith("cuda:")]
    assert gpu and all(r["outcome"] == "n/a" and r.get("message") for r in gpu), gpu[:3]
    bench = json.loads((run_dir / "bench.json").read_text())
    assert bench["benchmarks"] == [] and bench["skipped"] and all(s.get("reason") for s in bench["skipped"])
    verify = json.loads((run_dir / "verify.json").read_text())
    jax = [b for b in verify["backends"] if b["backend"] == "jax"]
    assert jax and jax[0]["status"] == "ok", jax  # in the given interpreter: no `jax` environment exists here
    stack = json.loads((run_dir / "stack.json").read_text())
    assert {r["package"]: r["status"] for r in stack["rows"]}["numba-cuda"] == "same"


def test_rehearsal_checked_numba_cuda_against_numba_fused_in_the_simulator(rehearsal: dict) -> None:
    records = json.loads((_unpacked(rehearsal) / "verify-cudasim.json").read_text())["records"]
    assert records and all(r["status"] == "pass" for r in records), [r for r in records if r["status"] != "pass"][:3]
    assert {"reference/float32", "reference-grad/float32", "reference/float16"} <= {r["check"] for r in records}
    assert {r["api"] for r in records} == {"numba-cuda:fused.simulated"}


def test_rehearsal_archive_is_one_file_under_16_mib_that_report_reads(rehearsal: dict, tmp_path: Path) -> None:
    archive = rehearsal["out"] / "gpu-run.tar.gz"
    assert 0 < archive.stat().st_size <= 16 * 2**20
    assert sorted(p.name for p in rehearsal["out"].iterdir()) == ["gpu-run.tar.gz", "summary.md"]
    proc = subprocess.run([rehearsal["python"], "-m", "suite.cli", "report", str(archive), "--no-plots", "--out",
                           str(tmp_path / "report")], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_the_device_stack_renders_a_report_with_rows(rehearsal: dict, tmp_path: Path) -> None:
    """The rehearsal's archive has no GPU rows; the committed CPU run has: its report, plots included, on the
    device's pandas/matplotlib/numpy generation (pandas 3, numpy 2)."""
    proc = subprocess.run([rehearsal["python"], "-m", "suite.cli", "report", str(REAL_RUN / "bench.json"), "--out",
                           str(tmp_path / "report")], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert list((tmp_path / "report").rglob("*.png")) and (tmp_path / "report" / "report.html").exists()


@pytest.mark.parametrize("args, message", [(["--bogus"], "unknown argument '--bogus'"), (["--out"], "--out needs a folder"),
                                           (["--backend"], "--backend needs a name")])
def test_gpu_run_misuse_exits_2_naming_the_argument(args: list[str], message: str) -> None:
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "gpu-run"), *args], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
