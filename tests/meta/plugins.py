"""Third-party style backends for the meta-tests: one correct, and one per classic bug.

They follow only the documented plugin protocol (no BaseBackend), so they also prove that
`--backend module:attr` works for code outside this project.
"""
from __future__ import annotations

import numpy as np

from backends.base import ApiInfo, Layout, Unsupported


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


# -- issue 14: one fault per check family, caught by that family alone ------------------------
# Each overrides one narrow piece of CorrectDropout. Shifts of the keep probability are applied
# where only the target family can see them (e.g. at rate 0.5, where the fresh-mask agreement
# keep^2 + rate^2 is flat in keep); sizes are argued in tests/meta/test_families.py.


def _is_inverted_train(spec) -> bool:
    return spec.training and spec.scaling == "inverted" and not spec.broadcast_axes


class _Rewrites(CorrectDropout):
    """Lets a fault rewrite (y, grad) after the correct computation."""

    def rewrite(self, x, grad_out, y, grad, spec):
        return y, grad

    def forward(self, x, spec, *, api):
        return self.rewrite(x, None, *super().forward_backward(x, np.ones_like(x), spec, api=api), spec)[0]

    def forward_backward(self, x, grad_out, spec, *, api):
        return self.rewrite(x, grad_out, *super().forward_backward(x, grad_out, spec, api=api), spec)


class RateZeroScaled(_Rewrites):
    """Rate 0 multiplies the output by 1.5 (the gradient stays right)."""

    def rewrite(self, x, grad_out, y, grad, spec):
        return (y * np.asarray(1.5, y.dtype), grad) if spec.training and spec.rate == 0 else (y, grad)


class RateZeroGradDropped(_Rewrites):
    """Rate 0: the backward returns zeros."""

    def rewrite(self, x, grad_out, y, grad, spec):
        return (y, np.zeros_like(grad)) if spec.training and spec.rate == 0 else (y, grad)


class RateOneIdentity(_Rewrites):
    """Rate 1 returns x (the gradient is zeros, as it should be)."""

    def rewrite(self, x, grad_out, y, grad, spec):
        return (x.copy(), grad) if spec.training and spec.rate == 1 else (y, grad)


class RateOneGradPassed(_Rewrites):
    """Rate 1: the backward passes grad_out through."""

    def rewrite(self, x, grad_out, y, grad, spec):
        return (y, grad_out.copy() if grad_out is not None else grad) if spec.training and spec.rate == 1 else (y, grad)


class OneValueOff(_Rewrites):
    """One kept value (and its gradient, consistently) is 1% off in inverted training."""

    def rewrite(self, x, grad_out, y, grad, spec):
        if _is_inverted_train(spec) and 0 < spec.rate < 1:
            i = int(np.flatnonzero(y)[0])
            y, grad = y.copy(), grad.copy()
            y.flat[i] *= 1.01
            grad.flat[i] *= 1.01
        return y, grad


class KeepSlightlyLow(CorrectDropout):
    """At rate 0.5 keeps with probability 0.483 (scaled by 1/0.5): only the overall kept count sees it."""

    def draw_mask(self, x, spec):
        if _is_inverted_train(spec) and spec.rate == 0.5:
            return super().draw_mask(x, spec.replace(rate=0.517))
        return super().draw_mask(x, spec)


class SignBiasedKeep(CorrectDropout):
    """At rate 0.5 keeps positive x with 0.53 and negative x with 0.41 (the same kept fraction overall,
    as 3/4 of the inputs are positive): kept values are unbiased no more, E[y] != x."""

    def draw_mask(self, x, spec):
        mask = super().draw_mask(x, spec)
        if _is_inverted_train(spec) and spec.rate == 0.5:
            u = self.rng.random(x.shape)
            return u < np.where(x > 0, 0.53, 0.41)
        return mask


class UnseededCallRepeats(CorrectDropout):
    """The first unseeded call after a seeded one reuses its mask (the stream is not advanced past a
    reseed); later unseeded calls draw afresh, so only the call right after the seeded one repeats."""

    def __init__(self) -> None:
        super().__init__()
        self.last: np.ndarray | None = None

    def draw_mask(self, x, spec):
        shape = self.mask_shape(x, spec)
        if spec.seed is None and self.last is not None and self.last.shape == shape:
            mask, self.last = self.last, None
        else:
            mask = super().draw_mask(x, spec)
            self.last = mask if spec.seed is not None else None
        return mask


class EvalScaled(_Rewrites):
    """Inverted eval multiplies the output by 1.5 (gradient right)."""

    def rewrite(self, x, grad_out, y, grad, spec):
        if not spec.training and spec.scaling == "inverted":
            return y * np.asarray(1.5, y.dtype), grad
        return y, grad


