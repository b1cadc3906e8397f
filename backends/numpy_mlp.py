"""The textbook MLP in NumPy: manual inverted-dropout mask, manual backward pass, plain SGD (float32)."""
from __future__ import annotations

import numpy as np

from suite.experiments.mlp_common import LAYER_KEYS, Problem, RunSpec

NAME = "numpy"
DTYPE = np.float32


def import_framework() -> object:
    return np


def versions() -> dict[str, str]:
    return {"numpy": np.__version__}


def runtime_info() -> dict[str, object]:
    return {"dtype": np.dtype(DTYPE).name}


def _softmax_xent(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(z) and its gradient d loss / d z."""
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, y]))
    grad = e / total
    grad[rows, y] -= 1
    return loss, grad / DTYPE(len(y))


class NumpyMLP:
    """784(or 64)-256-256-10 ReLU MLP; dropout (inverted) after each hidden layer."""

    def __init__(self, weights: dict[str, np.ndarray], rates: tuple[float, float], lr: float, seed: int,
                 dtype: type = DTYPE) -> None:
        self.dtype = dtype
        self.p = {k: np.array(weights[k], dtype=dtype) for k in LAYER_KEYS}
        self.rates = rates
        self.lr = dtype(lr)
        self.rng = np.random.default_rng(seed)

    def _dropout(self, h: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray | None]:
        """Inverted dropout: y = h * m / keep with m ~ Bernoulli(keep); the scaled mask is returned for backward."""
        if rate == 0.0:
            return h, None
        keep = 1.0 - rate
        scaled_mask = (self.rng.random(h.shape, dtype=np.float32) < keep).astype(self.dtype) / self.dtype(keep)
        return h * scaled_mask, scaled_mask

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        p = self.p
        x = x.astype(self.dtype, copy=False)
        z1 = x @ p["w1"] + p["b1"]
        d1, m1 = self._dropout(np.maximum(z1, 0), self.rates[0])
        z2 = d1 @ p["w2"] + p["b2"]
        d2, m2 = self._dropout(np.maximum(z2, 0), self.rates[1])
        z3 = d2 @ p["w3"] + p["b3"]
        loss, g3 = _softmax_xent(z3, y)
        grads = {"w3": d2.T @ g3, "b3": g3.sum(axis=0)}
        g = g3 @ p["w3"].T
        g = (g if m2 is None else g * m2) * (z2 > 0)
        grads.update(w2=d1.T @ g, b2=g.sum(axis=0))
        g = g @ p["w2"].T
        g = (g if m1 is None else g * m1) * (z1 > 0)
        grads.update(w1=x.T @ g, b1=g.sum(axis=0))
        for k in LAYER_KEYS:
            p[k] -= self.lr * grads[k]
        return loss

    def logits(self, x: np.ndarray) -> np.ndarray:
        p = self.p
        h = np.maximum(x.astype(self.dtype, copy=False) @ p["w1"] + p["b1"], 0)
        h = np.maximum(h @ p["w2"] + p["b2"], 0)
        return h @ p["w3"] + p["b3"]


def build(problem: Problem, spec: RunSpec) -> NumpyMLP:
    return NumpyMLP(problem.weights(spec.seed), spec.rates, problem.lr, spec.seed)
