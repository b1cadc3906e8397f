"""`dropbench report`: merged tables, baseline ratios from the right worker, machines kept apart, bad files.

Synthetic runs (tests/fixtures/synthetic_bench.py) with noise=0 have exactly known medians, so the
numbers in the tables are checked against the timing model, not against themselves.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

pytest.importorskip("pandas", reason="report needs pandas (the `all` extra)")

from suite.report.build import build_report, format_time, load_run, results_frame, size_label  # noqa: E402
from suite.runtime.jsonio import ResultFileError  # noqa: E402
from tests.fixtures.synthetic_bench import API_COST, bench_payload, benchmark, model_seconds, synthetic_run, write_run  # noqa: E402

SIZES = (4096, 65536, 1 << 20)


def dropbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite.cli", *args], capture_output=True, text=True, timeout=300)


def _frame(*payloads, tmp_path):
    runs = [load_run(write_run(tmp_path / f"run{i}.json", p)) for i, p in enumerate(payloads)]
    return results_frame(runs)


def _row(df, api, direction="forward", numel=1 << 20, mode="eager", **where):
    sel = (df["api"] == api) & (df["direction"] == direction) & (df["numel"] == numel) & (df["mode"] == mode)
    for k, v in where.items():
        sel &= df[k] == v
    hit = df[sel]
    assert len(hit) == 1, hit
    return hit.iloc[0]


def test_throughput_and_baseline_ratios_follow_the_model(tmp_path) -> None:
    df, notes = _frame(synthetic_run(sizes=SIZES, noise=0.0), tmp_path=tmp_path)
    assert notes == []
    n = 1 << 20
    t = model_seconds(API_COST[("torch", "torch:F.dropout", "eager")], n)
    r = _row(df, "torch:F.dropout")
    assert r.median_s == pytest.approx(t)
    assert r.gbps == pytest.approx(2 * n * 4 / t / 1e9)  # bytes = read x + write y, float32
    assert r.elems_per_s == pytest.approx(n / t)
    assert r.x_copy == pytest.approx(t / model_seconds(1.0, n))
    assert r.x_rng32 == pytest.approx(t / model_seconds(2.0, n))
    assert r.copy_from == "same worker" and r.rng32_from == "same worker"
    # forward+backward is compared with the same (forward-only) baselines
    fb = _row(df, "torch:F.dropout", direction="forward_backward")
    assert fb.x_copy == pytest.approx(model_seconds(3.0 * 2.5, n) / model_seconds(1.0, n))


def test_ratios_use_the_baseline_of_the_same_worker_process(tmp_path) -> None:
    """The torch process timed its baselines 2x slower (e.g. fewer threads): torch rows must be divided
    by THAT baseline, the numpy row by numpy's."""
    df, _ = _frame(synthetic_run(sizes=SIZES, noise=0.0, worker_skew={"torch": 2.0}), tmp_path=tmp_path)
    n = 1 << 20
    torch_row, numpy_row = _row(df, "torch:F.dropout"), _row(df, "numpy:reference")
    assert torch_row.x_copy == pytest.approx(model_seconds(3.0, n) / (2.0 * model_seconds(1.0, n)))
    assert numpy_row.x_copy == pytest.approx(model_seconds(6.0, n) / model_seconds(1.0, n))


def test_missing_same_worker_baseline_falls_back_to_median_over_workers_and_says_so(tmp_path) -> None:
    payload = synthetic_run(sizes=SIZES, noise=0.0, drop_baseline_for=("torch",), worker_skew={"numpy": 3.0})
    df, _ = _frame(payload, tmp_path=tmp_path)
    r = _row(df, "torch:F.dropout")
    n = 1 << 20
    assert r.copy_from == "median of 2 workers"
    # median of numpy's (3x) and tensorflow's (1x) copy times = their mean for two values
    assert r.x_copy == pytest.approx(model_seconds(3.0, n) / (2.0 * model_seconds(1.0, n)))
    files = build_report([write_run(tmp_path / "r.json", payload)], tmp_path / "out", plots=False)
    text = (tmp_path / "out" / "baselines.md").read_text()
    assert "rows median of 2 workers" in text and "rows same worker" in text
    assert files.summary_md.exists()


def test_tf_function_rows_are_distinct_from_eager(tmp_path) -> None:
    df, _ = _frame(synthetic_run(sizes=SIZES, noise=0.0), tmp_path=tmp_path)
    labels = set(df[df["api"] == "tensorflow:tf.nn.dropout"]["label"])
    assert labels == {"tensorflow:tf.nn.dropout", "tensorflow:tf.nn.dropout [tf.function]"}
    files = build_report([write_run(tmp_path / "r.json", synthetic_run(sizes=SIZES))], tmp_path / "out", plots=False)
    summary = files.summary_md.read_text()
    assert "| tensorflow:tf.nn.dropout [tf.function] |" in summary and "| tensorflow:tf.nn.dropout |" in summary


