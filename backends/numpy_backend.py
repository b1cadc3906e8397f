"""NumPy: the reference formula (inverted and vanilla) and the d2l from-scratch layer.

NumPy has no autograd, so backward is written by hand: the gradient of sum(y * g) is
g times the same mask and scale as the forward pass.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from backends.base import CAPABILITIES, ApiInfo, BaseBackend


class NumpyBackend(BaseBackend):
    name = "numpy"
    apis = ("reference", "d2l-scratch")
    modules = ("numpy",)
    infos = {
        "reference": ApiInfo(capabilities=CAPABILITIES, dtypes=("float32", "float16", "float64")),
        # d2l's dropout_layer(X, dropout) is a bare function: no eval mode, no axes, no vanilla.
        "d2l-scratch": ApiInfo(capabilities=frozenset({"seed", "backward"}), dtypes=("float32", "float16", "float64")),
    }

    def __init__(self) -> None:
        super().__init__()
        self._rng = np.random.default_rng()

    def _impl(self, api: str):
        return {"reference": self._reference, "d2l-scratch": self._d2l}[api]

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
