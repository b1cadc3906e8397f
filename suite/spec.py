"""DropoutSpec: the one framework-neutral description of a dropout call.

``rate`` (probability of dropping) is canonical because every current API but the
TF 1.x ``keep_prob`` takes it; ``keep_prob`` is derived. Validation happens here, before
any framework is called, so a bad value is reported the same way for every backend.
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, replace
from typing import Any

SCALINGS = ("inverted", "vanilla")
KINDS = ("bernoulli", "gaussian", "alpha")
"""What kind of noise: Bernoulli masks (stochastic depth included: a mask shared along every axis but
the batch, ``broadcast_axes=(1, ..., ndim-1)``), Gaussian multiplicative noise, alpha dropout (SELU)."""
SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717
ALPHA_PRIME = -SELU_LAMBDA * SELU_ALPHA
"""The SELU's negative saturation value -lambda*alpha (Klambauer et al. 2017): what alpha dropout drops to."""
DTYPES = ("float16", "bfloat16", "float32", "float64")
_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def _validate_probability(value: Any, name: str) -> float:
    """A finite real number in [0, 1], else ValueError naming the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number in [0, 1], got {value!r} ({type(value).__name__})")
    as_float = float(value)
    if not math.isfinite(as_float) or not 0.0 <= as_float <= 1.0:
        raise ValueError(f"{name} must be a finite number in [0, 1], got {value!r}")
    return as_float


@dataclass(frozen=True)
class DropoutSpec:
    """The contract: what one dropout call must do.

    Train, inverted: y = x * m / keep. Eval, inverted: y = x.
    Train, vanilla:  y = x * m.        Eval, vanilla:  y = x * keep.
    m ~ Bernoulli(keep) i.i.d. per element, or per group when ``broadcast_axes`` name
    axes along which one mask value is shared. rate 0 is identity; rate 1 gives zeros
    (inverted) with zero gradient. ``kind`` "gaussian" and "alpha" are the other members of the
    family (:func:`gaussian_std`, :func:`alpha_affine`; README, "The dropout family"). ``seed``
    given: (re)seed the API's random stream to it before the call, so equal seeds give equal
    masks; None: continue the stream.
    """

    rate: float = 0.5
    scaling: str = "inverted"
    broadcast_axes: tuple[int, ...] = ()
    training: bool = True
    seed: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    kind: str = "bernoulli"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", _validate_probability(self.rate, "rate"))
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind != "bernoulli" and self.scaling != "inverted":
            raise ValueError(f"scaling {self.scaling!r} is a Bernoulli scheme; {self.kind} dropout has none")
        axes = self.broadcast_axes
        if isinstance(axes, (str, bytes)) or not hasattr(axes, "__iter__"):
            raise ValueError(f"broadcast_axes must be a sequence of ints, got {axes!r}")
        axes = tuple(axes)
        for axis in axes:
            if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
                raise ValueError(f"broadcast_axes must hold ints, got {axis!r} in {axes!r}")
        if len(set(axes)) != len(axes):
            raise ValueError(f"broadcast_axes has a repeated axis: {axes!r}")
        object.__setattr__(self, "broadcast_axes", tuple(int(a) for a in axes))
        if not isinstance(self.training, bool):
            raise ValueError(f"training must be True or False, got {self.training!r}")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or not 0 <= self.seed < 2**31
        ):
            raise ValueError(f"seed must be None or an int in [0, 2**31), got {self.seed!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")

    @property
    def keep_prob(self) -> float:
        return 1.0 - self.rate

    @classmethod
    def from_rate(cls, rate: float, **kwargs: Any) -> "DropoutSpec":
        return cls(rate=rate, **kwargs)

    @classmethod
    def from_keep_prob(cls, keep_prob: float, **kwargs: Any) -> "DropoutSpec":
        """For TF 1.x habits: ``keep_prob`` is validated as itself, then stored as a rate."""
        return cls(rate=1.0 - _validate_probability(keep_prob, "keep_prob"), **kwargs)

    @classmethod
    def unchecked(cls, rate: Any, **kwargs: Any) -> "DropoutSpec":
        """PROBE-ONLY: a spec whose ``rate`` is stored exactly as given, unvalidated.

        ``dropbench probe`` must hand frameworks the values this class rejects (-0.1, 1.5,
        NaN, a Python int, a 0-d array) to record what *they* do with them; adapters pass
        ``spec.rate`` on untouched (a keep_prob API gets ``1 - rate``, whatever that gives).
        Every other field is still validated, and :meth:`replace` on the result re-validates
        (so raises for a bad rate). Never use this outside probes.
        """
        spec = cls(**kwargs)
        object.__setattr__(spec, "rate", rate)
        return spec

    def replace(self, **changes: Any) -> "DropoutSpec":
        return replace(self, **changes)

    def normalized_axes(self, ndim: int) -> tuple[int, ...]:
        """Broadcast axes as non-negative ints for an ``ndim``-d input; ValueError if out of range."""
        out = []
        for axis in self.broadcast_axes:
            if not -ndim <= axis < ndim:
                raise ValueError(f"broadcast axis {axis} is out of range for a {ndim}-d input")
            out.append(axis % ndim)
        if len(set(out)) != len(out):
            raise ValueError(f"broadcast_axes {self.broadcast_axes!r} name the same axis twice for a {ndim}-d input")
        return tuple(sorted(out))

    def mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the mask (TF's noise_shape): 1 along broadcast axes, else the input's size."""
        axes = self.normalized_axes(len(shape))
        return tuple(1 if i in axes else int(n) for i, n in enumerate(shape))


def gaussian_std(rate: float) -> float:
    """Gaussian dropout's noise sd: y = x * r, r ~ N(1, rate / (1 - rate)) (Srivastava et al. 2014, section 10).

    The variance that matches inverted Bernoulli dropout's multiplier m/keep, whose variance is rate/keep.
    Undefined at rate 1 (infinite variance): ValueError.
    """
    if rate >= 1.0:
        raise ValueError(f"gaussian dropout is undefined at rate {rate!r}: the noise variance rate/(1-rate) is infinite")
    return math.sqrt(rate / (1.0 - rate))


def alpha_affine(rate: float) -> tuple[float, float, float]:
    """(a, b, dropped value) of alpha dropout (Klambauer et al. 2017, "New Dropout Technique").

    Dropped units are set to alpha' = -lambda*alpha, then y = a * (x or alpha') + b with
    a = (keep * (1 + rate * alpha'^2))^(-1/2), b = -a * alpha' * rate: for input of mean 0 and
    variance 1 the output keeps mean 0 and variance 1. Kept: a*x + b; dropped: a*alpha' + b =
    a*alpha'*keep. rate 0: (1, 0, alpha') (identity). At rate 1 a is infinite but every output
    tends to 0 in probability (a*alpha'*keep ~ alpha'*sqrt(keep)): the spec takes that limit, zeros.
    """
    keep = 1.0 - rate
    if keep <= 0.0:
        return math.inf, math.inf, 0.0
    a = (keep * (1.0 + rate * ALPHA_PRIME**2)) ** -0.5
    b = -a * ALPHA_PRIME * rate
    return a, b, a * ALPHA_PRIME + b