class EvalGradDropped(_Rewrites):
    """Inverted eval: the backward returns zeros."""

    def rewrite(self, x, grad_out, y, grad, spec):
        return (y, np.zeros_like(grad)) if not spec.training and spec.scaling == "inverted" else (y, grad)


class SeedValueIgnored(CorrectDropout):
    """A seed resets the stream, but every seed value resets it to the same state."""

    def draw_mask(self, x, spec):
        return super().draw_mask(x, spec.replace(seed=0) if spec.seed is not None else spec)


class VanillaTrainScaled(CorrectDropout):
    """Vanilla training scales by 1/keep (eval is right: x*keep)."""

    def train_scale(self, spec) -> float:
        return super().train_scale(spec.replace(scaling="inverted"))


class VanillaKeepOff(CorrectDropout):
    """Vanilla training keeps with keep - 0.05."""

    def draw_mask(self, x, spec):
        if spec.scaling == "vanilla" and spec.training:
            return super().draw_mask(x, spec.replace(rate=min(spec.rate + 0.05, 1.0)))
        return super().draw_mask(x, spec)


class VanillaEvalIdentity(CorrectDropout):
    """Vanilla eval returns x instead of x*keep."""

    def eval_scale(self, spec) -> float:
        return 1.0


class _BroadcastRewrite(CorrectDropout):
    def bmask(self, mask, spec):
        return mask

    def draw_mask(self, x, spec):
        mask = super().draw_mask(x, spec)
        return self.bmask(mask, spec) if spec.broadcast_axes else mask


class BroadcastOneUnshared(CorrectDropout):
    """With broadcast axes, one element of one kept group is dropped: the group is no longer shared."""

    def _multiplier(self, x, spec):
        multiplier = super()._multiplier(x, spec)
        if spec.broadcast_axes and spec.training:
            multiplier = np.broadcast_to(multiplier, x.shape).copy()
            i = int(np.flatnonzero(multiplier)[0])
            multiplier.flat[i] = 0
        return multiplier


class BroadcastScaleOff(CorrectDropout):
    """With broadcast axes, kept values are scaled 1% too much."""

    def train_scale(self, spec) -> float:
        scale = super().train_scale(spec)
        return scale * 1.01 if spec.broadcast_axes and spec.scaling == "inverted" else scale


class BroadcastKeepLow(_BroadcastRewrite):
    """With broadcast axes, groups are kept with 0.43 instead of 0.5."""

    def draw_mask(self, x, spec):
        if spec.broadcast_axes and spec.training:
            return super().draw_mask(x, spec.replace(rate=spec.rate + 0.07))
        return super().draw_mask(x, spec)


class BroadcastGroupsPaired(_BroadcastRewrite):
    """With broadcast axes, neighbouring groups along the last axis share one draw."""

    def bmask(self, mask, spec):
        if mask.shape[-1] < 2:
            return mask
        out = mask.copy()
        out[..., 1::2] = mask[..., 0:-1:2]
        return out


class BroadcastRowKeepsMore(_BroadcastRewrite):
    """With broadcast axes, one row of groups (index 3 of axis 0) keeps with 0.95."""

    def bmask(self, mask, spec):
        if mask.ndim < 2 or mask.shape[0] < 4:
            return mask
        out = mask.copy()
        out[3] = self.rng.random(mask[3].shape) < 0.95
        return out


class NeighboursShareDraw(CorrectDropout):
    """Element-wise: pairs of neighbours along the last axis share one random draw."""

    def draw_mask(self, x, spec):
        mask = super().draw_mask(x, spec)
        if spec.broadcast_axes or mask.shape[-1] < 2:
            return mask
        out = mask.copy()
        out[..., 1::2] = mask[..., 0:mask.shape[-1] - mask.shape[-1] % 2:2]
        return out


class PeriodicMask(CorrectDropout):
    """Element-wise: the mask repeats every 3000 elements of the flattened order (a reused substream)."""

    period = 3000

    def draw_mask(self, x, spec):
        shape = self.mask_shape(x, spec)
        if spec.broadcast_axes:
            return super().draw_mask(x, spec)
        if spec.seed is not None:
            self.rng = np.random.default_rng(spec.seed)
        n = int(np.prod(shape))
        block = self.rng.random(self.period) < spec.keep_prob
        return np.resize(block, n).reshape(shape)


class HalfRepeats(PeriodicMask):
    """Element-wise: the second half of the flattened mask repeats the first (one substream used twice)."""

    period = 32768


