"""Every built-in API passes `verify`, or fails only where a known divergence says so."""
from __future__ import annotations

import pytest

from suite.verify.known import load_known
from backends import BUILTIN
from suite.runtime.loader import api_ids, resolve
from suite.verify.runner import VerifyReport, run_verify

API_IDS = [
    "numpy:reference", "numpy:d2l-scratch", "numpy:fast", "numpy:fast.channel1d", "numpy:fast.channel2d",
    "torch:F.dropout", "torch:nn.Dropout", "torch:nn.Dropout1d", "torch:nn.Dropout2d", "torch:d2l-scratch",
    "tensorflow:tf.nn.dropout", "tensorflow:compat.v1.nn.dropout", "tensorflow:keras.layers.Dropout",
    "tensorflow:tf_keras.layers.Dropout", "tensorflow:DropoutWrapper", "tensorflow:stateless_dropout",
    "mxnet:nd.Dropout", "mxnet:gluon.nn.Dropout", "mxnet:d2l-scratch",
    "jax:random.bernoulli", "jax:flax.nnx.Dropout",  # in the jax environment: skipped where it is not built
    "keras3:jax", "keras3:torch", "keras3:tensorflow", "keras3:numpy",
    "cupy:elementwise", "triton:seeded",  # GPU only: skipped with the reason here
    "triton:seeded.interpreted",  # Triton's interpreter on the CPU: in the triton-interp environment
]
REGISTRY = {api: name for name, ref in BUILTIN.items() for api in api_ids(ref)}  # keras3:torch -> keras3-torch


@pytest.fixture(scope="module")
def report() -> VerifyReport:
    return run_verify(resolve(None), timeout=900)


def _backend_status(report: VerifyReport, ref: str) -> dict:
    return next(b for b in report.backends if b["ref"] == ref)


@pytest.mark.parametrize("api_id", API_IDS)
def test_api_conforms_or_fails_only_as_documented(report: VerifyReport, api_id: str) -> None:
    backend = REGISTRY[api_id]
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
    # judged for the APIs that ran (verify's `stale` leaves out entries of backends that could not run)
    crashed = [b for b in report.backends if b["status"] in ("crash", "timeout")]
    if crashed:
        pytest.skip(f"a backend crashed, so staleness cannot be judged for it: {crashed}")
    assert [(d.api, d.check) for d in report.stale] == []


def test_known_divergences_are_documented() -> None:
    for entry in load_known():
        assert entry.api in API_IDS, entry
        assert entry.reason.strip() and entry.link.startswith("http"), entry
