"""Run every conformance check on one API of one backend and return flat records.

This is the only place that decides *which* checks apply to an API (from its ApiInfo)
and *what* inputs they get. It calls the backend, never a framework directly. An
exception from the backend becomes an ``error`` record; ``Unsupported`` becomes ``skip``.
Every call gets its own fresh copy of the input (an in-place dropout is judged on its
result); whether a call wrote into its input, and which dtypes came back, are checks of
their own at the end of each dtype.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Callable, Iterator

import numpy as np

from backends.base import SCALINGS, ApiInfo, Unsupported, api_info, declared_scalings
from suite.spec import DropoutSpec
from suite.verify import checks, contract, dispersion, independence
from suite.verify.checks import Outcome
from suite.verify.coverage import undeclared

RATES = (0.0, 0.1, 0.5, 0.9, 1.0)
INDEPENDENCE_RATE = 0.5  # the lag tests are exact for fair bits only
CHECK_DTYPES = ("float32", "float16")
INPUT_SEED = 20261125
CALL_SEED = 1234
DEFAULT_SHAPE = (256, 256)
LAYOUT_GROUPS, LAYOUT_GROUP_SIZE = 4096, 16
LAYOUT_SHAPES = {(3, (2,)): (32, 128, 16), (4, (2, 3)): (32, 128, 4, 4)}
"""The channel layouts of the built-in APIs (4096 groups of 16); other layouts get :func:`layout_shape`."""
BROADCAST_CASES = (((32, 128, 4, 4), (2, 3)), ((16, 4096), (0,)))
MAGNITUDE_DECADES = (-2.0, 2.0)  # |x| = 10**U(-2, 2): 0.01 .. 100, fine in float16 even scaled by 1/0.1
POSITIVE_FRACTION = 0.75  # both signs, but sum(x) far from 0 so that the mean check keeps its power
DETAIL_LIMIT = 4000  # a framework error kept in the record (the CLI cuts it unless --all/--verbose)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


@dataclass(frozen=True)
class CheckRecord:
    backend: str
    api: str  # the stable id, "backend:api"
    check: str
    status: str  # pass | fail | error | skip (verify adds known | stale)
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _split_evenly(total: int, dims: int) -> list[int]:
    """``total`` (a power of two) as ``dims`` powers of two, as even as possible, larger first."""
    bits = total.bit_length() - 1
    return [2 ** (bits // dims + (i < bits % dims)) for i in range(dims)]


def layout_shape(ndim: int, axes: tuple[int, ...]) -> tuple[int, ...]:
    """An input of any rank 1..5 for a fixed layout: 4096 mask groups of 16 elements where possible.

    The free (per-group) axes share 4096, the broadcast axes 16; a layout without free axes
    gets one group of 4096*16 elements, one without broadcast axes 65536 independent elements.
    """
    if (ndim, tuple(axes)) in LAYOUT_SHAPES:
        return LAYOUT_SHAPES[(ndim, tuple(axes))]
    free = [a for a in range(ndim) if a not in axes]
    shape = [1] * ndim
    group_total = LAYOUT_GROUPS * (LAYOUT_GROUP_SIZE if not axes else 1)
    size_total = LAYOUT_GROUP_SIZE * (LAYOUT_GROUPS if not free else 1)
    for a, n in zip(free, _split_evenly(group_total, len(free)) if free else []):
        shape[a] = n
    for a, n in zip(axes, _split_evenly(size_total, len(axes)) if axes else []):
        shape[a] = n
    return tuple(shape)


@lru_cache(maxsize=32)
def make_inputs(shape: tuple[int, ...], dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """x with both signs and |x| spread over four decades, never 0 (so y != 0 identifies the mask),
    and grad_out likewise (both signs, |g| in [0.1, 10), no subnormals in float16).

    A dropout that is right only for positive input, or whose mask depends on |x|, shows here;
    with x in [0.5, 2) it did not.
    """
    rng = np.random.default_rng(INPUT_SEED)
    lo, hi = MAGNITUDE_DECADES
    sign = np.where(rng.random(shape) < POSITIVE_FRACTION, 1.0, -1.0)
    x = (sign * 10.0 ** rng.uniform(lo, hi, size=shape)).astype(dtype)
    grad_out = (np.where(rng.random(shape) < 0.5, 1.0, -1.0) * 10.0 ** rng.uniform(-1.0, 1.0, size=shape)).astype(dtype)
    x.setflags(write=False)  # cached and shared: every call gets its own writable copy
    grad_out.setflags(write=False)
    return x, grad_out


def clean_message(exc: BaseException) -> str:
    """A framework error on one line: ANSI colour codes stripped, lines joined, kept (nearly) whole."""
    text = _ANSI.sub("", f"{type(exc).__name__}: {exc}")
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 1] + "…"


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
        # issue 25: the training families run in the first declared scaling (inverted, else vanilla)
        self.scalings = declared_scalings(self.info)
        self.scaling = self.scalings[0] if self.scalings else None
        self.caps = (self.info.capabilities - {"vanilla"}) | ({"vanilla"} if "vanilla" in self.scalings else set())
        if self.info.layout is not None:
            self.axes = tuple(self.info.layout.broadcast_axes)
            self.shape = layout_shape(self.info.layout.ndim, self.axes)
        else:
            self.shape, self.axes = DEFAULT_SHAPE, ()
        self._calls = 0  # calls that returned, this dtype
        self._written = 0  # of them, calls that wrote into their input
        self._dtypes: dict[str, list[str]] = {"output": [], "gradient": []}

    # -- calling the backend --------------------------------------------------
    def _spec(self, rate: float, dtype: str, **kw: Any) -> DropoutSpec:
        kw.setdefault("broadcast_axes", self.axes)
        kw.setdefault("scaling", self.scaling or "inverted")
        kw.setdefault("kind", self.info.kind)
        if "seed" in self.caps:
            kw.setdefault("seed", CALL_SEED)
        return DropoutSpec(rate=rate, dtype=dtype, **kw)

    def _call(self, x: np.ndarray, grad_out: np.ndarray | None, spec: DropoutSpec) -> tuple[np.ndarray, np.ndarray | None]:
        """One backend call on fresh copies of x and grad_out; notes writes into them and the dtypes."""
        x_in = x.copy()
        g_in = grad_out.copy() if grad_out is not None else None
        try:
            if g_in is not None and "backward" in self.caps:
                y, grad = contract.checked_pair(self.backend.forward_backward(x_in, g_in, spec, api=self.api), x)
            else:
                y, grad = contract.checked_array(self.backend.forward(x_in, spec, api=self.api), x, "forward()"), None
        except Unsupported as exc:
            raise _Failed("skip", clean_message(exc).removeprefix("Unsupported: ")) from exc
        except contract.ContractViolation as exc:
            raise _Failed("error", str(exc)) from exc
        except Exception as exc:  # the framework's own behaviour: recorded, not hidden
            raise _Failed("error", clean_message(exc)) from exc
        self._calls += 1
        self._written += x_in.tobytes() != x.tobytes() or (g_in is not None and g_in.tobytes() != grad_out.tobytes())
        self._dtypes["output"].append(str(y.dtype))
        if grad is not None:
            self._dtypes["gradient"].append(str(grad.dtype))
        return y, grad

    # -- the plan -------------------------------------------------------------
    def run(self) -> Iterator[tuple[str, str, str]]:
        for dtype in CHECK_DTYPES:
            if dtype not in self.info.dtypes:
                yield f"*/{dtype}", "skip", f"{self.api} does not declare {dtype}"
                continue
            self._calls, self._written = 0, 0
            self._dtypes = {"output": [], "gradient": []}
            if self.scaling is None or self.scaling != SCALINGS[0]:
                yield from self._undeclared_scalings(dtype)
                if self.scaling is None:
                    continue
            yield from self._plan(dtype)
            yield from self._call_checks(dtype)

    def _plan(self, dtype: str) -> Iterator[tuple[str, str, str]]:
        """The check groups of one dtype (a Bernoulli API's; suite/verify/family.py has the other kinds')."""
        yield from self._guarded(f"identity/rate=0/{dtype}", lambda: self._rate_zero(dtype))
        yield from self._guarded(f"zeros/rate=1/{dtype}", lambda: self._rate_one(dtype))
        for rate in RATES[1:-1]:
            yield from self._guarded(f"train/rate={rate}/{dtype}", lambda rate=rate: self._train(rate, dtype))
        if "backward" not in self.caps:
            yield f"gradient/{dtype}", "skip", f"{self.api} does not declare 'backward'"
        yield from self._capability("eval", f"eval/{dtype}", lambda: self._eval(dtype))
        yield from self._capability("seed", f"seed/{dtype}", lambda: self._seed(dtype))
        if self._reference() is not None:
            yield from self._capability("seed", f"reference/{dtype}", lambda: self._same_as_reference(dtype))
        yield from self._capability("vanilla", f"vanilla/{dtype}", lambda: self._vanilla(dtype))
        if self.info.layout is None:  # a fixed layout is checked by mask-shared instead
            for shape, axes in BROADCAST_CASES:
                name = f"broadcast/axes={','.join(map(str, axes))}/{dtype}"
                yield from self._capability("broadcast_axes", name, lambda s=shape, a=axes: self._broadcast(s, a, dtype))

    def _undeclared_scalings(self, dtype: str) -> Iterator[tuple[str, str, str]]:
        """Skip records for the scalings the API does not declare (coverage reads them)."""
        for scaling in SCALINGS:
            if scaling not in self.scalings and (scaling != "vanilla" or self.scaling is None):
                then = f"; the training families run in {self.scaling} scaling" if self.scaling else ""
                yield f"{scaling}/{dtype}", "skip", undeclared(self.api, scaling) + then

    def _scale(self, keep: float) -> float:
        """What a kept value is multiplied by in training: 1/keep (inverted) or 1 (vanilla)."""
        return 1.0 / keep if self.scaling == "inverted" else 1.0

    def _call_checks(self, dtype: str) -> Iterator[tuple[str, str, str]]:
        """Exact checks over every call of this dtype: the dtypes returned, the input left alone."""
        if not self._calls:
            yield f"dtype/{dtype}", "skip", "no call of this dtype returned"
            return
        results = [(f"dtype/{dtype}", checks.dtype_kept(dtype, self._dtypes["output"]))]
        if self._dtypes["gradient"]:
            results.append((f"grad-dtype/{dtype}", checks.dtype_kept(dtype, self._dtypes["gradient"], out="gradient")))
        results.append((f"input-unchanged/{dtype}", checks.input_unchanged(self._calls, self._written, "inplace" in self.caps)))
        for name, outcome in results:
            yield name, "pass" if outcome.passed else "fail", outcome.detail

    def _capability(self, cap: str, name: str, body: Callable[[], Iterator[tuple[str, Outcome]]]) -> Iterator[tuple[str, str, str]]:
        if cap not in self.caps:
            yield name, "skip", undeclared(self.api, cap)
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
            yield f"identity-grad/rate=0/{dtype}", checks.identity(g, grad, out="gradient", ref="grad_out")

    def _rate_one(self, dtype: str) -> Iterator[tuple[str, Outcome]]:
        x, g = make_inputs(self.shape, dtype)
        y, grad = self._call(x, g, self._spec(1.0, dtype))
        yield f"zeros/rate=1/{dtype}", checks.zeros(y)
        if grad is not None:
            yield f"zero-grad/rate=1/{dtype}", checks.zeros(grad, out="gradient")

    def _train(self, rate: float, dtype: str) -> Iterator[tuple[str, Outcome]]:
        keep = 1.0 - rate
        x, g = make_inputs(self.shape, dtype)
        spec = self._spec(rate, dtype)
        y, grad = self._call(x, g, spec)
        tag = f"rate={rate}/{dtype}"
        mask = checks.kept_mask(y)
        yield f"values/{tag}", checks.scaled_values(x, y, self._scale(keep), self._p_all_dropped(rate, mask, self.axes))
        if self.axes:
            yield f"mask-shared/{tag}", checks.mask_shared(mask, self.axes)
        groups = checks.group_mask(mask, self.axes)
        yield f"kept-fraction/{tag}", checks.kept_fraction(groups, keep)
        yield f"mean/{tag}", checks.mean_preserved(x, y, keep, self.axes, scale=self._scale(keep))
        if rate == INDEPENDENCE_RATE:
            yield from self._independence(tag, x, groups, keep)
        if grad is not None:
            yield f"gradient/{tag}", checks.gradient_matches(x, y, g, grad)
        # the next call continues the stream: it must not reuse or correlate with the mask
        y2, _ = self._call(x, None, spec.replace(seed=None))
        second = checks.group_mask(checks.kept_mask(y2), self.axes)
        yield f"fresh-mask/{tag}", checks.independent_masks(groups, second, keep)
        if rate == INDEPENDENCE_RATE:
            yield from self._across_calls(tag, x, spec, [groups, second], keep)

    @staticmethod
    def _p_all_dropped(rate: float, like: np.ndarray, axes: tuple[int, ...]) -> float:
        """rate ** (number of mask groups): how often a correct dropout drops everything."""
        groups = int(np.prod([n for a, n in enumerate(np.shape(like)) if a not in axes]))
        return float(rate) ** groups

    def _eval(self, dtype: str) -> Iterator[tuple[str, Outcome]]:
        x, g = make_inputs(self.shape, dtype)
        y, grad = self._call(x, g, self._spec(0.5, dtype, training=False))
        if self.scaling == "vanilla":  # a vanilla-only API: eval is x*keep, its gradient grad_out*keep
            yield f"eval/{dtype}", checks.scaled_by(x, y, 0.5)
            if grad is not None:
                yield f"eval-grad/{dtype}", checks.scaled_by(g, grad, 0.5)
            return
        yield f"eval/{dtype}", checks.identity(x, y)
        if grad is not None:
            yield f"eval-grad/{dtype}", checks.identity(g, grad, out="gradient", ref="grad_out")

    def _seed_input(self, dtype: str) -> np.ndarray:
        """The input of the seed checks (FamilyChecker keeps alpha's kept and dropped values apart)."""
        return make_inputs(self.shape, dtype)[0]

    def _seed(self, dtype: str) -> Iterator[tuple[str, Outcome]]:
        x = self._seed_input(dtype)
        first, _ = self._call(x, None, self._spec(0.5, dtype, seed=7))
        self._call(x, None, self._spec(0.5, dtype, seed=8))
        again, _ = self._call(x, None, self._spec(0.5, dtype, seed=7))
        yield f"seed/{dtype}", checks.same_output(first, again)  # with another seed in between
        yield from self._cross_seed(x, dtype)  # another seed another, uncorrelated mask (was seed-changes-mask)

    def _reference(self) -> tuple[Any, str] | None:
        """(backend, api) whose output this API must equal bit for bit for the same seed (optional
        ``reference_for(api)`` hook: e.g. a GPU port of a CPU kernel that draws the same stream)."""
        hook = getattr(self.backend, "reference_for", None)
        return hook(self.api) if callable(hook) else None

    def _same_as_reference(self, dtype: str) -> Iterator[tuple[str, Outcome]]:
        reference, api = self._reference()  # type: ignore[misc]
        x, g = make_inputs(self.shape, dtype)
        spec = self._spec(0.5, dtype)
        y, grad = self._call(x, g, spec)
        try:
            if grad is None:
                ref_y, ref_grad = reference.forward(x.copy(), spec, api=api), None
            else:
                ref_y, ref_grad = reference.forward_backward(x.copy(), g.copy(), spec, api=api)
        except Exception as exc:
            raise _Failed("error", f"the reference {reference.name}:{api} failed: {clean_message(exc)}") from exc
        between = f"{self.backend.name}:{self.api} and its reference {reference.name}:{api} (seed {spec.seed})"
        yield f"reference/{dtype}", checks.same_output(y, ref_y, between=between)
        if grad is not None and ref_grad is not None:
            yield f"reference-grad/{dtype}", checks.same_output(grad, ref_grad, between=between)

    def _vanilla(self, dtype: str) -> Iterator[tuple[str, Outcome]]:
        x, _ = make_inputs(self.shape, dtype)
        for rate in RATES[1:-1]:
            keep = 1.0 - rate
            y, _ = self._call(x, None, self._spec(rate, dtype, scaling="vanilla"))
            tag = f"rate={rate}/{dtype}"
            yield f"vanilla-train/{tag}", checks.scaled_values(x, y, 1.0, self._p_all_dropped(rate, y, self.axes))
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
        yield f"broadcast-values/{tag}", checks.scaled_values(x, y, self._scale(keep), self._p_all_dropped(1 - keep, mask, axes))
        yield f"broadcast-kept-fraction/{tag}", checks.kept_fraction(checks.group_mask(mask, axes), keep)
        yield f"broadcast-lag/{tag}", checks.lag_agreement(checks.group_mask(mask, axes), keep)
        yield f"broadcast-position/{tag}", checks.position_uniform(checks.group_mask(mask, axes), keep)

    def _independence(self, tag: str, x: np.ndarray, groups: np.ndarray, keep: float) -> Iterator[tuple[str, Outcome]]:
        """Independence within the call: lags and offsets, position, |x| (the last only per element), spread."""
        yield f"lag/{tag}", checks.lag_agreement(groups, keep)
        yield f"position/{tag}", checks.position_uniform(groups, keep)
        if not self.axes:
            yield f"magnitude/{tag}", checks.magnitude_uniform(x, groups, keep)
        yield f"dispersion/{tag}", dispersion.groups_dispersion(groups, keep)

    # -- issue 25: independence between calls and seeds, spread of counts over calls ------------
    def _across_calls(self, tag: str, x: np.ndarray, spec: DropoutSpec, masks: list[np.ndarray],
                      keep: float) -> Iterator[tuple[str, Outcome]]:
        """The stream continued for CHAIN_CALLS masks in all: consecutive ones uncorrelated at every
        shift but 0 (fresh-mask's), and their kept counts spread as Binomial counts do."""
        while len(masks) < independence.CHAIN_CALLS:
            y, _ = self._call(x, None, spec.replace(seed=None))
            masks.append(checks.group_mask(self._mask_bits(x, y, spec.rate), self.axes))
        pairs = [(f"calls {i + 1},{i + 2}", masks[i], masks[i + 1]) for i in range(len(masks) - 1)]
        yield f"cross-call/{tag}", independence.masks_independent(pairs, keep, zero=False)
        yield f"call-dispersion/{tag}", dispersion.calls_dispersion(masks, keep)

    @staticmethod
    def _mask_bits(x: np.ndarray, y: np.ndarray, rate: float) -> np.ndarray:
        """One bit per element that the chain and seed tests compare: a Bernoulli API's kept mask (FamilyChecker:
        alpha's kept mask, the sign of Gaussian noise, both fair at rate 0.5)."""
        return checks.kept_mask(y)

    def _cross_seed(self, x: np.ndarray, dtype: str) -> Iterator[tuple[str, Outcome]]:
        """Seeds s, s+1, s+2, s+1000 give masks uncorrelated at every shift, 0 included."""
        keep, seeds = 1.0 - INDEPENDENCE_RATE, [CALL_SEED + d for d in independence.SEED_OFFSETS]
        masks = [checks.group_mask(self._mask_bits(x, self._call(x, None, self._spec(INDEPENDENCE_RATE, dtype, seed=s))[0],
                                                   INDEPENDENCE_RATE), self.axes) for s in seeds]
        pairs = [(f"seeds {seeds[i]},{seeds[j]}", masks[i], masks[j]) for i, j in independence.SEED_PAIRS]
        yield f"cross-seed/{dtype}", independence.masks_independent(pairs, keep, zero=True)


def check_api(backend: Any, api: str) -> list[CheckRecord]:
    """All conformance records for one API, in a fixed order."""
    api_id = f"{backend.name}:{api}"
    checker = ApiChecker(backend, api)
    if checker.info.kind != "bernoulli":  # Gaussian and alpha dropout: their own plan (suite/verify/family.py)
        from suite.verify.family import FamilyChecker  # noqa: PLC0415 (family builds on this module)

        checker = FamilyChecker(backend, api)
    return [CheckRecord(backend.name, api_id, check, status, detail) for check, status, detail in checker.run()]
