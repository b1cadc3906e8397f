"""Run every conformance check on one API of one backend and return flat records.

This is the only place that decides *which* checks apply to an API (from its ApiInfo)
and *what* inputs they get. It calls the backend, never a framework directly. An
exception from the backend becomes an ``error`` record; ``Unsupported`` becomes ``skip``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import numpy as np

from backends.base import ApiInfo, Unsupported, api_info
from suite.spec import DropoutSpec
from suite.verify import checks, contract
from suite.verify.checks import Outcome

RATES = (0.0, 0.1, 0.5, 0.9, 1.0)
CHECK_DTYPES = ("float32", "float16")
INPUT_SEED = 20261125
CALL_SEED = 1234
DEFAULT_SHAPE = (256, 256)
LAYOUT_SHAPES = {3: (32, 128, 16), 4: (32, 128, 4, 4)}
BROADCAST_CASES = (((32, 128, 4, 4), (2, 3)), ((16, 4096), (0,)))


@dataclass(frozen=True)
class CheckRecord:
    backend: str
    api: str  # the stable id, "backend:api"
    check: str
    status: str  # pass | fail | error | skip (verify adds known | stale)
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def make_inputs(shape: tuple[int, ...], dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """x in [0.5, 2) (never 0, so y != 0 identifies the mask) and a random grad_out."""
    rng = np.random.default_rng(INPUT_SEED)
    x = rng.uniform(0.5, 2.0, size=shape).astype(dtype)
    grad_out = rng.normal(size=shape).astype(dtype)
    return x, grad_out


class _Failed(Exception):
    """A backend call raised: every check that needed its result reports this detail."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ApiChecker:
    """Conformance of one API: yields (check id, status, detail)."""

    def __init__(self, backend: Any, api: str) -> None:
        self.backend = backend
        self.api = api
        self.info: ApiInfo = api_info(backend, api)
        self.caps = self.info.capabilities
        if self.info.layout is not None:
            self.shape = LAYOUT_SHAPES[self.info.layout.ndim]
            self.axes = self.info.layout.broadcast_axes
        else:
            self.shape, self.axes = DEFAULT_SHAPE, ()

    # -- calling the backend --------------------------------------------------
    def _spec(self, rate: float, dtype: str, **kw: Any) -> DropoutSpec:
        kw.setdefault("broadcast_axes", self.axes)
        if "seed" in self.caps:
            kw.setdefault("seed", CALL_SEED)
        return DropoutSpec(rate=rate, dtype=dtype, **kw)

    def _call(self, x: np.ndarray, grad_out: np.ndarray | None, spec: DropoutSpec) -> tuple[np.ndarray, np.ndarray | None]:
        try:
            if grad_out is not None and "backward" in self.caps:
                return contract.checked_pair(self.backend.forward_backward(x, grad_out, spec, api=self.api), x)
            return contract.checked_array(self.backend.forward(x, spec, api=self.api), x, "forward()"), None
        except Unsupported as exc:
            raise _Failed("skip", str(exc)) from exc
        except contract.ContractViolation as exc:
            raise _Failed("error", str(exc)) from exc
        except Exception as exc:  # the framework's own behaviour: recorded, not hidden
            raise _Failed("error", f"{type(exc).__name__}: {exc}".strip()[:500]) from exc

    # -- the plan -------------------------------------------------------------
    def run(self) -> Iterator[tuple[str, str, str]]:
        for dtype in CHECK_DTYPES:
            if dtype not in self.info.dtypes:
                yield f"*/{dtype}", "skip", f"{self.api} does not declare {dtype}"
                continue
            yield from self._guarded(f"identity/rate=0/{dtype}", lambda: self._rate_zero(dtype))
            yield from self._guarded(f"zeros/rate=1/{dtype}", lambda: self._rate_one(dtype))
            for rate in RATES[1:-1]:
                yield from self._guarded(f"train/rate={rate}/{dtype}", lambda rate=rate: self._train(rate, dtype))
            yield from self._capability("eval", f"eval/{dtype}", lambda: self._eval(dtype))
            yield from self._capability("seed", f"seed/{dtype}", lambda: self._seed(dtype))
            yield from self._capability("vanilla", f"vanilla/{dtype}", lambda: self._vanilla(dtype))
            if self.info.layout is None:
                for shape, axes in BROADCAST_CASES:
                    name = f"broadcast/axes={','.join(map(str, axes))}/{dtype}"
                    yield from self._capability("broadcast_axes", name, lambda s=shape, a=axes: self._broadcast(s, a, dtype))

    def _capability(self, cap: str, name: str, body: Callable[[], Iterator[tuple[str, Outcome]]]) -> Iterator[tuple[str, str, str]]:
        if cap not in self.caps:
            yield name, "skip", f"{self.api} does not declare {cap!r}"
            return
        yield from self._guarded(name, body)

    @staticmethod
    def _guarded(name: str, body: Callable[[], Iterator[tuple[str, Outcome]]]) -> Iterator[tuple[str, str, str]]:
        """Run a check group; a backend exception fails the group under its name."""
        try:
            for check, outcome in list(body()):
                yield check, "pass" if outcome.passed else "fail", outcome.detail
        except _Failed as failed:
            yield name, failed.status, failed.detail

    # -- check groups -----------------------------------------------------------
    def _rate_zero(self, dtype: str) -> Iterator[tuple[str, Outcome]]:
        x, g = make_inputs(self.shape, dtype)
        y, grad = self._call(x, g, self._spec(0.0, dtype))
        yield f"identity/rate=0/{dtype}", checks.identity(x, y)
        if grad is not None:
            yield f"identity-grad/rate=0/{dtype}", checks.identity(g, grad)

    def _rate_one(self, dtype: str) -> Iterator[tuple[str, Outcome]]:
        x, g = make_inputs(self.shape, dtype)
        y, grad = self._call(x, g, self._spec(1.0, dtype))
        yield f"zeros/rate=1/{dtype}", checks.zeros(y)
        if grad is not None:
            yield f"zero-grad/rate=1/{dtype}", checks.zeros(grad)

    def _train(self, rate: float, dtype: str) -> Iterator[tuple[str, Outcome]]:
        keep = 1.0 - rate
        x, g = make_inputs(self.shape, dtype)
        spec = self._spec(rate, dtype)
        y, grad = self._call(x, g, spec)
        tag = f"rate={rate}/{dtype}"
        yield f"values/{tag}", checks.scaled_values(x, y, 1.0 / keep)
        mask = checks.kept_mask(y)
        if self.axes:
            yield f"mask-shared/{tag}", checks.mask_shared(mask, self.axes)
        yield f"kept-fraction/{tag}", checks.kept_fraction(checks.group_mask(mask, self.axes), keep)
        yield f"mean/{tag}", checks.mean_preserved(x, y, keep, self.axes)
        if grad is not None:
            yield f"gradient/{tag}", checks.gradient_matches(x, y, g, grad)
        # the next call continues the stream: it must not reuse or correlate with the mask
        y2, _ = self._call(x, None, spec.replace(seed=None))
        second = checks.group_mask(checks.kept_mask(y2), self.axes)
        yield f"fresh-mask/{tag}", checks.independent_masks(checks.group_mask(mask, self.axes), second, keep)

    def _eval(self, dtype: str) -> Iterator[tuple[str, Outcome]]:
        x, g = make_inputs(self.shape, dtype)
        y, grad = self._call(x, g, self._spec(0.5, dtype, training=False))
        yield f"eval/{dtype}", checks.identity(x, y)
        if grad is not None:
            yield f"eval-grad/{dtype}", checks.identity(g, grad)

    def _seed(self, dtype: str) -> Iterator[tuple[str, Outcome]]:
        x, _ = make_inputs(self.shape, dtype)
        first, _ = self._call(x, None, self._spec(0.5, dtype, seed=7))
        checks_between, _ = self._call(x, None, self._spec(0.5, dtype, seed=8))
        again, _ = self._call(x, None, self._spec(0.5, dtype, seed=7))
        yield f"seed/{dtype}", checks.same_output(first, again)
        yield f"seed-changes-mask/{dtype}", checks.different_masks(checks.kept_mask(first), checks.kept_mask(checks_between))

    def _vanilla(self, dtype: str) -> Iterator[tuple[str, Outcome]]:
        x, _ = make_inputs(self.shape, dtype)
        for rate in RATES[1:-1]:
            keep = 1.0 - rate
            y, _ = self._call(x, None, self._spec(rate, dtype, scaling="vanilla"))
            tag = f"rate={rate}/{dtype}"
            yield f"vanilla-train/{tag}", checks.scaled_values(x, y, 1.0)
            yield f"vanilla-kept-fraction/{tag}", checks.kept_fraction(checks.group_mask(checks.kept_mask(y), self.axes), keep)
            y_eval, _ = self._call(x, None, self._spec(rate, dtype, scaling="vanilla", training=False))
            yield f"vanilla-eval/{tag}", checks.scaled_by(x, y_eval, keep)

    def _broadcast(self, shape: tuple[int, ...], axes: tuple[int, ...], dtype: str) -> Iterator[tuple[str, Outcome]]:
        keep = 0.5
        x, _ = make_inputs(shape, dtype)
        y, _ = self._call(x, None, self._spec(1 - keep, dtype, broadcast_axes=axes))
        mask = checks.kept_mask(y)
        tag = f"axes={','.join(map(str, axes))}/{dtype}"
        yield f"broadcast-shared/{tag}", checks.mask_shared(mask, axes)
        yield f"broadcast-values/{tag}", checks.scaled_values(x, y, 1.0 / keep)
        yield f"broadcast-kept-fraction/{tag}", checks.kept_fraction(checks.group_mask(mask, axes), keep)


def check_api(backend: Any, api: str) -> list[CheckRecord]:
    """All conformance records for one API, in a fixed order."""
    api_id = f"{backend.name}:{api}"
    return [CheckRecord(backend.name, api_id, check, status, detail) for check, status, detail in ApiChecker(backend, api).run()]
