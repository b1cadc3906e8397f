"""`dropbench verify`: conformance of every selected API, one worker process per backend."""
from __future__ import annotations

import datetime as _dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from suite import __version__
from suite.runtime.executors import dispatch
from suite.runtime.loader import BackendRef, load_for_worker
from suite.runtime.worker import DEFAULT_TIMEOUT_S, Task
from suite.verify.conformance import check_api
from suite.verify.coverage import ApiCoverage, coverage
from suite.verify.known import Divergence, classify, load_known
from suite.verify.stats import ALPHA_PER_CHECK

STATISTICAL_CHECKS = ("kept-fraction", "mean", "fresh-mask", "broadcast-kept-fraction", "vanilla-kept-fraction",
                      "lag", "position", "magnitude", "broadcast-lag", "broadcast-position",
                      "cross-call", "call-dispersion", "dispersion", "cross-seed",
                      "gaussian-noise", "alpha-moments")
"""Check families bounded by ALPHA_PER_CHECK; the last two are the dropout family's (suite/verify/family.py)."""
FAILED_STATUSES = ("fail", "error", "crash", "timeout")


def worker_task(task: Task) -> dict[str, Any]:
    """Child side: run the checks of every (selected) API of one backend."""
    backend, payload = load_for_worker(task.ref)
    if backend is None:
        return payload
    wanted = task.options.get("apis")
    for api in backend.apis:
        if wanted and f"{backend.name}:{api}" not in wanted:
            continue
        payload["records"].extend(r.to_dict() for r in check_api(backend, api))
    return payload


@dataclass
class VerifyReport:
    backends: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, str]] = field(default_factory=list)
    stale: list[Divergence] = field(default_factory=list)
    required: bool = False  # the user named the backends: one that cannot run is a failure
    allow_partial: bool = False  # the user asked for a subset on purpose: uncertified APIs do not fail the run

    @property
    def failed(self) -> list[dict[str, str]]:
        return [r for r in self.records if r["status"] in FAILED_STATUSES]

    @property
    def statistical_checks(self) -> int:
        return sum(1 for r in self.records if r["check"].split("/")[0] in STATISTICAL_CHECKS and r["status"] != "skip")

    @property
    def missing(self) -> list[dict[str, Any]]:
        """Named backends that did not run (only counted when the user asked for them by name)."""
        return [b for b in self.backends if b["status"] != "ok"] if self.required else []

    @property
    def coverage(self) -> list[ApiCoverage]:
        return coverage(self.records)

    @property
    def uncertified(self) -> list[ApiCoverage]:
        return [c for c in self.coverage if not c.certified]

    def counts(self) -> Counter[str]:
        return Counter(r["status"] for r in self.records)

    def exit_code(self) -> int:
        if self.failed or self.missing:
            return 1
        return 1 if self.uncertified and not self.allow_partial else 0

    def final_line(self) -> str:
        """"N passed, M known divergences, K failed" and what was not certified; never "OK"."""
        c = self.counts()
        failed = len(self.failed)
        line = f"verify: {c['pass']} passed, {c['known']} known divergences, {failed} failed, {c['skip']} skipped"
        apis = self.coverage
        bad = self.uncertified
        line += f"; {len(apis) - len(bad)}/{len(apis)} APIs certified"
        if bad:
            line += f", not certified: {', '.join(b.api for b in bad)}"
            if self.allow_partial:
                line += " (--allow-partial: not a failure)"
        if self.missing:
            line += f"; asked for but did not run: {', '.join(b['backend'] for b in self.missing)}"
        return line

    def to_json(self) -> dict[str, Any]:
        n = self.statistical_checks
        return {
            "schema": 1,
            "kind": "verify",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "dropbench": __version__,
            "alpha_per_check": ALPHA_PER_CHECK,
            "statistical_checks": n,
            "family_false_fail_bound": n * ALPHA_PER_CHECK,
            "backends": self.backends,
            "records": self.records,
            "stale_known": [d.__dict__ for d in self.stale],
            "coverage": [{"api": c.api, "certified": c.certified, "ran": c.ran, "skipped": c.skipped,
                          "reason": c.reason} for c in self.coverage],
        }


def run_verify(refs: list[BackendRef], apis: set[str] | None = None, *, timeout: float = DEFAULT_TIMEOUT_S,
               required: bool = False, allow_partial: bool = False) -> VerifyReport:
    """Verify each backend in its own worker; a crash or timeout is recorded and the rest go on.

    ``required``: the backends were named by the user, so one that is unavailable fails the run
    (by default every known backend is tried and a missing framework is only reported).
    """
    report = VerifyReport(required=required, allow_partial=allow_partial)
    raw: list[dict[str, str]] = []
    for ref in refs:
        result = dispatch(Task("verify", ref.ref, {"apis": sorted(apis) if apis else None}, name=ref.name), timeout=timeout)
        if result.status == "unavailable":  # its environment is not built: no worker ran, nothing failed
            report.backends.append({"backend": ref.name, "ref": ref.name, "status": "unavailable", "reason": result.detail,
                                    "versions": {}, "ran_on": result.where})
            continue
        if result.status != "ok" or result.payload is None:
            report.backends.append({"backend": ref.name, "ref": ref.name, "status": result.status, "reason": result.detail,
                                    "versions": {}, "ran_on": result.where})
            raw.append({"backend": ref.name, "api": f"{ref.name}:*", "check": "worker", "status": result.status,
                        "detail": result.detail})
            continue
        payload = result.payload
        status = "ok" if payload["available"] else "unavailable"
        report.backends.append({"backend": payload["backend"], "ref": ref.name, "status": status, "reason": payload["reason"],
                                "versions": payload["versions"], "python": payload.get("python"),
                                "ran_on": result.where})
        raw.extend(payload["records"])
    ran = {r["api"] for r in raw if r["check"] != "worker"}
    report.records, report.stale = classify(raw, load_known(), ran)
    return report


def summary_rows(report: VerifyReport) -> list[list[Any]]:
    """Per API: counts of each status."""
    counts: dict[str, Counter[str]] = {}
    for r in report.records:
        counts.setdefault(r["api"], Counter())[r["status"]] += 1
    cols = ("pass", "fail", "error", "known", "skip")
    return [[api, *(c.get(k, 0) for k in cols)] for api, c in counts.items()]
