"""`dropbench run` interrupted, then `dropbench run --resume DIR` (issue 16): finished stages are kept,
the interruption says how to resume, and the resumed folder ends complete."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite.bench.schema import READABLE
from suite.runtime.jsonio import read_result

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _cli(*args: str, cwd: Path) -> list[str]:
    return [sys.executable, "-m", "suite.cli", *args]


def test_interrupted_run_resumes_keeping_its_finished_stages(tmp_path: Path) -> None:
    proc = subprocess.Popen(_cli("run", "--backend", "numpy", "--no-plots", "--out", "out", cwd=tmp_path), cwd=tmp_path,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    def checks_done() -> bool:  # verify and probe run side by side; both files are there before bench starts
        return all(list(tmp_path.glob(f"out/*/*/{name}")) for name in ("verify.json", "probe.json"))

    while not checks_done() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)  # bench numpy is now running (tens of seconds)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (folder,) = tmp_path.glob("out/*/*")
    assert f"dropbench run --resume {Path('out') / folder.relative_to(tmp_path / 'out')}" in err, err
    assert not (folder / "summary.md").exists()
    verify_before = (folder / "verify.json").read_bytes()
    probe_before = (folder / "probe.json").read_bytes()

    resumed = subprocess.run(_cli("run", "--resume", str(folder), cwd=tmp_path), cwd=tmp_path, env=ENV,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "keeping verify, probe" in resumed.stdout
    assert (folder / "verify.json").read_bytes() == verify_before  # kept, not rerun
    assert (folder / "probe.json").read_bytes() == probe_before
    bench = read_result(folder / "bench.json", kind="bench", schemas=READABLE)
    assert [b["backend"] for b in bench["backends"]] == ["numpy"]  # the run's own --backend, not every backend
    summary = (folder / "summary.md").read_text(encoding="utf-8")
    assert "## Conformance (verify)" in summary and "## Throughput" in summary
    page = (folder / "report" / "report.html").read_text(encoding="utf-8")  # the one page, from all three files
    assert "class='conf'" in page and "class='grid'" in page and "-speed.png" not in page  # --no-plots: no chart
    assert set(read_result(folder / "run.json", kind="run-state")["stages"]) == {"verify", "probe", "bench"}


def test_resume_refuses_a_folder_that_is_not_a_run_and_changed_options(tmp_path: Path) -> None:
    bad = subprocess.run(_cli("run", "--resume", str(tmp_path), cwd=tmp_path), cwd=tmp_path, env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "has no run.json" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    (tmp_path / "run.json").write_text('{"schema": 1, "kind": "run-state", "options": {}, "stages": {}}')
    changed = subprocess.run(_cli("run", "--resume", str(tmp_path), "--backend", "torch", cwd=tmp_path), cwd=tmp_path,
                             env=ENV, capture_output=True, text=True, timeout=120)
    assert changed.returncode == 2 and "drop --backend" in changed.stderr, changed.stderr


def _processes_marked(mark: str) -> list[int]:
    """Live processes whose environment carries ``mark`` (workers inherit the run's environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if mark.encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads process environments from /proc")
def test_ctrl_c_during_the_concurrent_checks_kills_every_worker_and_keeps_nothing_half_written(tmp_path: Path) -> None:
    """verify and probe run --jobs workers at a time in threads: Ctrl-C must not leave one running."""
    mark = f"DROPBENCH_TEST_MARK_{os.getpid()}_{time.monotonic_ns()}"
    env = {**ENV, mark: "1"}
    proc = subprocess.Popen(_cli("run", "--backend", "numpy", "--backend", "torch", "--jobs", "2", "--skip", "bench",
                                 "--out", "out", cwd=tmp_path), cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(_processes_marked(mark)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the run itself and at least two workers
    assert proc.poll() is None, "the checks ended before they could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    time.sleep(0.5)
    assert _processes_marked(mark) == [], "workers outlived the interrupted run"
    (folder,) = tmp_path.glob("out/*/*")
    state = read_result(folder / "run.json", kind="run-state")
    for stage in ("verify", "probe"):
        assert (stage in state["stages"]) == (folder / f"{stage}.json").exists()  # a stage is kept whole or not at all


def test_concurrent_checks_keep_the_backend_order_and_record_stage_times(tmp_path: Path) -> None:
    done = subprocess.run(_cli("run", "--backend", "numba", "--backend", "numpy", "--jobs", "2", "--skip", "bench",
                               "--out", "out", cwd=tmp_path), cwd=tmp_path, env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    (folder,) = tmp_path.glob("out/*/*")
    verify = read_result(folder / "verify.json", kind="verify")
    probe = read_result(folder / "probe.json", kind="probe")
    assert [b["backend"] for b in verify["backends"]] == ["numba", "numpy"]  # as asked, whichever finished first
    assert [b["backend"] for b in probe["backends"]] == ["numba", "numpy"]
    apis = list(dict.fromkeys(r["api"] for r in probe["records"]))
    assert apis[0].startswith("numba:") and apis[-1].startswith("numpy:")
    stages = read_result(folder / "run.json", kind="run-state")["stages"]
    assert all(stages[s]["seconds"] > 0 for s in ("verify", "probe"))
    summary = (folder / "summary.md").read_text(encoding="utf-8")
    assert "verify and probe ran 2 workers at a time" in summary, summary
    assert "report/report.html" in summary  # --skip bench: the page still shows conformance and the grid
    page = (folder / "report" / "report.html").read_text(encoding="utf-8")
    assert "class='conf'" in page and "class='grid'" in page and "No bench results among the inputs" in page
