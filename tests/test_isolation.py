"""A backend that segfaults, aborts, hangs or fails at import costs only its own results."""
from __future__ import annotations

import pytest

from suite.runtime.loader import resolve
from suite.verify.runner import run_verify

HOSTILE = {
    "tests.meta.hostile:Segfaults": ("crash", "SIGSEGV"),
    "tests.meta.hostile:Aborts": ("crash", "SIGABRT"),
    "tests.meta.hostile:Hangs": ("timeout", "no result after"),
    "tests.meta.raises_on_import:Thing": ("unavailable", "simulated broken build"),
}


@pytest.mark.parametrize("ref", sorted(HOSTILE))
def test_hostile_backend_does_not_lose_the_others(ref: str) -> None:
    status, evidence = HOSTILE[ref]
    report = run_verify(resolve(["numpy", ref, "tests.meta.plugins:CorrectDropout"]), timeout=8, required=True)
    by_name = {b["backend"]: b for b in report.backends}
    hostile = next(b for b in report.backends if b["backend"] not in ("numpy", "plugin"))
    assert hostile["status"] == status, hostile
    assert evidence in hostile["reason"], hostile
    assert by_name["numpy"]["status"] == "ok" and by_name["plugin"]["status"] == "ok"
    kept = {r["api"] for r in report.records if r["status"] == "pass"}
    assert {"numpy:reference", "numpy:d2l-scratch", "plugin:dropout"} <= kept
    assert report.exit_code() == 1
