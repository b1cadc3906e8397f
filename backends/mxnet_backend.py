"""MXNet 1.9: the ``nd.Dropout`` operator, the Gluon ``Dropout`` block and d2l.ai's from-scratch layer.

MXNet decides training vs. inference from autograd's *train mode*, not from an argument:
``autograd.record()`` switches training on (``train_mode=True`` by default), plain calls
outside ``record`` run in predict mode, where dropout is the identity. So ``spec.training``
maps to the autograd scope a user would open, never to a flag on the op. Edge cases (p=1
gives NaN, float16 in the d2l layer raises) are returned or raised as MXNet produces them.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from backends.base import ApiInfo, BaseBackend, Unsupported, set_thread_env

Fn = Callable[[Any], Any]  # NDArray -> NDArray; NDArray is not importable without mxnet
Step = Callable[[np.ndarray, np.ndarray | None, Any], tuple[np.ndarray, np.ndarray | None]]

_FLOATS = ("float32", "float16", "float64")


class MxnetBackend(BaseBackend):
    name = "mxnet"
    apis = ("nd.Dropout", "gluon.nn.Dropout", "d2l-scratch")
    modules = ("mxnet",)
    mlp_module = "backends.mxnet_mlp"
    infos = {
        # Inverted scaling only; inference via autograd's predict mode; mask sharing via ``axes``.
        "nd.Dropout": ApiInfo(
            capabilities=frozenset({"broadcast_axes", "seed", "backward", "eval"}), dtypes=_FLOATS
        ),
        "gluon.nn.Dropout": ApiInfo(
            capabilities=frozenset({"broadcast_axes", "seed", "backward", "eval"}), dtypes=_FLOATS,
            compiled="hybridized",
        ),
        # A bare function: no eval mode, no axes. Its float32 uniform mask cannot multiply a
        # float16/float64 NDArray (MXNet raises "Incompatible attr"), so float32 only.
        "d2l-scratch": ApiInfo(capabilities=frozenset({"seed", "backward"}), dtypes=("float32",)),
    }

    # -- framework ------------------------------------------------------------
    def pin_threads(self, threads: int) -> dict[str, Any]:
        """MXNet sizes its CPU worker pool from MXNET_CPU_WORKER_NTHREADS / OMP_NUM_THREADS at import."""
        return {"env": set_thread_env(("MXNET_CPU_WORKER_NTHREADS",), threads)}

    def _import_framework(self) -> ModuleType:
        """MXNet 1.9.1 reads ``np.bool`` at import, which NumPy >= 1.24 removed; restore the alias."""
        numpy = importlib.import_module("numpy")
        if "bool" not in vars(numpy):  # vars(): hasattr() would trigger NumPy's FutureWarning
            numpy.bool = bool  # type: ignore[attr-defined]
        return importlib.import_module("mxnet")

    def devices(self) -> list[str]:
        mx = self.framework()
        return ["cpu"] + [f"cuda:{i}" for i in range(mx.context.num_gpus())]

    def _context(self, device: str) -> Any:
        """``cpu`` -> mx.cpu(), ``cuda[:N]`` -> mx.gpu(N)."""
        mx = self.framework()
        if device == "cpu":
            return mx.cpu()
        return mx.gpu(int(device.partition(":")[2] or 0))

    # -- per-API callables ------------------------------------------------------
    def _build(self, api: str, spec: Any, ndim: int, *, compiled: bool = False) -> Fn:
        """The user-level call for ``api``: one function NDArray -> NDArray, shared by _impl and prepare."""
        mx = self.framework()
        if api == "nd.Dropout":
            if compiled:
                raise Unsupported(f"{self.name}:{api} is an imperative operator; there is nothing to hybridize")
            axes = spec.normalized_axes(ndim)
            # mode="training" (the default): drop only in train mode, as in normal training.
            return lambda x: mx.nd.Dropout(x, p=spec.rate, axes=axes, mode="training")
        if api == "gluon.nn.Dropout":
            block = mx.gluon.nn.Dropout(spec.rate, axes=spec.normalized_axes(ndim))
            block.initialize()  # parameter-free, but this is what a user does before calling a block
            if compiled:
                block.hybridize()
            return block
        if api == "d2l-scratch":
            if compiled:
                raise Unsupported(f"{self.name}:{api} is a plain Python function; there is nothing to hybridize")
            nd = mx.nd
            drop_prob = spec.rate

            def dropout(X: Any) -> Any:  # d2l.ai (MXNet), verbatim
                assert 0 <= drop_prob <= 1
                keep_prob = 1 - drop_prob
                if keep_prob == 0:
                    return X.zeros_like()
                mask = nd.random.uniform(0, 1, X.shape) < keep_prob
                return mask * X / keep_prob

            return dropout
        self._check_api(api)  # raises ValueError naming the known APIs
        raise AssertionError(f"{api!r} is listed in apis but has no builder")

    def _run(self, fn: Fn, x: Any, grad_out: Any | None, spec: Any) -> Any:
        """One step as a user writes it; fills ``x.grad`` when ``grad_out`` is given.

        Forward-only inference is a plain call (predict mode); anything that trains or needs a
        gradient runs under ``autograd.record(train_mode=spec.training)``.
        """
        mx = self.framework()
        if spec.seed is not None:
            mx.random.seed(spec.seed)
        if grad_out is None and not spec.training:
            return fn(x)
        with mx.autograd.record(train_mode=spec.training):
            y = fn(x)
        if grad_out is not None:
            y.backward(grad_out)
        return y

    def _compiled_impl(self, api: str) -> Step:
        """The hybridized block (gluon.nn.Dropout); the others raise Unsupported with the reason."""
        return self._impl(api, compiled=True)

    def _impl(self, api: str, *, compiled: bool = False) -> Step:
        def step(x: np.ndarray, grad_out: np.ndarray | None, spec: Any) -> tuple[np.ndarray, np.ndarray | None]:
            mx = self.framework()
            ctx = self._context(spec.device)
            fn = self._build(api, spec, x.ndim, compiled=compiled)
            # dtype= is needed: mx.nd.array turns float64 input into float32 by default.
            x_nd = mx.nd.array(x, ctx=ctx, dtype=x.dtype)
            g_nd = None
            if grad_out is not None:
                g_nd = mx.nd.array(grad_out, ctx=ctx, dtype=grad_out.dtype)
                x_nd.attach_grad()
            y = self._run(fn, x_nd, g_nd, spec)
            return y.asnumpy(), (None if g_nd is None else x_nd.grad.asnumpy())

        self._check_api(api)
        return step

    # -- timing ---------------------------------------------------------------------
    def prepare(
        self, shape: Sequence[int], spec: Any, *, api: str, direction: str, compiled: bool = False
    ) -> Callable[[], None]:
        """A closure running one step on data already on the device.

        ``mx.nd.waitall()`` at the end: MXNet's engine is asynchronous, so without it the
        closure would time only the enqueueing of the work.
        """
        shape, backward = self._prepare_args(shape, spec, api, direction)
        mx = self.framework()
        ctx = self._context(spec.device)
        fn = self._build(api, spec, len(shape), compiled=compiled)
        x = mx.nd.random.normal(shape=shape, dtype=spec.dtype, ctx=ctx)
        grad_out = mx.nd.random.normal(shape=shape, dtype=spec.dtype, ctx=ctx) if backward else None
        if backward:
            x.attach_grad()
        mx.nd.waitall()

        def run() -> None:
            self._run(fn, x, grad_out, spec)
            mx.nd.waitall()

        return run
