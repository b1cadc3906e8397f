"""A minimal, complete dropbench plugin: copy this file, rename the class, call your own dropout.

It follows only the plugin contract of the README ("Adding a backend"), not BaseBackend, so it
shows everything a third-party backend needs. Try it::

    dropbench verify --backend backends.example_plugin:ExampleDropout
    dropbench probe  --backend backends.example_plugin:ExampleDropout
    dropbench bench  --backend backends.example_plugin:ExampleDropout --quick

tests/test_architecture.py copies it into an empty folder and runs those three commands on it.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from backends.base import Unsupported


class ExampleDropout:
    """Inverted dropout in NumPy, seeded per call; declines what it cannot do with ``Unsupported``."""

    name = "example"  # API ids are "example:<api>"
    apis = ("dropout",)
    capabilities = {"seed", "backward", "eval"}  # no "vanilla", no "broadcast_axes": those checks are skipped
    dtypes = ("float32", "float16", "float64")  # the dtypes the checks and benchmarks may use

    def __init__(self) -> None:
        self._rng = np.random.default_rng(0)  # unseeded calls continue this stream

    # -- who am I ----------------------------------------------------------------------------
    def available(self) -> bool:
        return True  # False (a bool, never None) when your framework is missing; add unavailable_reason()

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__}

    def devices(self) -> list[str]:
        return ["cpu"]

    # -- the dropout --------------------------------------------------------------------------
    def _multiplier(self, x: np.ndarray, spec: Any) -> np.ndarray:
        if spec.scaling != "inverted":
            raise Unsupported("example:dropout has no vanilla (test-time scaling) mode")
        if not spec.training:
            return np.ones((1,) * x.ndim, dtype=x.dtype)
        if spec.seed is not None:
            self._rng = np.random.default_rng(spec.seed)
        keep = spec.keep_prob
        scale = 0.0 if keep == 0 else 1.0 / keep
        return ((self._rng.random(x.shape) < keep) * scale).astype(x.dtype)

    def forward(self, x: np.ndarray, spec: Any, *, api: str) -> np.ndarray:
        """y for x: a new array of x's shape and dtype; x itself is left as it was."""
        return x * self._multiplier(x, spec)

    def forward_backward(self, x: np.ndarray, grad_out: np.ndarray, spec: Any, *,
                         api: str) -> tuple[np.ndarray, np.ndarray]:
        """(y, dL/dx) for L = sum(y * grad_out), with the forward's own mask."""
        m = self._multiplier(x, spec)
        return x * m, grad_out * m

    # -- timing (optional: without it bench skips the API with that reason) ---------------------
    def prepare(self, shape: Sequence[int], spec: Any, *, api: str, direction: str,
                compiled: bool = False) -> Callable[[], None]:
        """Inputs made now, outside the timed closure; the closure does one step and waits for it."""
        if compiled:
            raise Unsupported("example:dropout has no compiled mode")
        x = np.ones(tuple(shape), dtype=spec.dtype)
        g = np.ones_like(x)
        if direction == "forward":
            return lambda: self.forward(x, spec, api=api)
        return lambda: self.forward_backward(x, g, spec, api=api)