def test_summary_at_largest_common_size_with_model_ratios(tmp_path) -> None:
    payload = synthetic_run(sizes=SIZES, noise=0.0)
    # one API lacks the largest size: the summary must step down to 64Ki for everyone
    payload["benchmarks"] = [b for b in payload["benchmarks"]
                             if not (b["extra_info"]["api"] == "torch:nn.Dropout" and b["extra_info"]["numel"] == 1 << 20)]
    files = build_report([write_run(tmp_path / "r.json", payload)], tmp_path / "out", plots=False)
    summary = files.summary_md.read_text()
    assert "n = 65,536 elements (64Ki)" in summary
    n = 65536
    line = next(l for l in summary.splitlines() if l.startswith("| numpy:reference |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == f"{model_seconds(6.0, n) / model_seconds(1.0, n):.2f}×"
    assert cells[3] == f"{model_seconds(6.0, n) / model_seconds(2.0, n):.2f}×"
    assert cells[6] == f"{model_seconds(15.0, n) / model_seconds(1.0, n):.2f}×"
    assert "mxnet did not run (unavailable: synthetic: not installed)" in summary


def test_per_device_direction_tables_and_ratio_to_fastest(tmp_path) -> None:
    files = build_report([write_run(tmp_path / "r.json", synthetic_run(sizes=SIZES, noise=0.0))], tmp_path / "out",
                         plots=False)
    md = (tmp_path / "out" / "tables" / "synthetic-cpu-2c-00000000" / "cpu-forward.md").read_text()
    assert "| dtype | API | 4Ki | 64Ki | 1Mi |" in md
    fastest = next(l for l in md.splitlines() if "| torch:F.dropout |" in l)
    assert fastest.count("· fastest |") == 3  # torch:F.dropout is the fastest API at every size, and marked
    assert md.count("fastest |") == 3  # nobody else is marked
    order = [l.split("|")[2].strip() for l in md.splitlines() if l.startswith("| float32 |")]
    api_rows = [a for a in order if not a.startswith("baseline:")]
    assert order[len(api_rows):] == [a for a in order if a.startswith("baseline:")]  # baselines last
    with open(tmp_path / "out" / "tables" / "synthetic-cpu-2c-00000000" / "cpu-forward.csv", newline="") as handle:
        rows = {r["api"]: r for r in csv.DictReader(handle)}
    n = 1 << 20
    assert float(rows["numpy:reference"][f"{n} x_fastest"]) == pytest.approx(model_seconds(6.0, n) / model_seconds(3.0, n))
    assert float(rows["numpy:reference"][f"{n} GB/s"]) == pytest.approx(2 * n * 4 / model_seconds(6.0, n) / 1e9)
    assert len(files.tables) == 6  # md + csv for forward and forward_backward, baselines md + csv
    # the markdown cell: GB/s, elements/s, ratio to fastest (numpy:reference 6/3 of torch's time at 1Mi)
    cell = next(l for l in md.splitlines() if "| numpy:reference |" in l).strip("|").split("|")[-1].strip()
    t = model_seconds(6.0, n)
    assert cell == (f"{format_time(t)} · {2 * n * 4 / t / 1e9:.3g} GB/s, {n / t / 1e6:.3g} Mel/s · "
                    f"{t / model_seconds(3.0, n):.2f}×")
    # rows fastest first at the largest size (from the CSV's own times, not the model)
    largest = [float(rows[a][f"{n} median_s"]) for a in api_rows]
    assert largest == sorted(largest) and len(set(largest)) > 2


def test_machines_are_kept_apart(tmp_path) -> None:
    fast = synthetic_run(sizes=SIZES, noise=0.0, machine_id="fast-box-8c-aaaaaaaa", cpu="Fast")
    slow = synthetic_run(sizes=SIZES, noise=0.0, machine_id="slow-box-2c-bbbbbbbb", cpu="Slow",
                         slowdown={api: 2.0 for _, api, _ in API_COST})
    paths = [write_run(tmp_path / "fast.json", fast), write_run(tmp_path / "slow.json", slow)]
    files = build_report(paths, tmp_path / "out", plots=False)
    for machine in ("fast-box-8c-aaaaaaaa", "slow-box-2c-bbbbbbbb"):
        assert (tmp_path / "out" / "tables" / machine / "cpu-forward.md").exists()
    summary = files.summary_md.read_text()
    assert "## fast-box-8c-aaaaaaaa · cpu · float32" in summary and "## slow-box-2c-bbbbbbbb · cpu · float32" in summary
    df, _ = _frame(fast, slow, tmp_path=tmp_path)
    n = 1 << 20
    assert _row(df, "torch:F.dropout", machine="slow-box-2c-bbbbbbbb").median_s == pytest.approx(2 * model_seconds(3.0, n))
    assert _row(df, "torch:F.dropout", machine="fast-box-8c-aaaaaaaa").median_s == pytest.approx(model_seconds(3.0, n))
    # the slow machine's APIs are divided by ITS baselines (not slowed: copy is the same) -> 2x the ratio
    assert _row(df, "torch:F.dropout", machine="slow-box-2c-bbbbbbbb").x_copy == pytest.approx(
        2 * _row(df, "torch:F.dropout", machine="fast-box-8c-aaaaaaaa").x_copy)


def test_later_run_of_the_same_machine_replaces_repeated_benchmarks(tmp_path) -> None:
    first = synthetic_run(sizes=SIZES, noise=0.0)
    second = synthetic_run(sizes=SIZES, noise=0.0, slowdown={"torch:F.dropout": 1.5})
    second["datetime"] = "2025-02-01T00:00:00"
    df, notes = _frame(second, first, tmp_path=tmp_path)  # order on the command line does not matter
    assert any("replaced by the later result" in note for note in notes)
    assert _row(df, "torch:F.dropout").median_s == pytest.approx(1.5 * model_seconds(3.0, 1 << 20))


def test_runs_without_rounds_data_and_without_results(tmp_path) -> None:
    nodata = bench_payload([benchmark("torch:F.dropout", "forward", 4096, 1e-5, worker="torch", data=False),
                            benchmark("baseline:copy", "forward", 4096, 5e-6, worker="torch", data=False)])
    files = build_report([write_run(tmp_path / "a.json", nodata)], tmp_path / "out", plots=False)
    assert "| torch:F.dropout |" in files.summary_md.read_text()
    empty = bench_payload([], skipped=[{"id": f"torch:F.dropout-{n}", "status": "skipped", "kind": "no-device",
                                        "reason": "no CUDA device", "backend": "torch", "worker": "torch"}
                                       for n in (1, 2, 3)])
    empty["run"]["complete"] = False
    files = build_report([write_run(tmp_path / "e.json", empty)], tmp_path / "empty", plots=False)
    text = files.summary_md.read_text()
    assert "No benchmark results" in text and "mxnet did not run" in text
    assert "3 case(s) not timed — torch skipped: no CUDA device (3)" in text
    assert "incomplete" in text
    page = files.html.read_text()
    assert "Not timed" in page and "no CUDA device" in page


def test_harness_overhead_table_only_for_bare_loop_runs(tmp_path) -> None:
    payload = synthetic_run(sizes=SIZES, noise=0.0)
    plain = build_report([write_run(tmp_path / "plain.json", payload)], tmp_path / "plain")
    assert "Harness overhead" not in plain.summary_md.read_text()
    timed = [b for b in payload["benchmarks"] if b["extra_info"]["api"] == "torch:F.dropout"]
    for bench in timed:
        bench["extra_info"]["bare_loop"] = {"median_s": bench["stats"]["median"] / 1.25, "min_s": 0.0,
                                            "rounds": 15, "loops": 10}
    files = build_report([write_run(tmp_path / "bare.json", payload)], tmp_path / "bare")
    summary, page = files.summary_md.read_text(), files.html.read_text()
    assert "## Harness overhead" in summary and "Harness overhead" in page
    lines = [line for line in summary.splitlines() if line.startswith("| ") and "torch:F.dropout" in line
             and "+25.0" in line]
    assert len(lines) == len(timed)  # one row per bare-looped case, pytest-benchmark 25 % above the bare loop


def test_html_and_plots(tmp_path) -> None:
    pytest.importorskip("matplotlib", reason="plots need matplotlib (the `all` extra)")
    payload = synthetic_run(sizes=SIZES, dtypes=("float32", "float16"))
    files = build_report([write_run(tmp_path / "r.json", payload)], tmp_path / "out")
    # per machine x device x dtype: forward, forward_backward line plots, one bar chart and the speed chart
    names = sorted(p.name for p in files.plots)
    assert names == sorted(f"cpu-{d}-{k}.png" for d in ("float16", "float32")
                           for k in ("forward", "forward_backward", "bars", "speed"))
    for p in files.plots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
    page = files.html.read_text()
    assert page.count("<table>") == 1 + 2 + 2 + 2 + 2  # machines, summary x2 dtypes, baselines, bandwidth, throughput x2
    assert page.count("data:image/png;base64,") == len(files.plots)  # each plot once: float32's speed chart on top
    top = page[:page.index("<h2>Details</h2>")]
    assert top.count("data:image/png;base64,") == 1 and "cpu-float32-speed.png" in top
    assert "tensorflow:tf.nn.dropout [tf.function]" in page


def test_cli_report(tmp_path) -> None:
    path = write_run(tmp_path / "r.json", synthetic_run(sizes=(4096, 65536)))
    proc = dropbench("report", str(path), "--out", str(tmp_path / "out"), "--no-plots")
    assert proc.returncode == 0, proc.stderr
    assert "# dropbench summary" in proc.stdout and (tmp_path / "out" / "report.html").exists()


@pytest.mark.parametrize("content, why", [
    (None, "cannot read"),
    ('{"schema": 1, "kind": "bench", "machine_id": "m", "bench', "not valid JSON"),
    ('{"results": []}', "not a dropbench result file"),
    ('{"schema": 99, "kind": "bench"}', "schema 99"),
    ('{"schema": 1, "kind": "verify"}', "expected 'bench'"),
    ('{"schema": 1, "kind": "bench", "benchmarks": []}', "machine_id"),
    ('{"schema": 1, "kind": "bench", "machine_id": "m", "benchmarks": [{"stats": {"median": 1}, '
     '"extra_info": {"api": "a:b", "direction": "sideways", "device": "cpu", "dtype": "float32", "numel": 4}}]}',
     "direction"),
    ('{"schema": 1, "kind": "bench", "machine_id": "m", "benchmarks": [{"stats": {}, '
     '"extra_info": {"api": "a:b", "direction": "forward", "device": "cpu", "dtype": "float32", "numel": 4}}]}',
     "median"),
])
def test_cli_bad_input_exits_2_naming_the_file(tmp_path, content, why) -> None:
    good = write_run(tmp_path / "good.json", synthetic_run(sizes=(4096,)))
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    with pytest.raises(ResultFileError, match=why):
        load_run(bad)
    proc = dropbench("report", str(good), str(bad), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and why in lines[0]


def test_cli_out_must_be_a_directory(tmp_path) -> None:
    good = write_run(tmp_path / "good.json", synthetic_run(sizes=(4096,)))
    proc = dropbench("report", str(good), "--out", str(good))
    assert proc.returncode == 2 and str(good) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_size_labels() -> None:
    assert [size_label(n) for n in (1000, 4096, 1 << 20, 3 << 24, 1500000, 12)] == ["1k", "4Ki", "1Mi", "48Mi", "1.5M", "12"]


def test_synthetic_fixture_matches_the_contract(tmp_path) -> None:
    """Guard the fixture itself: every field the report relies on is present with the contract's types."""
    payload = json.loads(write_run(tmp_path / "r.json", synthetic_run(sizes=(4096,))).read_text())
    assert payload["schema"] == 1 and payload["kind"] == "bench"
    for b in payload["benchmarks"]:
        info = b["extra_info"]
        assert set(info) >= {"backend", "api", "direction", "device", "dtype", "numel", "shape", "rate", "mode",
                              "threads", "versions", "bytes", "worker"}
        assert len(b["stats"]["data"]) == b["stats"]["rounds"]


def test_summary_is_sorted_by_forward_time_marks_the_fastest_and_says_whose_baselines(tmp_path) -> None:
    files = build_report([write_run(tmp_path / "r.json", synthetic_run(sizes=SIZES, noise=0.0))], tmp_path / "out",
                         plots=False)
    text = files.summary_md.read_text()
    table = text[text.index("| API | forward"):].split("\n\n", 1)[0]  # the throughput table (bandwidth follows)
    lines = [l for l in table.splitlines()[2:] if l.startswith("| ")]
    forward = [c.strip() for c in (l.strip("|").split("|")[1] for l in lines)]
    assert forward[0].endswith("(fastest)") and sum(c.endswith("(fastest)") for c in forward) == 1
    units = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
    seconds = [float(c.split()[0]) * units[c.split()[1]] for c in forward if c != "—"]
    assert seconds == sorted(seconds)
    assert "own worker process" in files.summary_md.read_text()


def test_bench_terminal_summary_is_grouped_and_sorted_by_time() -> None:
    from suite.commands.bench import summary_rows  # noqa: PLC0415 - the CLI module, only for this test

    rows = summary_rows(synthetic_run(sizes=SIZES, noise=0.0))
    groups: dict[tuple, list[float]] = {}
    for api, mode, direction, size, dtype, device, micros, *_ in rows:
        groups.setdefault((device, dtype, size, direction), []).append(float(micros))
    assert len(groups) == 2 * len(SIZES)
    assert all(times == sorted(times) and len(set(times)) > 1 for times in groups.values())
    keys = [tuple(r[i] for i in (5, 4, 3, 2)) for r in rows]
    assert keys == sorted(keys, key=lambda k: list(groups).index(k))  # each group in one block
