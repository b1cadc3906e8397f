"""Every built-in API passes `verify`, or fails only where a known divergence says so."""
from __future__ import annotations

import numpy as np
import pytest

from backends import BUILTIN
from suite.runtime.loader import api_ids, resolve
from suite.verify import conformance
from suite.verify.coverage import coverage
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


# -- issue 14: inputs, layouts, messages, coverage ------------------------------------------------


@pytest.mark.parametrize("ndim", [1, 2, 3, 4, 5])
def test_layout_shape_any_rank(ndim: int) -> None:
    for axes in [(), (ndim - 1,), tuple(range(1, ndim)), tuple(range(ndim))]:
        shape = conformance.layout_shape(ndim, axes)
        assert len(shape) == ndim
        groups = int(np.prod([n for a, n in enumerate(shape) if a not in axes]))
        size = int(np.prod([n for a, n in enumerate(shape) if a in axes]))
        if axes and len(axes) < ndim:
            assert (groups, size) == (4096, 16), (axes, shape)
        else:
            assert groups * size == 65536, (axes, shape)


def test_builtin_layout_shapes_unchanged() -> None:
    assert conformance.layout_shape(3, (2,)) == (32, 128, 16)
    assert conformance.layout_shape(4, (2, 3)) == (32, 128, 4, 4)


def test_inputs_have_both_signs_four_decades_and_no_zero() -> None:
    for dtype in ("float32", "float16"):
        x, g = conformance.make_inputs((256, 256), dtype)
        for a in (x, g):
            assert a.dtype == dtype and np.all(a != 0) and (a > 0).any() and (a < 0).any()
        magnitude = np.abs(x.astype(np.float64))
        assert magnitude.min() < 0.011 and magnitude.max() > 90  # 1e-2 .. 1e2
        assert np.all(np.abs(g.astype(np.float64)) >= 0.09)  # no float16 subnormals in the gradient
        assert not x.flags.writeable  # shared: calls get copies


def test_clean_message_strips_ansi_and_joins_lines() -> None:
    message = conformance.clean_message(ValueError("\x1b[31mbad\x1b[0m rate\n  second line\n"))
    assert message == "ValueError: bad rate second line"
    assert len(conformance.clean_message(ValueError("x" * 10_000))) == conformance.DETAIL_LIMIT


def _record(check: str, status: str, detail: str = "d") -> dict:
    return {"backend": "b", "api": "b:a", "check": check, "status": status, "detail": detail}


def test_coverage_certifies_only_when_every_declared_family_ran() -> None:
    ran = coverage([_record("values/rate=0.5/float32", "pass"), _record("eval/float32", "skip", "b:a does not declare 'eval'")])[0]
    assert ran.certified and "training" in ran.ran and ran.skipped["eval"] == "skip: b:a does not declare 'eval'"
    eval_unsupported = coverage([_record("values/rate=0.5/float32", "pass"), _record("eval/float32", "skip", "no eval here")])[0]
    assert not eval_unsupported.certified and eval_unsupported.reason == "the eval family did not run (skip: no eval here)"
    inverted_refused = coverage([_record("train/rate=0.5/float32", "skip", "only vanilla"),
                                 _record("vanilla-train/rate=0.5/float32", "pass")])[0]
    assert not inverted_refused.certified and "training family" in inverted_refused.reason
    assert "only vanilla" in inverted_refused.reason
    vanilla_only = coverage([_record("inverted/float32", "skip", "b:a does not declare 'inverted'"),
                             _record("values/rate=0.5/float32", "pass"), _record("vanilla-train/rate=0.5/float32", "pass")])[0]
    assert vanilla_only.certified and vanilla_only.scalings == ["vanilla"] and "training (vanilla)" in vanilla_only.line()
    neither = coverage([_record("inverted/float32", "skip", "b:a does not declare 'inverted'"),
                        _record("vanilla/float32", "skip", "b:a does not declare 'vanilla'")])[0]
    assert not neither.certified and neither.reason == "it declares neither inverted nor vanilla training"
    nothing = coverage([_record("identity/rate=0/float32", "skip")])[0]
    assert not nothing.certified and nothing.reason == "no check ran"
    assert "NOT CERTIFIED" in nothing.line()


@pytest.mark.parametrize("layout", [(1, ()), (1, (0,)), (2, (1,)), (5, (2, 3, 4)), (5, ())])
def test_layout_plugins_of_any_rank_pass(layout) -> None:
    from backends.base import ApiInfo, Layout  # noqa: PLC0415 - only this test builds layouts
    from tests.meta.plugins import CorrectChannelDropout  # noqa: PLC0415 - as above

    class AnyRank(CorrectChannelDropout):
        apis = ("any",)

        def api_info(self, api):
            return ApiInfo(frozenset(self.capabilities), tuple(self.dtypes), Layout(*layout))

    records = conformance.check_api(AnyRank(), "any")
    bad = [(r.check, r.status, r.detail) for r in records if r.status in ("fail", "error")]
    assert not bad and any(r.check.startswith("values/") and r.status == "pass" for r in records), bad
