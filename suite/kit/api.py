"""`verify_dropout(backend_or_function)`: verify's checks, bounds and coverage in-process, as one result.

Why in-process: the caller is a kernel author's own test, with their dropout already imported; the
checks (suite.verify.conformance), the known-divergence table and the coverage rule are exactly the ones
`dropbench verify` runs in its workers, so a pass here means what a pass there means.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from backends.base import Unsupported
from suite.report import table
from suite.verify.conformance import check_api
from suite.verify.coverage import ApiCoverage
from suite.verify.known import classify, load_known
from suite.verify.runner import VerifyReport
from suite.verify.stats import ALPHA_PER_CHECK

FUNCTION_BACKEND = "function"
FUNCTION_CAPABILITIES = frozenset({"seed", "eval"})
"""What a plain ``f(x, rate, training, seed)`` is assumed to do: honour the seed and an eval mode. It has no
backward (no autograd to ask), no vanilla scaling and no broadcast axes in its signature: those checks are
skipped with that reason, and the coverage says so."""


def as_numpy(value: Any) -> Any:
    """A NumPy array from anything with DLPack or ``__array__``; anything else is returned as it is, so that the
    contract check names its type."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__dlpack__"):
        try:
            return np.from_dlpack(value)
        except (TypeError, ValueError, RuntimeError, BufferError):  # e.g. a device or requires-grad tensor
            pass
    if hasattr(value, "__array__"):
        try:
            return np.asarray(value)
        except (TypeError, ValueError, RuntimeError):
            pass
    return value


class FunctionBackend:
    """A plain dropout function ``f(x, rate, training, seed) -> y`` as a backend with one API.

    ``seed`` is an int (the same seed must give the same mask) or None (continue the function's own stream);
    ``to_input`` turns the NumPy input into the function's own array type (e.g. a tensor constructor).
    """

    def __init__(self, function: Callable[..., Any], *, name: str | None = None,
                 capabilities: Iterable[str] = FUNCTION_CAPABILITIES, dtypes: Iterable[str] = ("float32",),
                 to_input: Callable[[np.ndarray], Any] | None = None) -> None:
        self.function = function
        self.name = FUNCTION_BACKEND
        self.apis = (name or getattr(function, "__name__", "dropout").replace("<", "").replace(">", ""),)
        self.capabilities = frozenset(capabilities)
        self.dtypes = tuple(dtypes)
        self.to_input = to_input

    def available(self) -> bool:
        return True

    def versions(self) -> dict[str, str]:
        """What was checked: the function's import path, and the NumPy that made its inputs."""
        where = f"{getattr(self.function, '__module__', '?')}.{getattr(self.function, '__qualname__', self.apis[0])}"
        return {"function": where, "numpy": np.__version__}

    def devices(self) -> list[str]:
        return ["cpu"]  # the inputs are host arrays; to_input may move them anywhere

    def forward(self, x: np.ndarray, spec: Any, *, api: str) -> Any:
        if spec.scaling != "inverted":
            raise Unsupported("a plain function f(x, rate, training, seed) is inverted dropout: no vanilla mode")
        if spec.broadcast_axes:
            raise Unsupported("a plain function f(x, rate, training, seed) takes no broadcast axes")
        given = self.to_input(x) if self.to_input is not None else x
        return as_numpy(self.function(given, spec.rate, spec.training, spec.seed))

    def forward_backward(self, x: np.ndarray, grad_out: np.ndarray, spec: Any, *, api: str) -> Any:
        raise Unsupported("a plain function has no backward; give a backend class to check gradients")


def _is_backend(target: Any) -> bool:
    return all(hasattr(target, name) for name in ("name", "apis", "forward"))


def as_backend(target: Any, **function_options: Any) -> Any:
    """A backend from a backend class (instantiated without arguments), a backend instance or a plain function."""
    if isinstance(target, type):
        if not _is_backend(target):
            raise TypeError(f"{target.__name__} is not a dropbench backend (it needs name, apis, forward(...)); "
                            "pass a backend class or instance, or a function f(x, rate, training, seed) -> y")
        target = target()
    if _is_backend(target):
        if function_options:
            raise TypeError(f"{', '.join(sorted(function_options))}: only for a plain function; "
                            "a backend declares its capabilities and dtypes itself")
        return target
    if callable(target):
        return FunctionBackend(target, **function_options)
    raise TypeError(f"cannot verify {target!r}: pass a backend class or instance, or a function "
                    "f(x, rate, training, seed) -> y")


