"""Every built-in API passes `verify`, or fails only where a known divergence says so."""
from __future__ import annotations

import pytest

from backends import BUILTIN
from suite.runtime.loader import api_ids, resolve
from suite.verify.known import load_known
from suite.verify.runner import VerifyReport, run_verify

REGISTRY = {api: name for name, ref in BUILTIN.items() for api in api_ids(ref)}  # keras3:torch -> keras3-torch
API_IDS = list(REGISTRY)  # every API of every built-in, from the registry: a new adapter is verified here unasked


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
