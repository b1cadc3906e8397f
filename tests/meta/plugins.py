"""Third-party style backends for the meta-tests: one correct, and one per classic bug.

They follow only the documented plugin protocol (no BaseBackend), so they also prove that
`--backend module:attr` works for code outside this project.
"""
from __future__ import annotations

import numpy as np


class CorrectDropout:
    """A correct NumPy dropout written from the spec alone."""

    name = "plugin"
    apis = ("dropout",)
    capabilities = {"vanilla", "broadcast_axes", "seed", "backward", "eval"}
    dtypes = ("float32", "float16")

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def available(self) -> bool:
        return True

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__}

    def devices(self) -> list[str]:
        return ["cpu"]

    # the pieces each fault overrides ---------------------------------------
    def is_training(self, spec) -> bool:
        return spec.training

    def draw_mask(self, x: np.ndarray, spec) -> np.ndarray:
        if spec.seed is not None:
            self.rng = np.random.default_rng(spec.seed)
        return self.rng.random(self.mask_shape(x, spec)) < spec.keep_prob

    def mask_shape(self, x: np.ndarray, spec) -> tuple[int, ...]:
        return spec.mask_shape(x.shape)

    def train_scale(self, spec) -> float:
        if spec.scaling == "vanilla":
            return 1.0
        return 0.0 if spec.keep_prob == 0 else 1.0 / spec.keep_prob

    def eval_scale(self, spec) -> float:
        return 1.0 if spec.scaling == "inverted" else spec.keep_prob

    def grad_multiplier(self, multiplier: np.ndarray) -> np.ndarray:
        return multiplier

    # the protocol --------------------------------------------------------------
    def _multiplier(self, x: np.ndarray, spec) -> np.ndarray:
        if not self.is_training(spec):
            return np.full((1,) * x.ndim, self.eval_scale(spec), dtype=x.dtype)
        return (self.draw_mask(x, spec) * self.train_scale(spec)).astype(x.dtype)

    def forward(self, x, spec, *, api):
        return x * self._multiplier(x, spec)

    def forward_backward(self, x, grad_out, spec, *, api):
        multiplier = self._multiplier(x, spec)
        return x * multiplier, grad_out * self.grad_multiplier(multiplier)


class ScaleByRate(CorrectDropout):
    """Scales kept values by 1/rate instead of 1/keep."""

    def train_scale(self, spec) -> float:
        return 1.0 / spec.rate if spec.rate else 1.0


class RateKeepSwapped(CorrectDropout):
    """Treats the rate as a keep probability (the keep_prob/rate porting bug)."""

    def draw_mask(self, x, spec):
        return super().draw_mask(x, spec.replace(rate=spec.keep_prob))

    def train_scale(self, spec) -> float:
        return 0.0 if spec.rate == 0 else 1.0 / spec.rate


class MaskReused(CorrectDropout):
    """Draws a mask once per shape and reuses it for every later call."""

    def __init__(self) -> None:
        super().__init__()
        self.cache: dict[tuple, np.ndarray] = {}

    def draw_mask(self, x, spec):
        key = (self.mask_shape(x, spec), spec.keep_prob)
        if key not in self.cache:
            self.cache[key] = super().draw_mask(x, spec)
        return self.cache[key]


class GradientUnmasked(CorrectDropout):
    """Backward passes grad_out through unmasked (only scaled)."""

    def grad_multiplier(self, multiplier):
        return np.full_like(multiplier, multiplier.max() if multiplier.size else 1)


class TrainEvalSwapped(CorrectDropout):
    """Drops in eval mode and not in training."""

    def is_training(self, spec) -> bool:
        return not spec.training


class BroadcastNotShared(CorrectDropout):
    """Ignores broadcast axes: one mask value per element."""

    def mask_shape(self, x, spec):
        return x.shape


class VanillaAsInverted(CorrectDropout):
    """Applies inverted scaling when vanilla is asked for."""

    def train_scale(self, spec) -> float:
        return super().train_scale(spec.replace(scaling="inverted"))

    def eval_scale(self, spec) -> float:
        return 1.0


class SeedIgnored(CorrectDropout):
    """Claims seeding but never reseeds."""

    def draw_mask(self, x, spec):
        return super().draw_mask(x, spec.replace(seed=None))
