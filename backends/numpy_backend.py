"""NumPy: the reference formula (inverted and vanilla), the d2l from-scratch layer, and numpy:fast.

NumPy has no autograd, so backward is written by hand: the gradient of sum(y * g) is
g times the same mask and scale as the forward pass. ``reference`` and ``d2l-scratch`` are
the yardsticks and stay as written; ``fast`` (backends/numpy_fast.py) is the tuned kernel:
same spec, its own random stream, a stored mask that backward reuses.

``fast.channel1d`` / ``fast.channel2d`` are the same kernel pinned to torch's Dropout1d / Dropout2d
layouts ((N, C, L) and (N, C, H, W), one mask value per channel). ``fast`` already does that
through ``broadcast_axes``; the pinned ids exist so that a benchmark compares channel dropout
with channel dropout (one random draw per 64 or 256 elements is a different amount of work
from one per element) and the conformance checks run the kernel's per-row path in those layouts.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from backends.base import CAPABILITIES, ApiInfo, BaseBackend, Layout, Traffic, Unsupported
from backends.numpy_fast import FastDropout, kernel_step, run_kernel, threads_from_env
from suite.spec import ALPHA_PRIME, alpha_affine, gaussian_std

_DTYPES = ("float32", "float16", "float64")
_UINT8_MASK = Traffic(mask="uint8")  # numpy:fast keeps a 1-byte mask (per mask group) for backward
_NOISE = Traffic(mask="x")  # the family's references keep their multiplier in x's dtype for backward
_FAMILY = frozenset({"seed", "backward", "eval"})
DIRECTIONS = ("forward", "forward_backward")
PREPARE_INPUT_SEED = 20261126
"""Seed of the timing inputs x and grad_out (their values do not matter, only that they are fixed)."""


class NumpyBackend(BaseBackend):
    name = "numpy"
    mlp_module = "backends.numpy_mlp"
    apis = ("reference", "d2l-scratch", "fast", "fast.channel1d", "fast.channel2d",
            "stochastic-depth", "gaussian", "alpha")
    modules = ("numpy",)
    infos = {
        "reference": ApiInfo(capabilities=CAPABILITIES, dtypes=_DTYPES),
        # d2l's dropout_layer(X, dropout) is a bare function: no eval mode, no axes, no vanilla.
        "d2l-scratch": ApiInfo(capabilities=frozenset({"seed", "backward"}), dtypes=_DTYPES),
        "fast": ApiInfo(capabilities=CAPABILITIES, dtypes=_DTYPES, traffic=_UINT8_MASK),
        "fast.channel1d": ApiInfo(capabilities=CAPABILITIES, dtypes=_DTYPES, layout=Layout(ndim=3, broadcast_axes=(2,)),
                                 traffic=_UINT8_MASK),
        "fast.channel2d": ApiInfo(capabilities=CAPABILITIES, dtypes=_DTYPES, layout=Layout(ndim=4, broadcast_axes=(2, 3)),
                                 traffic=_UINT8_MASK),
        # The dropout family (README, "The dropout family"): the papers' formulas, as the yardsticks.
        # stochastic-depth is the reference pinned to one mask value per sample of (N, C, H, W): drop path.
        "stochastic-depth": ApiInfo(capabilities=_FAMILY, dtypes=_DTYPES, layout=Layout(ndim=4, broadcast_axes=(1, 2, 3))),
        "gaussian": ApiInfo(capabilities=_FAMILY, dtypes=_DTYPES, traffic=_NOISE, kind="gaussian"),
        "alpha": ApiInfo(capabilities=_FAMILY | {"broadcast_axes"}, dtypes=_DTYPES, traffic=_NOISE, kind="alpha"),
    }

    def __init__(self, threads: int | None = None) -> None:
        """``threads`` for numpy:fast; None reads DROPBENCH_THREADS / OMP_NUM_THREADS / the CPU count."""
        super().__init__()
        self._rng = np.random.default_rng()
        self.threads = threads_from_env() if threads is None else int(threads)
        self._kernel: FastDropout | None = None

    def _impl(self, api: str):
        impls = {"reference": self._reference, "d2l-scratch": self._d2l, "stochastic-depth": self._reference,
                 "gaussian": self._gaussian, "alpha": self._alpha}
        return impls.get(api, self._fast)  # fast and its channel-layout ids

    # the family -----------------------------------------------------------
    def _gaussian(self, x: np.ndarray, grad_out: np.ndarray | None, spec: Any):
        """Gaussian dropout: y = x * r, r ~ N(1, rate/keep) per element (drawn in float64, kept in x's dtype)."""
        if spec.seed is not None:
            self._rng = np.random.default_rng(spec.seed)
        if not spec.training or spec.rate == 0.0:
            return x.copy(), (None if grad_out is None else grad_out.copy())
        noise = (1.0 + gaussian_std(spec.rate) * self._rng.standard_normal(x.shape)).astype(x.dtype)
        return x * noise, (None if grad_out is None else grad_out * noise)

    def _alpha(self, x: np.ndarray, grad_out: np.ndarray | None, spec: Any):
        """Alpha dropout: kept a*x + b, dropped a*alpha' + b (suite.spec.alpha_affine); d y/d x = a where kept, else 0."""  # noqa: E501
        if spec.seed is not None:
            self._rng = np.random.default_rng(spec.seed)
        if not spec.training or spec.rate == 0.0:
            return x.copy(), (None if grad_out is None else grad_out.copy())
        if spec.rate == 1.0:  # the limit the spec takes: every output 0, nothing flows back
            return np.zeros_like(x), (None if grad_out is None else np.zeros_like(grad_out))
        a, b, _ = alpha_affine(spec.rate)
        kept = np.broadcast_to(self._rng.random(spec.mask_shape(x.shape)) < spec.keep_prob, x.shape)
        # the paper's a*(x*d + alpha'*(1 - d)) + b, multiplied out as written: a dropped NaN or inf stays NaN
        y = (a * (x.astype(np.float64) * kept + ALPHA_PRIME * ~kept) + b).astype(x.dtype)
        slope = (kept * a).astype(x.dtype)
        return y, (None if grad_out is None else grad_out * slope)

    # reference -----------------------------------------------------------
    def _reference(self, x: np.ndarray, grad_out: np.ndarray | None, spec: Any):
        """Textbook dropout: m ~ Bernoulli(keep) over the mask shape, broadcast onto x."""
        if spec.seed is not None:
            self._rng = np.random.default_rng(spec.seed)
        keep = spec.keep_prob
        if not spec.training:
            factor = 1.0 if spec.scaling == "inverted" else keep
            multiplier = np.asarray(factor, dtype=x.dtype)
            return x * multiplier, (None if grad_out is None else grad_out * multiplier)
        mask = self._rng.random(spec.mask_shape(x.shape)) < keep
        if spec.scaling == "vanilla":
            scale = 1.0
        else:
            scale = 0.0 if keep == 0.0 else 1.0 / keep  # rate 1: zeros, not 0/0
        multiplier = (mask * scale).astype(x.dtype)
        y = x * multiplier
        return y, (None if grad_out is None else grad_out * multiplier)

    # d2l -----------------------------------------------------------------
    def _d2l(self, x: np.ndarray, grad_out: np.ndarray | None, spec: Any):
        """d2l.ai's dropout from scratch, including its p==1 and p==0 special cases."""
        if spec.seed is not None:
            np.random.seed(spec.seed)
        drop_prob = spec.rate
        assert 0 <= drop_prob <= 1
        if drop_prob == 1:
            y = np.zeros_like(x)
            return y, (None if grad_out is None else np.zeros_like(grad_out))
        if drop_prob == 0:
            return x, grad_out
        keep_prob = 1 - drop_prob
        mask = np.random.uniform(0, 1, x.shape) < keep_prob
        y = mask * x / keep_prob
        return y, (None if grad_out is None else mask * grad_out / keep_prob)

    # fast ------------------------------------------------------------------
    def fast_kernel(self) -> FastDropout:
        """The numpy:fast kernel; its random stream continues across calls like the others'."""
        if self._kernel is None:
            self._kernel = FastDropout(threads=self.threads)
        self._kernel.threads = self.threads
        return self._kernel


    def _fast(self, x: np.ndarray, grad_out: np.ndarray | None, spec: Any):
        """numpy:fast: the reference's semantics through the blocked 8-bit-first kernel."""
        return run_kernel(self.fast_kernel(), x, grad_out, spec)

    # timing ----------------------------------------------------------------
    def prepare(self, shape: Sequence[int], spec: Any, *, api: str, direction: str,
                compiled: bool = False) -> Callable[[], None]:
        """One timed step; inputs, outputs and (for fast) substreams and buffers exist before it runs.

        A given seed is applied once, here, so steps continue the stream like a training loop.
        reference and d2l-scratch run exactly as in the checks (they allocate per call: that is
        what they are); fast writes into preallocated y / grad, and its forward_backward runs
        forward, then a separate backward that reuses the stored mask.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if compiled:
            raise Unsupported(f"{self.name}:{api}: NumPy has no graph or compiled mode")
        backward = direction == "forward_backward"
        shape = tuple(int(n) for n in shape)
        self._check_axes(np.broadcast_to(np.float32(0), shape), spec, api)
        self._require(api, spec, backward=backward)
        if spec.dtype not in self.api_info(api).dtypes:
            raise Unsupported(f"{self.name}:{api} has no dtype {spec.dtype!r}")
        rng = np.random.default_rng(PREPARE_INPUT_SEED)
        x = rng.standard_normal(shape).astype(spec.dtype)
        grad_out = rng.standard_normal(shape).astype(spec.dtype) if backward else None
        if api.startswith("fast"):
            return self._prepare_fast(x, grad_out, spec)
        impl = self._impl(api)
        if spec.seed is not None:  # seed once, as a seeded call of that API does
            if api == "d2l-scratch":
                np.random.seed(spec.seed)
            else:  # the reference and the family's references draw from self._rng
                self._rng = np.random.default_rng(spec.seed)
        step_spec = spec.replace(seed=None)

        def step() -> None:
            impl(x, grad_out, step_spec)

        return step

    def _prepare_fast(self, x: np.ndarray, grad_out: np.ndarray | None, spec: Any) -> Callable[[], None]:
        kernel = self.fast_kernel()
        return kernel_step(kernel, x, grad_out, spec,
                           warm=lambda keep, scale, mask_shape, y, grad: kernel.prepare(x.shape, mask_shape))
