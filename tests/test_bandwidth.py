"""The bytes model (backends/base.py Traffic, suite/bench/cases.py traffic_info) and the report's bandwidth columns.

Synthetic runs with noise 0 have exactly known medians, so % copy and % peak are checked against the
timing model (tests/fixtures/synthetic_bench.py), not against themselves.
"""
from __future__ import annotations

import pytest

from backends.base import ApiInfo, Layout, Traffic
from backends.numpy_backend import NumpyBackend
from backends.torch_backend import TorchBackend
from backends.triton_backend import TritonBackend, TritonInterpreted
from suite.bench import cases as timing

pytest.importorskip("pandas", reason="report needs pandas (the `all` extra)")

from suite.report import bandwidth  # noqa: E402
from suite.report.build import build_report, load_run, results_frame  # noqa: E402
from tests.fixtures.synthetic_bench import COPY_NS, bench_payload, benchmark, model_seconds, write_run  # noqa: E402

N = 1 << 20


@pytest.mark.parametrize("mask, forward, both", [("none", 8, 16), ("bit", 8.125, 16.25), ("bool", 9, 18), ("x", 12, 24)])
def test_bytes_per_element_by_how_the_mask_is_kept(mask: str, forward: float, both: float) -> None:
    """float32: x + y (+ grad_out + grad_x) = 8 (16) bytes, plus the mask written once and read once."""
    t = Traffic(mask=mask)
    assert t.bytes_moved("forward", N, 4) == forward * N
    assert t.bytes_moved("forward_backward", N, 4) == both * N


def test_a_shared_mask_counts_its_own_elements_only() -> None:
    assert Traffic(mask="x").bytes_moved("forward_backward", 4096, 4, mask_elements=16) == 16 * 4096 + 2 * 4 * 16
    with pytest.raises(ValueError, match="'float128'"):
        Traffic(mask="float128").bytes_moved("forward", 1, 4)


def test_adapters_declare_what_they_keep() -> None:
    assert TritonBackend().api_info("seeded").traffic == Traffic(mask="none")  # regenerated in backward
    assert TritonInterpreted().api_info("seeded.interpreted").traffic == Traffic(mask="none")
    assert TorchBackend().api_info("F.dropout").traffic == Traffic(mask="x")  # CPU: input * noise
    assert NumpyBackend().api_info("fast").traffic == Traffic(mask="uint8")
    assert not ApiInfo().traffic.declared  # nobody looked: assumed, and the report says so


def test_bench_rows_carry_bytes_moved_next_to_useful_bytes() -> None:
    case = timing.Case("torch", "torch", "nn.Dropout2d", "forward_backward", 1 << 16, "float32", "cpu")
    shape = timing.bench_shape(case.numel, TorchBackend().api_info("nn.Dropout2d").layout)
    extra = timing.traffic_info(TorchBackend(), case, shape)
    groups = shape[0] * shape[1]  # one mask value per (sample, channel) of (N, 16, 16, 16)
    assert extra["traffic"]["mask_elements"] == groups
    assert extra["bytes_moved"] == 4 * 4 * case.numel + 2 * 4 * groups
    info = timing.extra_info(case, shape=shape, rate=0.5, threads=1, versions={}, worker="torch", **extra)
    assert info["bytes"] == 4 * 4 * case.numel and info["bytes_moved"] == extra["bytes_moved"]
    base = timing.BaselineCase("copy", N, "float32", "cpu", "torch")
    assert timing.extra_info(base, shape=(N,), rate=None, threads=1, versions={}, worker="torch")["bytes_moved"] == 8 * N


def _run(tmp_path, *, gpu: str, device: str, bytes_moved: float | None):
    copy = benchmark("baseline:copy", "forward", N, model_seconds(1.0, N), worker="triton", device=device, noise=0.0)
    api = benchmark("triton:seeded", "forward", N, model_seconds(4.0, N), worker="triton", device=device, noise=0.0)
    if bytes_moved is not None:
        api["extra_info"].update(bytes_moved=bytes_moved, traffic={"mask": "none", "declared": True})
    payload = bench_payload([copy, api])
    payload["machine_facts"]["gpu"] = gpu
    return write_run(tmp_path / f"run-{device.replace(':', '')}.json", payload)


def test_percent_of_copy_and_of_the_known_peak(tmp_path) -> None:
    path = _run(tmp_path, gpu="NVIDIA H200", device="cuda:0", bytes_moved=8 * N)
    df, _ = results_frame([load_run(path)])
    row = df[df["api"] == "triton:seeded"].iloc[0]
    t_api, t_copy = model_seconds(4.0, N), model_seconds(1.0, N)
    assert row.moved_gbps == pytest.approx(8 * N / t_api / 1e9)
    assert row.pct_copy == pytest.approx(100 * t_copy / t_api)  # same bytes as the copy, 4x its time
    assert row.pct_peak == pytest.approx(100 * 8 * N / t_api / 4.8e12)
    assert COPY_NS > 0 and row.model == "run"
    files = build_report([path], tmp_path / "out", plots=False)
    text = files.summary_md.read_text()
    assert "Bandwidth · synthetic-cpu-2c-00000000 · cuda:0 · float32" in text and "H200 4.8 TB/s" in text


def test_no_peak_for_unknown_devices_and_cpus(tmp_path) -> None:
    assert bandwidth.peak_for("NVIDIA GeForce GTX 480") is None
    assert bandwidth.peak_for("NVIDIA H100 80GB HBM3")[1] == "H100 80GB HBM3"
    df, _ = results_frame([load_run(_run(tmp_path, gpu="", device="cpu", bytes_moved=8 * N))])
    assert df["pct_peak"].isna().all()


def test_older_runs_get_the_adapters_model_now(tmp_path) -> None:
    """A run recorded before bytes_moved existed: the model of the adapter as declared today, marked 'now'."""
    copy = benchmark("baseline:copy", "forward", N, model_seconds(1.0, N), worker="torch", noise=0.0)
    api = benchmark("torch:F.dropout", "forward_backward", N, model_seconds(4.0, N), worker="torch", noise=0.0)
    df, _ = results_frame([load_run(write_run(tmp_path / "old.json", bench_payload([copy, api])))])
    row = df[df["api"] == "torch:F.dropout"].iloc[0]
    assert row.model == "now" and row.mask_kept == "x" and row.bytes_moved == 24 * N
    assert row.pct_copy == pytest.approx(100 * 24 / 8 / (model_seconds(4.0, N) / model_seconds(1.0, N)))


def test_layout_of_a_channel_api_is_used_for_older_runs_too() -> None:
    info = {"api": "torch:nn.Dropout2d", "shape": [16, 16, 16, 16], "numel": 65536}
    moved, model = bandwidth.bytes_moved(info, "forward", 65536, "float32")
    assert model == "now" and moved == 8 * 65536 + 4 * 16 * 16
    assert Layout(4, (2, 3)) == TorchBackend().api_info("nn.Dropout2d").layout
