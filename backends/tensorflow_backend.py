"""TensorFlow: tf.nn.dropout, its TF1 keep_prob form, the Keras 3 and legacy Keras 2 layers,
the legacy RNN DropoutWrapper and the stateless op.

Every API is called the way its users call it, with the spec passed through unchanged: edge
rates and dtypes go to the framework as they are, so what TF does with them (e.g. the
ValueError of ``tf.nn.dropout`` at rate 1) is what the suite records. TensorFlow, Keras and
tf_keras are imported lazily, inside the adapter, so this module imports without them.

Seeding follows each API's own idiom: ``tf.random.set_seed(seed)`` plus the op/layer seed for
the stateful ops (the eager op-seed kernels keep state, so the op seed alone does not repeat
a mask within one process); the Keras 3 layer seed alone (its SeedGenerator feeds stateless
ops); an explicit ``[seed, 0]`` for the stateless op.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from backends.attention_inputs import keras_attention, require_finite, weights_layout
from backends.base import ApiInfo, BaseBackend, Unavailable, Unsupported, set_thread_env

Tensor = Any  # a tf.Tensor; TF is not imported at module level
Drop = Callable[[Tensor], Tensor]
Impl = Callable[[np.ndarray, np.ndarray | None, Any], tuple[np.ndarray, np.ndarray | None]]  # see BaseBackend._impl

_DTYPES = ("float32", "float16", "float64")
_OPS = frozenset({"broadcast_axes", "seed", "backward"})  # functions: no inference mode
_LAYERS = _OPS | {"eval"}  # Keras layers take training=
_FAMILY_LAYERS = {"tf_keras.layers.GaussianDropout": "GaussianDropout", "tf_keras.layers.AlphaDropout": "AlphaDropout"}


def _legacy_rnn_cell_module() -> ModuleType:
    """The module ``tf.compat.v1.nn.rnn_cell`` routes to under legacy Keras (TF_USE_LEGACY_KERAS).

    With Keras 3 ``tf.compat.v1.nn.rnn_cell.DropoutWrapper`` raises "not available with
    Keras 3"; tf_keras' v1 API export is the same class, reachable without the env var.
    """
    try:
        return importlib.import_module("tf_keras.api._v1.keras.__internal__.legacy.rnn_cell")
    except ImportError:  # layout of older/newer tf_keras: the defining modules
        wrappers = importlib.import_module("tf_keras.src.layers.rnn.legacy_cell_wrappers")
        cells = importlib.import_module("tf_keras.src.layers.rnn.legacy_cells")
        mod = ModuleType("rnn_cell")
        mod.DropoutWrapper, mod.RNNCell = wrappers.DropoutWrapper, cells.RNNCell
        return mod


def import_tensorflow_quietly() -> ModuleType:
    """TF with its start-up log silenced, and growing GPU memory: other libraries in the same
    worker (the device baselines) still find memory after TensorFlow has started."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    return importlib.import_module("tensorflow")


