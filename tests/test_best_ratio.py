"""The report's × best: time over the fastest *conforming* API of the same group, like for like.

Synthetic runs with noise 0 (tests/fixtures/synthetic_bench.py) give exact medians, so the ratios are
checked against the timing model. mxnet:nd.Dropout has entries in backends/known_divergences.toml, so
it is the natural "fast but not conforming" row.
"""
from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("pandas", reason="report needs pandas (the `all` extra)")

from suite.commands.bench import SUMMARY_HEADERS, summary_rows  # noqa: E402
from suite.report.build import attach_best, best_ratios, build_report, display_frame, load_run, results_frame  # noqa: E402
from tests.fixtures.synthetic_bench import bench_payload, benchmark, model_seconds, write_run  # noqa: E402

N = 1 << 20
COSTS = {"numpy:fast": 2.0, "torch:F.dropout": 3.0, "mxnet:nd.Dropout": 1.5}


def _payload(extra: list[dict] | None = None) -> dict:
    rows = [benchmark(api, "forward", N, model_seconds(c, N), worker=api.split(":")[0], noise=0.0)
            for api, c in COSTS.items()]
    rows += [benchmark("baseline:copy", "forward", N, model_seconds(1.0, N), worker=w, noise=0.0)
             for w in ("numpy", "torch", "mxnet")]
    return bench_payload(rows + list(extra or []))


def _best(tmp_path, payload: dict, verify: dict | None = None) -> tuple[dict[str, float], list[str]]:
    path = write_run(tmp_path / "bench.json", payload)
    if verify is not None:
        (tmp_path / "verify.json").write_text(json.dumps(verify))
    runs = [load_run(path)]
    df, notes = results_frame(runs)
    disp = attach_best(df, display_frame(df), runs, notes)
    api = disp[~disp["is_baseline"]]
    return dict(zip(api["label"], api["x_best"])), notes


def test_best_ratios_skip_nonconforming_and_keep_groups_apart():
    """A faster non-conforming API is not the reference; another group has its own best; none: NaN."""
    items = [("a", "fast-but-wrong", 1.0), ("a", "ok", 2.0), ("a", "ok2", 3.0), ("b", "ok", 10.0), ("c", "fast-but-wrong", 1.0)]
    out = best_ratios(items, lambda api: api != "fast-but-wrong")
    assert out[:4] == [0.5, 1.0, 1.5, 1.0]
    assert math.isnan(out[4])


def test_static_notion_excludes_apis_with_a_known_divergence(tmp_path):
    best, notes = _best(tmp_path, _payload())
    assert best["numpy:fast"] == pytest.approx(1.0)
    assert best["torch:F.dropout"] == pytest.approx(model_seconds(3.0, N) / model_seconds(2.0, N))
    assert best["mxnet:nd.Dropout"] == pytest.approx(model_seconds(1.5, N) / model_seconds(2.0, N))  # < 1: faster, not conforming
    assert any("known_divergences.toml" in n for n in notes)


def test_a_verify_json_next_to_the_run_decides(tmp_path):
    """numpy:fast failing a check in this run's verify.json: torch:F.dropout becomes the reference."""
    verify = {"schema": 1, "kind": "verify", "records": [
        {"backend": "numpy", "api": "numpy:fast", "check": "values/rate=0.5/float32", "status": "fail", "detail": "x"},
        {"backend": "torch", "api": "torch:F.dropout", "check": "values/rate=0.5/float32", "status": "pass", "detail": ""}]}
    best, notes = _best(tmp_path, _payload(), verify)
    assert best["torch:F.dropout"] == pytest.approx(1.0)
    assert best["numpy:fast"] == pytest.approx(model_seconds(2.0, N) / model_seconds(3.0, N))
    assert any("verify.json" in n for n in notes)


def test_channel_layouts_are_compared_like_for_like(tmp_path):
    """A (cheaper) channel-dropout row on a 4-d input is not the reference of element-wise rows."""
    channel = benchmark("torch:nn.Dropout2d", "forward", N, model_seconds(1.2, N), worker="torch", noise=0.0)
    channel["extra_info"]["shape"] = [N // 4096, 16, 16, 16]
    best, _ = _best(tmp_path, _payload([channel]))
    assert best["numpy:fast"] == pytest.approx(1.0)
    assert best["torch:nn.Dropout2d"] == pytest.approx(1.0)


def test_summary_table_and_bench_printout_show_x_best(tmp_path):
    payload = _payload()
    build_report([write_run(tmp_path / "bench.json", payload)], tmp_path / "out", plots=False)
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "| × rng32 | × best | fwd+bwd |" in text
    line = next(row for row in text.splitlines() if row.startswith("| torch:F.dropout |"))
    assert f"{model_seconds(3.0, N) / model_seconds(2.0, N):.2f}×" in line
    rows = {r[0]: r for r in summary_rows(payload)}
    assert rows["torch:F.dropout"][SUMMARY_HEADERS.index("x best")] == f"{model_seconds(3.0, N) / model_seconds(2.0, N):.2f}"
    assert rows["numpy:fast"][SUMMARY_HEADERS.index("x best")] == "1.00"