@dataclass
class ConformanceResult:
    """What `dropbench verify` would say about these APIs: records, coverage, the verdict and its message."""

    report: VerifyReport

    @property
    def records(self) -> list[dict[str, str]]:
        """One per check: backend, api, check, status (pass | fail | error | skip | known), detail."""
        return self.report.records

    @property
    def checks(self) -> list[dict[str, str]]:
        return self.report.records

    @property
    def coverage(self) -> list[ApiCoverage]:
        return self.report.coverage

    @property
    def failed(self) -> list[dict[str, str]]:
        return self.report.failed

    @property
    def certified(self) -> bool:
        """Every API certified (every family of its declared scaling(s) ran) and no check failed: verify's exit code 0."""
        return self.report.exit_code() == 0

    ok = certified

    @property
    def statistical_checks(self) -> int:
        return self.report.statistical_checks

    @property
    def message(self) -> str:
        """The failures (or that there are none), the coverage of every API, the false-fail bound, verify's line."""
        apis = ", ".join(c.api for c in self.coverage) or ", ".join(b["backend"] for b in self.report.backends)
        verdict = "certified" if self.certified else "NOT CERTIFIED"
        lines = [f"dropbench verify_dropout: {apis}: {verdict}"
                 + (f" — {len(self.failed)} check(s) failed" if self.failed else "")]
        for b in self.report.backends:
            if b["status"] != "ok":
                lines.append(f"{b['backend']}: {b['status']} — {b['reason']}")
        if self.failed:
            lines += [f"{len(self.failed)} check(s) failed:",
                      table.render(["api", "check", "status", "detail"],
                                   [[r["api"], r["check"], r["status"], r["detail"]] for r in self.failed], max_width=300), ""]
        known = [r for r in self.records if r["status"] == "known"]
        if known:
            lines.append(f"{len(known)} known divergence(s) (backends/known_divergences.toml), not failures")
        lines += [c.line() for c in self.coverage]
        n = self.statistical_checks
        lines.append(f"{n} statistical checks at alpha={ALPHA_PER_CHECK:g} each: a correct dropout fails falsely "
                     f"with probability <= {n * ALPHA_PER_CHECK:.2g}")
        lines.append(self.report.final_line())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.message

    def assert_ok(self) -> "ConformanceResult":
        """Raise AssertionError with :attr:`message` unless certified; returns self for chaining."""
        if not self.certified:
            raise AssertionError(self.message)
        return self


def verify_dropout(target: Any, *, apis: Iterable[str] | None = None, **function_options: Any) -> ConformanceResult:
    """Run verify's checks on a backend (class or instance) or a plain function ``f(x, rate, training, seed) -> y``.

    ``apis``: a subset of the backend's API names (default: all). For a plain function, ``name``,
    ``capabilities`` (default seed and eval), ``dtypes`` (default float32) and ``to_input`` (NumPy array ->
    your array type) are accepted. Known divergences of the built-in APIs apply as in `dropbench verify`.
    """
    backend = as_backend(target, **function_options)
    wanted = list(backend.apis) if apis is None else list(apis)
    unknown = [a for a in wanted if a not in backend.apis]
    if unknown or not wanted:
        raise ValueError(f"unknown API(s) {unknown or wanted!r} of backend {backend.name!r}; it has {list(backend.apis)}")
    report = VerifyReport(required=True)
    available = bool(backend.available()) if callable(getattr(backend, "available", None)) else True
    if not available:
        why = getattr(backend, "unavailable_reason", lambda: "available() returned False")
        report.backends.append({"backend": backend.name, "ref": backend.name, "status": "unavailable",
                                "reason": why() if callable(why) else str(why), "versions": {}})
        return ConformanceResult(report)
    raw = [r.to_dict() for api in wanted for r in check_api(backend, api)]
    report.backends.append({"backend": backend.name, "ref": backend.name, "status": "ok", "reason": None,
                            "versions": backend.versions() if callable(getattr(backend, "versions", None)) else {}})
    report.records, report.stale = classify(raw, load_known(), {r["api"] for r in raw})
    return ConformanceResult(report)
