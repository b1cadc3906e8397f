"""`dropbench verify`: conformance of every selected API, one worker process per backend."""
from __future__ import annotations

import datetime as _dt
import platform
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from suite import __version__
from suite.verify.conformance import check_api
from suite.verify.known import Divergence, classify, load_known
from suite.runtime.loader import BackendRef, load
from suite.verify.stats import ALPHA_PER_CHECK
from suite.runtime.executors import dispatch
from suite.runtime.worker import DEFAULT_TIMEOUT_S, Task

STATISTICAL_CHECKS = ("kept-fraction", "mean", "fresh-mask", "broadcast-kept-fraction", "vanilla-kept-fraction")
FAILED_STATUSES = ("fail", "error", "crash", "timeout")


def _interpreter() -> str:
    """Which interpreter ran the worker: its environment (sys.prefix) and Python version."""
    return f"{sys.prefix} (Python {platform.python_version()})"


def load_backend_for_task(ref: str) -> tuple[Any | None, dict[str, Any]]:
    """Load a backend inside a worker; a failing import or missing framework is reported, not raised."""
    try:
        backend = load(ref)
    except Exception as exc:
        return None, {"backend": ref, "available": False, "reason": f"loading {ref} failed: {type(exc).__name__}: {exc}",
                      "versions": {}, "records": []}
    reason = None
    if not backend.available():
        getter = getattr(backend, "unavailable_reason", None)
        reason = (getter() if callable(getter) else None) or f"{backend.name} reports itself unavailable"
    info = {"backend": backend.name, "available": reason is None, "reason": reason,
            "versions": backend.versions() if reason is None else {}, "records": [], "python": _interpreter()}
    return (backend if reason is None else None), info


def worker_task(task: Task) -> dict[str, Any]:
    """Child side: run the checks of every (selected) API of one backend."""
    backend, payload = load_backend_for_task(task.ref)
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

    def exit_code(self) -> int:
        return 1 if self.failed or self.missing else 0

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
        }


def run_verify(refs: list[BackendRef], apis: set[str] | None = None, *, timeout: float = DEFAULT_TIMEOUT_S,
               required: bool = False) -> VerifyReport:
    """Verify each backend in its own worker; a crash or timeout is recorded and the rest go on.

    ``required``: the backends were named by the user, so one that is unavailable fails the run
    (by default every known backend is tried and a missing framework is only reported).
    """
    report = VerifyReport(required=required)
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
