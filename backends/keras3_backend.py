"""Keras 3: one ``keras.layers.Dropout`` layer, run on each Keras backend (jax, torch, tensorflow, numpy).

Keras 3 reads ``KERAS_BACKEND`` once, at import, so one process can host one Keras backend. Each
Keras backend is therefore its own registry entry (``keras3-jax``, ``keras3-torch``, ...) and its
own worker, while the backend *name* is ``keras3`` for all of them and the API is the Keras backend:
the API ids are ``keras3:jax``, ``keras3:torch``, ``keras3:tensorflow`` and ``keras3:numpy``.
``keras3-jax`` and ``keras3-numpy`` (Keras's NumPy backend imports jax) run in the ``jax`` worker
environment (numpy 2); ``keras3-torch`` and ``keras3-tensorflow`` in the main one.

The layer is called as users call it: ``Dropout(rate, noise_shape=..., seed=..., dtype=...)`` then
``layer(x, training=...)``; the rate goes in unchanged (Keras validates it). Gradients use each
backend's own autograd: ``jax.vjp`` over ``layer.stateless_call`` (the JAX training-loop idiom; the
seed state that comes back is written into the layer), ``torch.autograd.grad``, ``tf.GradientTape``;
the NumPy backend has none (backward is Unsupported). ``dtype=spec.dtype`` keeps Keras from
autocasting float16/float64 input to float32.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import replace
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from backends.attention_inputs import keras_attention, require_finite, weights_layout
from backends.base import ApiInfo, BaseBackend, Unsupported
from backends.jax_backend import pin_by_affinity
from backends.tensorflow_backend import pin_tensorflow_threads
from backends.torch_backend import pin_torch_threads

_LAYER = frozenset({"broadcast_axes", "seed", "backward", "eval"})
ATTENTION_SUFFIX = ".MultiHeadAttention"
# MultiHeadAttention(dropout=...): seed= and training= exist; no axes, and no backward (y is x times the
# weights' mask, multiplied by the adapter): see backends/attention_inputs.py
_ATTENTION_INFO = ApiInfo(frozenset({"seed", "eval"}), ("float32",))
PREPARE_INPUT_SEED = 20261126
FAMILY_LAYERS = {".GaussianDropout": "gaussian", ".AlphaDropout": "alpha"}
"""The dropout family (README, "The dropout family"): ``keras3:<backend>.GaussianDropout`` and ``.AlphaDropout``."""


def family(keras_backend: str, layer: ApiInfo) -> tuple[tuple[str, ...], dict[str, ApiInfo]]:
    """(API ids, ApiInfos) of the family's layers on one Keras backend, from its Dropout's ApiInfo.

    GaussianDropout(rate, seed) has no noise_shape; AlphaDropout(rate, noise_shape, seed) has.
    """
    infos = {}
    for suffix, kind in FAMILY_LAYERS.items():
        caps = layer.capabilities - ({"broadcast_axes"} if kind == "gaussian" else set())
        infos[keras_backend + suffix] = replace(layer, capabilities=frozenset(caps), kind=kind)
    return tuple(infos), infos

Tensor = Any  # a tensor of the Keras backend in use
Impl = Callable[[np.ndarray, np.ndarray | None, Any], tuple[np.ndarray, np.ndarray | None]]


class Keras3Backend(BaseBackend):
    """``keras.layers.Dropout`` on the Keras backend ``keras_backend`` (one per subclass)."""

    name = "keras3"
    keras_backend = ""  # "jax" | "torch" | "tensorflow" | "numpy"
    modules = ("keras",)
    environment: str | None = None
    worker_env: dict[str, str] = {}

    # -- framework ------------------------------------------------------------------
    def _conflict(self) -> str | None:
        """Why Keras in this process cannot run on our backend, or None.

        The adapter never sets KERAS_BACKEND itself: importing Keras on another backend inside a
        process that also runs the TensorFlow adapter (a plain `pytest`) would switch that adapter's
        Keras too. It runs where Keras already runs on its backend, or where KERAS_BACKEND names it
        before Keras is imported (dropbench's workers: ``worker_env``).
        """
        keras = sys.modules.get("keras")
        if keras is not None:
            try:
                actual = keras.backend.backend()
            except Exception:  # a half-imported keras: let the import report it
                return None
            if actual == self.keras_backend:
                return None
            return (f"Keras 3 already runs on {actual!r} in this process; keras3:{self.keras_backend} needs a process "
                    f"of its own with KERAS_BACKEND={self.keras_backend} (dropbench starts one per Keras backend)")
        wanted = os.environ.get("KERAS_BACKEND")
        if wanted != self.keras_backend:
            return (f"keras3:{self.keras_backend} needs a process started with KERAS_BACKEND={self.keras_backend} "
                    f"(this one has {wanted!r}); dropbench verify/probe/bench start one per Keras backend")
        return None

    def framework(self) -> ModuleType:
        if self._framework is None and self._import_error is None:
            self._import_error = self._conflict()
        return super().framework()

    def _import_framework(self) -> ModuleType:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        keras = importlib.import_module("keras")
        major = int(str(keras.__version__).split(".")[0])
        if major < 3:
            raise ImportError(f"keras {keras.__version__} is Keras 2; this backend needs Keras 3")
        return keras

    def _native(self) -> ModuleType:
        """The Keras backend's own framework module (jax, torch, tensorflow, numpy)."""
        self.framework()
        return importlib.import_module(self.keras_backend)

    def versions(self) -> dict[str, str]:
        out = super().versions()
        try:
            out[self.keras_backend] = str(getattr(self._native(), "__version__", "unknown"))
        except Exception as exc:
            out[self.keras_backend] = f"unavailable ({type(exc).__name__})"
        return out

    def devices(self) -> list[str]:
        return ["cpu"]

    @staticmethod
    def _keras_device(device: str) -> str:
        """spec.device as a ``keras.device`` name: "cpu", "gpu:N".

        Not "cpu:0": on the torch backend ``Parameter(...).to("cpu:0")`` is a copy that is no longer
        a Parameter, and building any layer with an integer variable (Dropout's seed state) then
        fails with "Only Tensors of floating point ... can require gradients" (Keras 3.15.1).
        """
        if device == "cpu":
            return "cpu"
        _, _, index = device.partition(":")
        return f"gpu:{index or 0}"

    # -- the layer --------------------------------------------------------------------
    def _layer(self, spec: Any, shape: Sequence[int], api: str = "") -> Any:
        keras = self.framework()
        noise_shape = spec.mask_shape(tuple(shape)) if spec.broadcast_axes else None
        suffix = "." + api.partition(".")[2]
        if suffix == ".GaussianDropout":
            return keras.layers.GaussianDropout(spec.rate, seed=spec.seed, dtype=spec.dtype)
        layer = keras.layers.AlphaDropout if suffix == ".AlphaDropout" else keras.layers.Dropout
        return layer(spec.rate, noise_shape=noise_shape, seed=spec.seed, dtype=spec.dtype)

    # -- per Keras backend: tensors in, autograd, synchronization -----------------------
    def _tensor(self, x: np.ndarray, device: str) -> Tensor:
        return self.framework().ops.convert_to_tensor(x)

    def _forward_backward(self, layer: Any, x: Tensor, g: Tensor, training: bool) -> tuple[Tensor, Tensor]:
        raise Unsupported(f"{self.name}:{self.keras_backend} has no backward")

    def _to_numpy(self, t: Tensor) -> np.ndarray:
        return np.asarray(self.framework().ops.convert_to_numpy(t))

    def _sync(self, outs: Sequence[Tensor]) -> None:
        """Wait for the backend's asynchronous work (nothing to do for eager CPU backends)."""

    # -- checks -----------------------------------------------------------------------
    def _impl(self, api: str) -> Impl:
        self._check_api(api)

        def run(x: np.ndarray, grad_out: np.ndarray | None, spec: Any) -> tuple[np.ndarray, np.ndarray | None]:
            keras = self.framework()
            with keras.device(self._keras_device(spec.device)):
                if api.endswith(ATTENTION_SUFFIX):
                    return self._attention(api, x, spec), None
                layer = self._layer(spec, x.shape, api)
                xt = self._tensor(x, spec.device)
                if grad_out is None:
                    return self._to_numpy(layer(xt, training=spec.training)), None
                y, grad = self._forward_backward(layer, xt, self._tensor(grad_out, spec.device), spec.training)
                return self._to_numpy(y), self._to_numpy(grad)

        return run

    def _attention(self, api: str, x: np.ndarray, spec: Any) -> np.ndarray:
        """MultiHeadAttention(dropout=rate, seed=seed): x times its dropped weights (backends/attention_inputs.py)."""
        dtypes = self.api_info(api).dtypes
        if x.dtype.name not in dtypes:
            raise Unsupported(f"{self.name}:{api} is probed in {', '.join(dtypes)} only, not {x.dtype.name}")
        require_finite(f"{self.name}:{api}", x)
        keras = self.framework()
        rows, _ = weights_layout(tuple(x.shape))
        if rows == 0:
            return x.copy()
        out = self._to_numpy(keras_attention(keras, x, spec, seeded=True)(spec.training))
        return x * out.reshape(x.shape).astype(x.dtype)

    def compiled_mode_for_probe(self, api: str) -> str | None:
        return None if api.endswith(ATTENTION_SUFFIX) else super().compiled_mode_for_probe(api)

    def _compiled_impl(self, api: str) -> Impl:
        """:meth:`_impl` inside the Keras backend's compilation (:meth:`_compiled_call`)."""
        self._check_api(api)

        def run(x: np.ndarray, grad_out: np.ndarray | None, spec: Any) -> tuple[np.ndarray, np.ndarray | None]:
            keras = self.framework()
            with keras.device(self._keras_device(spec.device)):
                layer = self._layer(spec, x.shape, api)
                xt = self._tensor(x, spec.device)
                g = None if grad_out is None else self._tensor(grad_out, spec.device)
                outs = self._compiled_call(layer, xt, g, spec.training)
                return self._to_numpy(outs[0]), (None if g is None else self._to_numpy(outs[1]))

        return run

    def _compiled_call(self, layer: Any, x: Tensor, g: Tensor | None, training: bool) -> tuple[Tensor, ...]:
        """(y,) or (y, dL/dx) computed once in the backend's compiled mode."""
        raise Unsupported(f"{self.name}:{self.keras_backend}: no compiled mode is probed for this Keras backend")

    # -- timing -----------------------------------------------------------------------
    def prepare(self, shape: Sequence[int], spec: Any, *, api: str, direction: str,
                compiled: bool = False) -> Callable[[], None]:
        """One timed step: the layer (built once) on device-resident input, then the backend's sync."""
        if api.endswith(ATTENTION_SUFFIX):
            raise Unsupported(f"{self.name}:{api}: attention dropout is probed, not timed (a timing would be the attention's)")
        shape, backward = self._prepare_args(shape, spec, api, direction)
        if spec.dtype not in self.api_info(api).dtypes:
            raise Unsupported(f"{self.name}:{api} has no dtype {spec.dtype!r}")
        keras = self.framework()
        rng = np.random.default_rng(PREPARE_INPUT_SEED)
        with keras.device(self._keras_device(spec.device)):
            layer = self._layer(spec, shape, api)
            x = self._tensor(rng.standard_normal(shape).astype(spec.dtype), spec.device)
            g = self._tensor(rng.standard_normal(shape).astype(spec.dtype), spec.device) if backward else None
            step = self._compiled_step(layer, x, g, spec.training) if compiled else None
        if compiled and step is None:
            raise Unsupported(f"{self.name}:{api}: no compiled mode is benchmarked for this Keras backend")
        device = self._keras_device(spec.device)

        def eager() -> None:
            with keras.device(device):
                outs = (layer(x, training=spec.training),) if g is None else self._forward_backward(layer, x, g, spec.training)
                self._sync(outs)

        return step or eager

    def _compiled_step(self, layer: Any, x: Tensor, g: Tensor | None, training: bool) -> Callable[[], None] | None:
        """The backend's graph mode around the step, or None where none is benchmarked."""
        return None


class Keras3Jax(Keras3Backend):
    keras_backend = "jax"
    apis = ("jax", "jax.MultiHeadAttention")
    environment = "jax"
    worker_env = {"KERAS_BACKEND": "jax"}
    compiled_mode = "jit"
    infos = {"jax": ApiInfo(_LAYER, ("float32", "float16", "bfloat16")),  # float64 needs jax_enable_x64
             "jax.MultiHeadAttention": _ATTENTION_INFO}
    _family_apis, _family_infos = family("jax", infos["jax"])
    apis, infos = apis + _family_apis, {**infos, **_family_infos}

    def pin_threads(self, threads: int) -> dict[str, Any]:
        return pin_by_affinity(threads)

    def devices(self) -> list[str]:
        try:
            jax = self._native()
            gpus = jax.devices("gpu")
        except Exception:
            gpus = []
        return ["cpu"] + [f"cuda:{i}" for i in range(len(gpus))]

    def _stateless(self, layer: Any, training: bool) -> Callable[[Tensor, list[Tensor]], tuple[Tensor, list[Tensor]]]:
        def call(x: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
            return layer.stateless_call([], state, x, training=training)

        return call

    def _forward_backward(self, layer: Any, x: Tensor, g: Tensor, training: bool) -> tuple[Tensor, Tensor]:
        jax = self._native()
        call = self._stateless(layer, training)
        state = [v.value for v in layer.non_trainable_variables]
        y, vjp, new_state = jax.vjp(lambda v: call(v, state), x, has_aux=True)
        for variable, value in zip(layer.non_trainable_variables, new_state):
            variable.assign(value)  # the seed generator moves on, as after a training step
        return y, vjp(g)[0]

    def _sync(self, outs: Sequence[Tensor]) -> None:
        self._native().block_until_ready(tuple(outs))

    def _compiled_call(self, layer: Any, x: Tensor, g: Tensor | None, training: bool) -> tuple[Tensor, ...]:
        """jax.jit of the stateless call (and its vjp) from the layer's seed state, as a jitted train step."""
        jax = self._native()
        call = self._stateless(layer, training)
        state = [v.value for v in layer.non_trainable_variables]
        if g is None:
            return (jax.jit(lambda s, v: call(v, s)[0])(state, x),)

        def fwd_bwd(s: list[Tensor], v: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
            y, vjp, _ = jax.vjp(lambda u: call(u, s), v, has_aux=True)
            return y, vjp(g)[0]

        return jax.jit(fwd_bwd)(state, x, g)

    def _compiled_step(self, layer: Any, x: Tensor, g: Tensor | None, training: bool) -> Callable[[], None] | None:
        """"jit": jax.jit of the stateless call (plus its vjp), the seed state threaded through."""
        jax = self._native()
        call = self._stateless(layer, training)

        def forward(state: list[Tensor], x: Tensor) -> tuple[list[Tensor], Tensor]:
            y, new_state = call(x, state)
            return new_state, y

        def forward_backward(state: list[Tensor], x: Tensor, g: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
            y, vjp, new_state = jax.vjp(lambda v: call(v, state), x, has_aux=True)
            return new_state, y, vjp(g)[0]

        fn = jax.jit(forward if g is None else forward_backward)
        args = (x,) if g is None else (x, g)
        holder = [[v.value for v in layer.non_trainable_variables]]

        def step() -> None:
            out = fn(holder[0], *args)
            holder[0] = out[0]
            jax.block_until_ready(out[1:])

        return step


class Keras3Torch(Keras3Backend):
    keras_backend = "torch"
    apis = ("torch", "torch.MultiHeadAttention")
    worker_env = {"KERAS_BACKEND": "torch"}
    infos = {"torch": ApiInfo(_LAYER, ("float32", "float16", "float64")), "torch.MultiHeadAttention": _ATTENTION_INFO}
    _family_apis, _family_infos = family("torch", infos["torch"])
    apis, infos = apis + _family_apis, {**infos, **_family_infos}

    def pin_threads(self, threads: int) -> dict[str, Any]:
        return pin_torch_threads(importlib.import_module("torch"), threads)

    def devices(self) -> list[str]:
        try:
            torch = self._native()
        except Exception:
            return ["cpu"]
        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    def _tensor(self, x: np.ndarray, device: str) -> Tensor:
        torch = self._native()
        return torch.tensor(x, device=torch.device(device))  # a copy: rate 0 / eval never alias the caller's array

    def _forward_backward(self, layer: Any, x: Tensor, g: Tensor, training: bool) -> tuple[Tensor, Tensor]:
        torch = self._native()
        x = x.detach().requires_grad_(True)
        y = layer(x, training=training)
        if not y.requires_grad:  # rate 1: torch.zeros_like, a constant with no autograd path to x
            return y, torch.zeros_like(x)
        (grad,) = torch.autograd.grad(y, x, g)
        return y, grad

    def _to_numpy(self, t: Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()

    def _sync(self, outs: Sequence[Tensor]) -> None:
        torch = self._native()
        if outs and outs[0].device.type == "cuda":
            torch.cuda.synchronize(outs[0].device)


class Keras3Tensorflow(Keras3Backend):
    keras_backend = "tensorflow"
    apis = ("tensorflow", "tensorflow.MultiHeadAttention")
    worker_env = {"KERAS_BACKEND": "tensorflow"}
    compiled_mode = "tf.function"
    infos = {"tensorflow": ApiInfo(_LAYER, ("float32", "float16", "float64")),
             "tensorflow.MultiHeadAttention": _ATTENTION_INFO}
    _family_apis, _family_infos = family("tensorflow", infos["tensorflow"])
    apis, infos = apis + _family_apis, {**infos, **_family_infos}

    def pin_threads(self, threads: int) -> dict[str, Any]:
        return pin_tensorflow_threads(threads)

    def devices(self) -> list[str]:
        try:
            gpus = self._native().config.list_physical_devices("GPU")
        except Exception:
            return ["cpu"]
        return ["cpu"] + [f"cuda:{i}" for i in range(len(gpus))]

    def _tensor(self, x: np.ndarray, device: str) -> Tensor:
        return self._native().constant(x)

    def _forward_backward(self, layer: Any, x: Tensor, g: Tensor, training: bool) -> tuple[Tensor, Tensor]:
        tf = self._native()
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * g)
        # ZERO: at rate 1 the layer returns tf.zeros_like(x), a constant: dL/dx is 0, not None
        return y, tape.gradient(loss, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def _sync(self, outs: Sequence[Tensor]) -> None:
        tf = self._native()
        tf.concat([tf.reshape(t, [-1])[:1] for t in outs], 0).numpy()  # one element each waits for all

    def _compiled_call(self, layer: Any, x: Tensor, g: Tensor | None, training: bool) -> tuple[Tensor, ...]:
        """The step under tf.function, as model.fit runs it."""
        tf = self._native()
        if g is None:
            return (tf.function(lambda v: layer(v, training=training))(x),)
        return tuple(tf.function(lambda v, w: self._forward_backward(layer, v, w, training))(x, g))

    def _compiled_step(self, layer: Any, x: Tensor, g: Tensor | None, training: bool) -> Callable[[], None] | None:
        """"tf.function": the step traced once, as model.fit runs it."""
        tf = self._native()

        def body() -> Tensor:
            outs = (layer(x, training=training),) if g is None else self._forward_backward(layer, x, g, training)
            return tf.concat([tf.reshape(t, [-1])[:1] for t in outs], 0)

        fn = tf.function(body)
        fn.get_concrete_function()  # trace now, not inside the timed loop

        def step() -> None:
            fn().numpy()

        return step


class Keras3Numpy(Keras3Backend):
    keras_backend = "numpy"
    apis = ("numpy", "numpy.MultiHeadAttention")
    environment = "jax"  # Keras's NumPy backend imports jax (keras/src/backend/numpy/nn.py, Keras 3.15.1)
    worker_env = {"KERAS_BACKEND": "numpy"}
    # the NumPy backend is inference-only: no autograd, so no backward
    infos = {"numpy": ApiInfo(frozenset({"broadcast_axes", "seed", "eval"}), ("float32", "float16", "float64")),
             "numpy.MultiHeadAttention": _ATTENTION_INFO}
    _family_apis, _family_infos = family("numpy", infos["numpy"])
    apis, infos = apis + _family_apis, {**infos, **_family_infos}

    def _tensor(self, x: np.ndarray, device: str) -> Tensor:
        return np.array(x)  # a copy: rate 0 / eval return their input

    def _to_numpy(self, t: Tensor) -> np.ndarray:
        return np.asarray(t)
