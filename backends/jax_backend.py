"""JAX: hand-written inverted dropout with explicit PRNG keys, and Flax NNX's Dropout module.

``random.bernoulli`` is the dropout every JAX tutorial writes (``jax.example_libraries.stax.Dropout``
with the rate as the drop probability)::

    keep = jax.random.bernoulli(key, 1 - rate, mask_shape)
    y = jnp.where(keep, x / (1 - rate), 0)

JAX has no global random state: every call takes a key. A seeded spec uses
``jax.random.PRNGKey(seed)``; an unseeded call splits a key the adapter holds, the way a training
loop threads its key, started from ``PRNGKey(0)`` as JAX's and Flax's docs do (so, as in a ported
JAX program, two fresh processes draw the same masks). ``flax.nnx.Dropout(rate, broadcast_dims=...,
rngs=nnx.Rngs(dropout=seed))`` is the layer; ``module.eval()`` is its inference mode (it sets
``deterministic=True``). Gradients come from ``jax.vjp`` (random.bernoulli) and
``nnx.value_and_grad`` (the module, so its RNG stream advances as in training).

Runs in the ``jax`` worker environment (numpy 2; backends/environments.toml). float64 is not declared:
without ``jax_enable_x64`` JAX silently computes it in float32.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from backends.base import ApiInfo, BaseBackend, Unavailable, Unsupported

_DTYPES = ("float32", "float16", "bfloat16")
PREPARE_INPUT_SEED = 20261126
UNSEEDED_START = 0  # the key an unseeded stream starts from: PRNGKey(0), as in JAX's and Flax's examples

Array = Any  # jax.Array; jax is not imported at module level
Impl = Callable[[np.ndarray, np.ndarray | None, Any], tuple[np.ndarray, np.ndarray | None]]


def pin_by_affinity(threads: int) -> dict[str, Any]:
    """XLA's CPU client sizes its pools from the CPUs it may run on and ignores the thread flags
    (measured with jax 0.10.2: --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1 still
    used both cores), so the process is confined to ``threads`` CPUs before jax is imported."""
    if not hasattr(os, "sched_setaffinity"):
        return {"note": "no sched_setaffinity on this platform: XLA may use every CPU"}
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, set(allowed[:threads]))
    return {"cpu_affinity": sorted(os.sched_getaffinity(0)), "of": len(allowed)}


class JaxBackend(BaseBackend):
    name = "jax"
    apis = ("random.bernoulli", "flax.nnx.Dropout")
    modules = ("jax", "jaxlib", "flax")
    environment = "jax"
    compiled_mode = "jit"
    infos = {
        # a bare function of (key, x): no inference mode, no vanilla scaling
        "random.bernoulli": ApiInfo(frozenset({"broadcast_axes", "seed", "backward"}), _DTYPES),
        "flax.nnx.Dropout": ApiInfo(frozenset({"broadcast_axes", "seed", "backward", "eval"}), _DTYPES),
    }

    def __init__(self) -> None:
        super().__init__()
        self._key: Array | None = None  # random.bernoulli: the key unseeded calls split
        self._rngs: Any = None  # flax: the nnx.Rngs unseeded modules fork their stream from

    # -- framework ----------------------------------------------------------------
    def pin_threads(self, threads: int) -> dict[str, Any]:
        return pin_by_affinity(threads)

    def _nnx(self) -> ModuleType:
        self.framework()
        try:
            return importlib.import_module("flax.nnx")
        except Exception as exc:
            raise Unavailable(f"flax failed to import: {type(exc).__name__}: {exc}") from exc

    def devices(self) -> list[str]:
        try:
            jax = self.framework()
        except Unavailable:
            return ["cpu"]
        try:
            gpus = jax.devices("gpu")
        except RuntimeError:  # no GPU backend in this jaxlib
            gpus = []
        return ["cpu"] + [f"cuda:{i}" for i in range(len(gpus))]

    def _device(self, device: str) -> Any:
        jax = self.framework()
        if device == "cpu":
            return jax.devices("cpu")[0]
        _, _, index = device.partition(":")
        return jax.devices("gpu")[int(index or 0)]

    # -- keys ---------------------------------------------------------------------
    def _next_key(self, spec: Any) -> Array:
        """PRNGKey(seed) for a seeded spec; else the next subkey of the adapter's stream."""
        jax = self.framework()
        if spec.seed is not None:
            return jax.random.PRNGKey(spec.seed)
        if self._key is None:
            self._key = jax.random.PRNGKey(UNSEEDED_START)
        self._key, sub = jax.random.split(self._key)
        return sub

    # -- the two APIs -------------------------------------------------------------
    def _bernoulli(self, spec: Any, shape: Sequence[int]) -> Callable[[Array, Array], Array]:
        """``dropout(key, x)``, written as JAX users write it; the rate goes in unchanged."""
        jax = self.framework()
        jnp = jax.numpy
        rate = spec.rate
        mask_shape = spec.mask_shape(tuple(shape))

        def dropout(key: Array, x: Array) -> Array:
            keep_prob = 1.0 - rate
            keep = jax.random.bernoulli(key, keep_prob, mask_shape)
            return jnp.where(keep, x / keep_prob, 0)

        return dropout

    def _module(self, spec: Any, ndim: int) -> Any:
        """nnx.Dropout as a model builds it: seeded from its own Rngs, else forked from the adapter's."""
        nnx = self._nnx()
        if spec.seed is not None:
            rngs = nnx.Rngs(dropout=spec.seed)
        else:
            if self._rngs is None:
                self._rngs = nnx.Rngs(dropout=UNSEEDED_START)
            rngs = self._rngs
        module = nnx.Dropout(spec.rate, broadcast_dims=spec.normalized_axes(ndim), rngs=rngs)
        if spec.training:
            module.train()
        else:
            module.eval()
        return module

    def _module_value_and_grad(self) -> Callable[[Any, Array, Array], tuple[tuple[Array, Array], Array]]:
        """``(module, x, g) -> ((sum(y*g), y), dL/dx)``: nnx's transform, so the module's stream advances."""
        nnx = self._nnx()
        jnp = self.framework().numpy

        def loss(module: Any, x: Array, g: Array) -> tuple[Array, Array]:
            y = module(x)
            return jnp.sum(y * g), y

        return nnx.value_and_grad(loss, argnums=1, has_aux=True)

    # -- checks -------------------------------------------------------------------
    def _impl(self, api: str) -> Impl:
        self._check_api(api)

        def run(x: np.ndarray, grad_out: np.ndarray | None, spec: Any) -> tuple[np.ndarray, np.ndarray | None]:
            jax = self.framework()
            device = self._device(spec.device)
            xj = jax.device_put(jax.numpy.asarray(x), device)
            gj = None if grad_out is None else jax.device_put(jax.numpy.asarray(grad_out), device)
            if api == "random.bernoulli":
                dropout, key = self._bernoulli(spec, x.shape), self._next_key(spec)
                if gj is None:
                    return np.asarray(dropout(key, xj)), None
                y, vjp = jax.vjp(lambda v: dropout(key, v), xj)
                return np.asarray(y), np.asarray(vjp(gj)[0])
            module = self._module(spec, x.ndim)
            if gj is None:
                return np.asarray(module(xj)), None
            (_, y), grad = self._module_value_and_grad()(module, xj, gj)
            return np.asarray(y), np.asarray(grad)

        return run

    def _compiled_impl(self, api: str) -> Impl:
        """:meth:`_impl` under ``jax.jit`` (``nnx.jit`` for the module), the vjp inside the jitted function."""
        self._check_api(api)

        def run(x: np.ndarray, grad_out: np.ndarray | None, spec: Any) -> tuple[np.ndarray, np.ndarray | None]:
            jax = self.framework()
            device = self._device(spec.device)
            xj = jax.device_put(jax.numpy.asarray(x), device)
            gj = None if grad_out is None else jax.device_put(jax.numpy.asarray(grad_out), device)
            if api == "random.bernoulli":
                dropout, key = self._bernoulli(spec, x.shape), self._next_key(spec)
                if gj is None:
                    return np.asarray(jax.jit(dropout)(key, xj)), None

                def fwd_bwd(key: Array, x: Array, g: Array) -> tuple[Array, Array]:
                    y, vjp = jax.vjp(lambda v: dropout(key, v), x)
                    return y, vjp(g)[0]

                y, grad = jax.jit(fwd_bwd)(key, xj, gj)
                return np.asarray(y), np.asarray(grad)
            nnx = self._nnx()
            module = self._module(spec, x.ndim)
            if gj is None:
                return np.asarray(nnx.jit(lambda m, v: m(v))(module, xj)), None
            (_, y), grad = nnx.jit(self._module_value_and_grad())(module, xj, gj)
            return np.asarray(y), np.asarray(grad)

        return run

    # -- timing -------------------------------------------------------------------
    def prepare(self, shape: Sequence[int], spec: Any, *, api: str, direction: str,
                compiled: bool = False) -> Callable[[], None]:
        """One timed step on device-resident data, ending in ``block_until_ready``.

        compiled=True is the "jit" mode: ``jax.jit`` (``nnx.jit`` for the module) around the whole
        step, key split included; eager runs the same Python op by op. A seed is applied once, here.
        """
        shape, backward = self._prepare_args(shape, spec, api, direction)
        if spec.dtype not in self.api_info(api).dtypes:
            raise Unsupported(f"{self.name}:{api} has no dtype {spec.dtype!r}")
        jax = self.framework()
        device = self._device(spec.device)
        k1, k2 = jax.random.split(jax.random.PRNGKey(PREPARE_INPUT_SEED))
        x = jax.device_put(jax.random.normal(k1, shape, dtype=spec.dtype), device)
        g = jax.device_put(jax.random.normal(k2, shape, dtype=spec.dtype), device) if backward else None
        if api == "random.bernoulli":
            return self._prepare_bernoulli(spec, x, g, compiled)
        return self._prepare_module(spec, x, g, compiled)

    def _prepare_bernoulli(self, spec: Any, x: Array, g: Array | None, compiled: bool) -> Callable[[], None]:
        jax = self.framework()
        dropout = self._bernoulli(spec, x.shape)

        def forward(key: Array, x: Array) -> tuple[Array, Array]:
            key, sub = jax.random.split(key)
            return key, dropout(sub, x)

        def forward_backward(key: Array, x: Array, g: Array) -> tuple[Array, Array, Array]:
            key, sub = jax.random.split(key)
            y, vjp = jax.vjp(lambda v: dropout(sub, v), x)
            return key, y, vjp(g)[0]

        fn: Callable[..., tuple[Array, ...]] = forward if g is None else forward_backward
        if compiled:
            fn = jax.jit(fn)
        args = (x,) if g is None else (x, g)
        key = [jax.device_put(self._next_key(spec), x.devices().pop())]

        def step() -> None:
            out = fn(key[0], *args)
            key[0] = out[0]
            jax.block_until_ready(out[1:])

        return step

    def _prepare_module(self, spec: Any, x: Array, g: Array | None, compiled: bool) -> Callable[[], None]:
        jax = self.framework()
        nnx = self._nnx()
        module = self._module(spec, x.ndim)
        if g is None:
            fn: Callable[..., Any] = lambda m, x: m(x)  # noqa: E731
            args: tuple[Array, ...] = (x,)
        else:
            fn, args = self._module_value_and_grad(), (x, g)
        if compiled:
            fn = nnx.jit(fn)

        def step() -> None:
            jax.block_until_ready(fn(module, *args))

        return step