def pin_tensorflow_threads(threads: int) -> dict[str, Any]:
    """TF's intra/inter-op pools: variables before the import, then the config API (refused once
    the runtime has started, which is reported, not raised)."""
    out: dict[str, Any] = {"env": set_thread_env(("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"), threads)}
    tf = import_tensorflow_quietly()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as exc:  # the runtime was initialised before us
        out["error"] = str(exc).splitlines()[0]
    out.update({"tf.intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                "tf.inter_op": tf.config.threading.get_inter_op_parallelism_threads()})
    return out


class TensorflowBackend(BaseBackend):
    name = "tensorflow"
    apis = (
        "tf.nn.dropout",
        "compat.v1.nn.dropout",
        "keras.layers.Dropout",
        "tf_keras.layers.Dropout",
        "DropoutWrapper",
        "stateless_dropout",
        "tf_keras.layers.MultiHeadAttention",
        "tf_keras.layers.GaussianDropout",
        "tf_keras.layers.AlphaDropout",
    )
    modules = ("tensorflow", "keras", "tf_keras")
    compiled_mode = "tf.function"
    mlp_module = "backends.tensorflow_mlp"
    infos = {
        "tf.nn.dropout": ApiInfo(capabilities=_OPS, dtypes=_DTYPES),
        "compat.v1.nn.dropout": ApiInfo(capabilities=_OPS, dtypes=_DTYPES),
        "keras.layers.Dropout": ApiInfo(capabilities=_LAYERS, dtypes=_DTYPES),
        "tf_keras.layers.Dropout": ApiInfo(capabilities=_LAYERS, dtypes=_DTYPES),
        # Output dropout of an RNN cell: no noise_shape, no training flag (keep_prob=1 is "eval").
        "DropoutWrapper": ApiInfo(capabilities=frozenset({"seed", "backward"}), dtypes=_DTYPES),
        "stateless_dropout": ApiInfo(capabilities=_OPS, dtypes=_DTYPES),
        # Attention dropout (backends/attention_inputs.py): no seed= argument (tf.random.set_seed seeds it),
        # no axes, no backward (y is x times the weights' mask, multiplied by the adapter).
        "tf_keras.layers.MultiHeadAttention": ApiInfo(capabilities=frozenset({"seed", "eval"}), dtypes=("float32",)),
        # The dropout family (README, "The dropout family"): GaussianDropout(rate, seed) has no noise_shape.
        "tf_keras.layers.GaussianDropout": ApiInfo(capabilities=_LAYERS - {"broadcast_axes"}, dtypes=_DTYPES,
                                                   kind="gaussian"),
        "tf_keras.layers.AlphaDropout": ApiInfo(capabilities=_LAYERS, dtypes=_DTYPES, kind="alpha"),
    }

    def __init__(self) -> None:
        super().__init__()
        self._stateless_gen: Any = None  # tf.random.Generator: seeds for unseeded stateless calls
        self._identity_cell: type | None = None

    # -- framework ------------------------------------------------------------
    def _import_framework(self) -> ModuleType:
        """Import TF quietly; Keras 3 and tf_keras stay importable side by side (no TF_USE_LEGACY_KERAS)."""
        return import_tensorflow_quietly()

    def pin_threads(self, threads: int) -> dict[str, Any]:
        return pin_tensorflow_threads(threads)

    def _module(self, name: str) -> ModuleType:
        """keras / tf_keras, imported on first use; missing means this API is unavailable."""
        self.framework()
        try:
            return importlib.import_module(name)
        except Exception as exc:
            raise Unavailable(f"{name} failed to import: {type(exc).__name__}: {exc}") from exc

    def devices(self) -> list[str]:
        try:
            gpus = self.framework().config.list_physical_devices("GPU")
        except Unavailable:
            return ["cpu"]
        return ["cpu"] + [f"cuda:{i}" for i in range(len(gpus))]

    @staticmethod
    def _tf_device(device: str) -> str:
        """spec.device ("cpu", "cuda", "cuda:N") as a TF device string."""
        if device == "cpu":
            return "/CPU:0"
        _, _, index = device.partition(":")
        return f"/GPU:{index or 0}"

    # -- seeding ----------------------------------------------------------------
    def _generator(self) -> Any:
        """The stream behind unseeded stateless calls; created once, on the host."""
        if self._stateless_gen is None:
            tf = self.framework()
            with tf.device("/CPU:0"):
                self._stateless_gen = tf.random.Generator.from_non_deterministic_state()
        return self._stateless_gen

    def _reseed(self, api: str, spec: Any) -> None:
        """A seeded spec restarts the API's stream at its seed; None leaves every stream running."""
        if spec.seed is None:
            return
        tf = self.framework()
        tf.random.set_seed(spec.seed)  # global seed + op seed: the TF (and tf_keras) reproducibility idiom
        if api == "stateless_dropout":
            self._generator().reset_from_seed(spec.seed)  # later unseeded calls: deterministic, not repeated

    # -- one builder per API: (spec, shape) -> x -> y -----------------------------
    def _build(self, api: str, spec: Any, shape: Sequence[int]) -> Drop:
        """The API call with everything constructed up front (layers built once)."""
        tf = self.framework()
        noise_shape = list(spec.mask_shape(tuple(shape))) if spec.broadcast_axes else None
        rate, seed = spec.rate, spec.seed
        if api == "tf.nn.dropout":
            return lambda x: tf.nn.dropout(x, rate=rate, noise_shape=noise_shape, seed=seed)
        if api == "compat.v1.nn.dropout":
            keep_prob = 1 - rate
            return lambda x: tf.compat.v1.nn.dropout(x, keep_prob=keep_prob, noise_shape=noise_shape, seed=seed)
        if api in ("keras.layers.Dropout", "tf_keras.layers.Dropout"):
            keras = self._module(api.split(".")[0])
            # dtype=: by default a Keras layer autocasts float16/float64 input to float32.
            layer = keras.layers.Dropout(rate, noise_shape=noise_shape, seed=seed, dtype=spec.dtype)
            training = spec.training
            return lambda x: layer(x, training=training)
        if api in _FAMILY_LAYERS:
            layers = self._module("tf_keras").layers
            extra = {"noise_shape": noise_shape} if api == "tf_keras.layers.AlphaDropout" else {}
            layer = getattr(layers, _FAMILY_LAYERS[api])(rate, seed=seed, dtype=spec.dtype, **extra)
            training = spec.training
            return lambda x: layer(x, training=training)
        if api == "DropoutWrapper":
            return self._build_dropout_wrapper(spec, shape)
        if api == "tf_keras.layers.MultiHeadAttention":
            return self._build_attention(api, spec, shape)
        if api == "stateless_dropout":
            fixed = [seed, 0] if seed is not None else None
            gen = self._generator()

            def stateless(x: Tensor) -> Tensor:
                call_seed = fixed if fixed is not None else gen.make_seeds(1)[:, 0]
                return tf.nn.experimental.stateless_dropout(x, rate, seed=call_seed, noise_shape=noise_shape)

            return stateless
        raise ValueError(f"unknown api {api!r}")

    def _build_attention(self, api: str, spec: Any, shape: Sequence[int]) -> Drop:
        """tf_keras MultiHeadAttention(dropout=rate): x times its dropped weights."""
        tf = self.framework()
        dtypes = self.infos[api].dtypes
        if spec.dtype not in dtypes:
            raise Unsupported(f"{self.name}:{api} is probed in {', '.join(dtypes)} only, not {spec.dtype}")
        shape = tuple(int(n) for n in shape)
        if weights_layout(shape)[0] == 0:
            return lambda x: x * 0
        call = keras_attention(self._module("tf_keras"), np.zeros(shape, spec.dtype), spec, seeded=False)
        training = spec.training

        def attention(x: Tensor) -> Tensor:
            if x.dtype.name not in dtypes:
                raise Unsupported(f"{self.name}:{api} is probed in {', '.join(dtypes)} only, not {x.dtype.name}")
            return x * tf.reshape(call(training), shape)

        return attention

    def _build_dropout_wrapper(self, spec: Any, shape: Sequence[int]) -> Drop:
        """DropoutWrapper(identity cell, output_keep_prob=1-rate, seed=seed) on 2-d (batch, units)."""
        tf = self.framework()
        if len(shape) != 2:
            raise Unsupported(f"{self.name}:DropoutWrapper wraps an RNN cell step: needs 2-d (batch, units), got {tuple(shape)}")
        self._module("tf_keras")  # Unavailable, with the reason, when tf_keras is missing
        rnn_cell = _legacy_rnn_cell_module()
        if self._identity_cell is None:

            class IdentityCell(rnn_cell.RNNCell):
                """output = input, state passes through: only the wrapper's dropout acts."""

                def __init__(self, units: int, **kwargs: Any) -> None:
                    super().__init__(**kwargs)
                    self._units = units

                @property
                def state_size(self) -> int:
                    return self._units

                @property
                def output_size(self) -> int:
                    return self._units

                def call(self, inputs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
                    return inputs, state

            self._identity_cell = IdentityCell
        batch, units = int(shape[0]), int(shape[1])
        cell = rnn_cell.DropoutWrapper(self._identity_cell(units), output_keep_prob=1 - spec.rate, seed=spec.seed)
        state = tf.zeros((batch, units), dtype=spec.dtype)
        return lambda x: cell(x, state)[0]

    # -- running ------------------------------------------------------------------
    def _step(self, drop: Drop, x: Tensor, grad_out: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """y, and dL/dx for L = sum(y * grad_out) when grad_out is given."""
        tf = self.framework()
        if grad_out is None:
            return drop(x), None
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = drop(x)
            loss = tf.reduce_sum(y * grad_out)
        # ZERO: where an API returns a constant (Keras 3 at rate 1: zeros_like) dL/dx is 0, not None.
        return y, tape.gradient(loss, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def _impl(self, api: str) -> Impl:
        def run(x: np.ndarray, grad_out: np.ndarray | None, spec: Any) -> tuple[np.ndarray, np.ndarray | None]:
            tf = self.framework()
            if api == "tf_keras.layers.MultiHeadAttention":
                require_finite(f"{self.name}:{api}", x)
            with tf.device(self._tf_device(spec.device)):
                self._reseed(api, spec)
                drop = self._build(api, spec, x.shape)
                y, grad = self._step(drop, tf.constant(x), None if grad_out is None else tf.constant(grad_out))
                return y.numpy(), (None if grad is None else grad.numpy())

        return run

    def _compiled_impl(self, api: str) -> Impl:
        """:meth:`_impl` with the step (forward, and the tape's backward) inside one tf.function."""
        def run(x: np.ndarray, grad_out: np.ndarray | None, spec: Any) -> tuple[np.ndarray, np.ndarray | None]:
            tf = self.framework()
            if api == "tf_keras.layers.MultiHeadAttention":
                require_finite(f"{self.name}:{api}", x)
            with tf.device(self._tf_device(spec.device)):
                self._reseed(api, spec)
                drop = self._build(api, spec, x.shape)
                if grad_out is None:
                    return tf.function(drop)(tf.constant(x)).numpy(), None
                y, grad = tf.function(lambda a, b: self._step(drop, a, b))(tf.constant(x), tf.constant(grad_out))
                return y.numpy(), grad.numpy()

        return run

    def prepare(
        self, shape: Sequence[int], spec: Any, *, api: str, direction: str, compiled: bool = False
    ) -> Callable[[], None]:
        """One timed step on device-resident data; reading back one element waits for the async engine.

        Seeding happens once here, so timed steps continue the stream like a training loop.
        compiled=True traces the step with tf.function before returning.
        """
        if api == "tf_keras.layers.MultiHeadAttention":
            raise Unsupported(f"{self.name}:{api}: attention dropout is probed, not timed (a timing would be the attention's)")
        shape, backward = self._prepare_args(shape, spec, api, direction)
        tf = self.framework()
        with tf.device(self._tf_device(spec.device)):
            x = tf.random.normal(shape, dtype=spec.dtype)
            grad_out = tf.random.normal(shape, dtype=spec.dtype) if backward else None
            self._reseed(api, spec)
            drop = self._build(api, spec, shape)

            def step() -> Tensor:
                y, grad = self._step(drop, x, grad_out)
                # One element of each result: cheap to read, yet it depends on the whole op, and
                # keeping y stops tf.function from pruning the forward product out of a backward step.
                outs = [y] if grad is None else [y, grad]
                return tf.concat([tf.reshape(out, [-1])[:1] for out in outs], 0)

            if compiled:
                step = tf.function(step)
                step.get_concrete_function()  # trace now, not inside the timed loop
        device = self._tf_device(spec.device)

        def run() -> None:
            with tf.device(device):
                step().numpy()

        return run


class TensorflowPrevious(TensorflowBackend):
    """The same adapter in the "tf-prev" environment (the previous minor TF and tf_keras), for ``probe --diff``.

    Not in the registry: ``--backend backends.tensorflow_backend:TensorflowPrevious`` after ``dropbench env create tf-prev``.
    """

    environment = "tf-prev"
