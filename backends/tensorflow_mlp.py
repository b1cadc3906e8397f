"""The textbook MLP in TensorFlow with Keras 3: layers.Dropout, a GradientTape step under tf.function,
SparseCategoricalCrossentropy(from_logits=True) and optimizers.SGD."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from suite.experiments.mlp_common import LAYER_KEYS, Problem, RunSpec

NAME = "tensorflow"


def import_framework() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    return tf


def _keras() -> Any:
    import_framework()
    import keras

    return keras


def versions() -> dict[str, str]:
    keras = _keras()
    return {"tensorflow": import_framework().__version__, "keras": keras.__version__, "keras_backend": keras.backend.backend()}


def runtime_info() -> dict[str, object]:
    tf = import_framework()
    return {"intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(), "dtype": "float32"}


class KerasMLP:
    def __init__(self, problem: Problem, spec: RunSpec) -> None:
        tf, keras = import_framework(), _keras()
        keras.utils.set_random_seed(spec.seed)
        w = problem.weights(spec.seed)
        layers = keras.layers
        self.model = keras.Sequential([
            keras.Input((w["w1"].shape[0],)),
            layers.Dense(w["w1"].shape[1], activation="relu"), layers.Dropout(spec.rates[0], seed=spec.seed),
            layers.Dense(w["w2"].shape[1], activation="relu"), layers.Dropout(spec.rates[1], seed=spec.seed + 1),
            layers.Dense(w["w3"].shape[1]),
        ])
        self.model.set_weights([w[k] for k in LAYER_KEYS])  # Dense kernels are (in, out) like ours
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)  # mean over the batch
        opt = keras.optimizers.SGD(learning_rate=problem.lr)  # momentum 0
        opt.build(self.model.trainable_variables)
        model = self.model

        @tf.function(reduce_retracing=True)
        def step(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
            return loss

        self._step = step
        self._tf = tf

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(self._step(self._tf.constant(x), self._tf.constant(y)).numpy())

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.model(self._tf.constant(x), training=False).numpy()


def build(problem: Problem, spec: RunSpec) -> KerasMLP:
    return KerasMLP(problem, spec)