class KeepDrifts(CorrectDropout):
    """Element-wise: the keep probability drifts linearly by -0.05..+0.05 along the flattened order."""

    def draw_mask(self, x, spec):
        if spec.broadcast_axes or not spec.training or spec.rate in (0.0, 1.0):
            return super().draw_mask(x, spec)
        if spec.seed is not None:
            self.rng = np.random.default_rng(spec.seed)
        shape = self.mask_shape(x, spec)
        n = int(np.prod(shape))
        drift = np.linspace(-0.05, 0.05, n).reshape(shape) if n > 1 else np.zeros(shape)
        return self.rng.random(shape) < np.clip(spec.keep_prob + drift, 0, 1)


class KeepDependsOnMagnitude(CorrectDropout):
    """At rate 0.5, |x| < 0.1 keeps with 0.55 and 0.1 <= |x| < 1 with 0.45: E[y] hardly moves (small x)."""

    def draw_mask(self, x, spec):
        mask = super().draw_mask(x, spec)
        if _is_inverted_train(spec) and spec.rate == 0.5:
            a = np.abs(x.astype(np.float64))
            keep = np.where(a < 0.1, 0.55, np.where(a < 1.0, 0.45, 0.5))
            return self.rng.random(x.shape) < keep
        return mask


class PromotesFloat16(_Rewrites):
    """float16 input gives float32 output (the gradient keeps float16), like d2l's `.float()` mask."""

    def rewrite(self, x, grad_out, y, grad, spec):
        return (y.astype(np.float32) if y.dtype == np.float16 else y), grad


class GradPromotesFloat16(_Rewrites):
    """float16 input gives a float32 gradient."""

    def rewrite(self, x, grad_out, y, grad, spec):
        return y, (grad.astype(np.float32) if grad is not None and grad.dtype == np.float16 else grad)


class WritesInput(CorrectDropout):
    """Writes the result into the array it was given (inplace=True) without declaring 'inplace'."""

    def forward(self, x, spec, *, api):
        x *= self._multiplier(x, spec)
        return x

    def forward_backward(self, x, grad_out, spec, *, api):
        multiplier = self._multiplier(x, spec)
        x *= multiplier
        return x, grad_out * self.grad_multiplier(multiplier)


class InplaceDeclared(WritesInput):
    """The same in-place dropout, declaring it: correct, verify must certify it."""

    capabilities = CorrectDropout.capabilities | {"inplace"}


class PositiveOnly(CorrectDropout):
    """Right only for positive input: negative x passes through untouched (a relu-style shortcut)."""

    def forward(self, x, spec, *, api):
        y = super().forward(x, spec, api=api)
        return np.where(x < 0, x, y) if spec.training else y

    def forward_backward(self, x, grad_out, spec, *, api):
        y, grad = super().forward_backward(x, grad_out, spec, api=api)
        return (np.where(x < 0, x, y), np.where(x < 0, grad_out, grad)) if spec.training else (y, grad)


