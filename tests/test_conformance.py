"""Every built-in API passes `verify`, or fails only where a known divergence says so."""
from __future__ import annotations

import pytest

from suite.known import load_known
from suite.loader import resolve
from suite.verify import VerifyReport, run_verify

API_IDS = [
    "numpy:reference", "numpy:d2l-scratch",
    "torch:F.dropout", "torch:nn.Dropout", "torch:nn.Dropout1d", "torch:nn.Dropout2d", "torch:d2l-scratch",
    "tensorflow:tf.nn.dropout", "tensorflow:compat.v1.nn.dropout", "tensorflow:keras.layers.Dropout",
    "tensorflow:tf_keras.layers.Dropout", "tensorflow:DropoutWrapper", "tensorflow:stateless_dropout",
    "mxnet:nd.Dropout", "mxnet:gluon.nn.Dropout", "mxnet:d2l-scratch",
]


@pytest.fixture(scope="module")
def report() -> VerifyReport:
    return run_verify(resolve(None), timeout=900)


def _backend_status(report: VerifyReport, backend: str) -> dict:
    return next(b for b in report.backends if b["backend"] == backend)


@pytest.mark.parametrize("api_id", API_IDS)
def test_api_conforms_or_fails_only_as_documented(report: VerifyReport, api_id: str) -> None:
    backend = api_id.split(":")[0]
    status = _backend_status(report, backend)
    if status["status"] == "unavailable":
        pytest.skip(f"{backend} unavailable: {status['reason']}")
    assert status["status"] == "ok", status
    records = [r for r in report.records if r["api"] == api_id]
    assert records, f"{api_id} produced no records"
    unexpected = [f"{r['check']}: {r['status']}: {r['detail']}" for r in records if r["status"] in ("fail", "error")]
    assert not unexpected, "\n".join(unexpected)
    assert any(r["status"] == "pass" for r in records)


def test_no_stale_known_divergence(report: VerifyReport) -> None:
    if any(b["status"] != "ok" for b in report.backends):
        pytest.skip("a backend did not run, so staleness cannot be judged for it")
    assert [(d.api, d.check) for d in report.stale] == []


def test_known_divergences_are_documented() -> None:
    for entry in load_known():
        assert entry.api in API_IDS, entry
        assert entry.reason.strip() and entry.link.startswith("http"), entry