class Hidden16Groups(CorrectDropout):
    """A channel dropout declared element-wise: the mask is shared by runs of 16 elements of the last axis."""

    def mask_shape(self, x, spec):
        shape = super().mask_shape(x, spec)
        if spec.broadcast_axes or shape[-1] % 16:
            return shape
        return (*shape[:-1], shape[-1] // 16)

    def _multiplier(self, x, spec):
        multiplier = super()._multiplier(x, spec)
        if multiplier.shape[-1] != x.shape[-1] and multiplier.shape[-1] > 1:
            multiplier = np.repeat(multiplier, 16, axis=-1)
        return multiplier


class InvertedUnsupported(CorrectDropout):
    """Declares both scalings (the default) but every inverted training call raises Unsupported: not certified."""

    def forward(self, x, spec, *, api):
        if spec.scaling == "inverted" and spec.training and spec.rate not in (0.0, 1.0):
            raise Unsupported("only vanilla dropout here")
        return super().forward(x, spec, api=api)

    def forward_backward(self, x, grad_out, spec, *, api):
        self.forward(x, spec, api=api)
        return super().forward_backward(x, grad_out, spec, api=api)


class NoScaling(CorrectDropout):
    """A correct dropout that declares no training scaling at all: nothing runs, not certified."""

    scalings = ()


class VanillaOnly(InvertedUnsupported):
    """The classic paper's scheme only, declared so (scalings = ("vanilla",)); inverted calls still raise
    Unsupported. Correct: verify runs every family in vanilla scaling and must certify it."""

    scalings = ("vanilla",)


class AllUnsupported(CorrectDropout):
    """Every call raises Unsupported: nothing is tested, nothing may be certified."""

    def forward(self, x, spec, *, api):
        raise Unsupported("this build supports nothing")

    def forward_backward(self, x, grad_out, spec, *, api):
        return self.forward(x, spec, api=api)


class CorrectChannelDropout(CorrectDropout):
    """A correct channel dropout with a fixed layout, declared through ``api_info``."""

    name = "channel"
    apis = ("channel2d", "rows2d")

    def api_info(self, api):
        layout = {"channel2d": Layout(4, (2, 3)), "rows2d": Layout(2, (1,))}[api]
        return ApiInfo(frozenset(self.capabilities), tuple(self.dtypes), layout)


class ChannelOneGroupUnshared(CorrectChannelDropout):
    """Fixed layout: one element of one kept group is dropped."""

    def _multiplier(self, x, spec):
        multiplier = super()._multiplier(x, spec)
        if spec.training and spec.rate not in (0.0, 1.0):
            multiplier = np.broadcast_to(multiplier, x.shape).copy()
            multiplier.flat[int(np.flatnonzero(multiplier)[0])] = 0
        return multiplier


# -- issue 25: independence between calls and seeds, spread of kept counts -------------------


class HalfCallAdvance(CorrectDropout):
    """The stream advances by half a call: the first half of an unseeded call's uniforms are the
    second half of the previous call's (a counter advanced by n/2 instead of n)."""

    def __init__(self) -> None:
        super().__init__()
        self.carry: np.ndarray | None = None

    def draw_mask(self, x, spec):
        shape = self.mask_shape(x, spec)
        n = int(np.prod(shape))
        if spec.seed is not None:
            self.rng = np.random.default_rng(spec.seed)
        if spec.seed is None and self.carry is not None and self.carry.size == n - n // 2:
            u = np.concatenate([self.carry, self.rng.random(n // 2)])
        else:
            u = self.rng.random(n)
        self.carry = u[n // 2:]
        return (u < spec.keep_prob).reshape(shape)


class SeedAsOffset(CorrectDropout):
    """A seed is an offset into one fixed stream: seed s+1 gives seed s's mask moved by one element."""

    def draw_mask(self, x, spec):
        shape = self.mask_shape(x, spec)
        if spec.seed is None:
            return self.rng.random(shape) < spec.keep_prob
        self.rng = np.random.default_rng(0)
        u = self.rng.random(spec.seed + int(np.prod(shape)))[spec.seed:]
        return u.reshape(shape) < spec.keep_prob


class FixedCount(CorrectDropout):
    """Keeps exactly round(keep * n) elements (a random subset): every count sits at its mean, no spread."""

    def draw_mask(self, x, spec):
        shape = self.mask_shape(x, spec)
        if spec.seed is not None:
            self.rng = np.random.default_rng(spec.seed)
        n = int(np.prod(shape))
        mask = np.zeros(n, dtype=bool)
        mask[self.rng.permutation(n)[: round(spec.keep_prob * n)]] = True
        return mask.reshape(shape)


class RowKeepVaries(CorrectDropout):
    """Element-wise at rate 0.5: even rows keep with 0.55, odd rows with 0.45 (the right mean overall)."""

    def draw_mask(self, x, spec):
        mask = super().draw_mask(x, spec)
        if _is_inverted_train(spec) and spec.rate == 0.5 and mask.ndim >= 2:
            rows = np.where(np.arange(mask.shape[0]) % 2 == 0, 0.55, 0.45).reshape(-1, *[1] * (mask.ndim - 1))
            return self.rng.random(mask.shape) < rows
        return mask


class DiagonalShareDraw(CorrectDropout):
    """Element-wise: each odd row is the row above moved one column right (diagonal neighbours share a
    draw). Every row, column and block count is still Binomial; only the offset n_cols + 1 sees it."""

    def draw_mask(self, x, spec):
        mask = super().draw_mask(x, spec)
        if spec.broadcast_axes or mask.ndim < 2 or mask.shape[0] < 2:
            return mask
        out = mask.copy()
        rows = mask.shape[0] - mask.shape[0] % 2
        out[1:rows:2] = np.roll(mask[0:rows:2], 1, axis=-1)
        return out


class OneRowKeepsMore(CorrectDropout):
    """Element-wise at rate 0.5: row 3 keeps with 0.8 (one channel almost always on); the spread over all
    rows hardly moves, the single-row count does."""

    def draw_mask(self, x, spec):
        mask = super().draw_mask(x, spec)
        if _is_inverted_train(spec) and spec.rate == 0.5 and mask.ndim >= 2 and mask.shape[0] > 3:
            mask = mask.copy()
            mask[3] = self.rng.random(mask[3].shape) < 0.8
        return mask
