"""Dropout as an ensemble: the exact mean over every mask vs. Monte Carlo vs. the weight-scaling rule.

Network (all float64): x (d inputs) -> h = f(W1 x + b1) (n units) -> dropout on h
-> z = f(W2 h~ + b2) (n units) -> y = w3 . z + b3 (scalar). The dropped layer has n units, so
every one of the 2^n masks can be enumerated for n <= 16.

Training-time output for mask m: vanilla h~ = m * h, inverted h~ = m * h / keep. The
weight-scaling rule replaces m by its mean ``keep`` (vanilla: h~ = keep * h; inverted: h~ = h).
Dropout is one layer here because that is the minimal case: y is affine in m whenever the layers
*after* the dropped one are linear, and then E[y(m)] = y(E[m]) exactly, whatever f does before
the dropout. A second dropout layer just before the linear read-out would therefore add no gap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda v: v,
    "relu": lambda v: np.maximum(v, 0.0),
    "sigmoid": lambda v: 0.5 * (1.0 + np.tanh(0.5 * v)),  # = 1/(1+e^-v), overflow-free
    "tanh": np.tanh,
}
SCHEMES = ("vanilla", "inverted")
MAX_ENUMERATED_UNITS = 16
UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2  # u = 2^-53


@dataclass(frozen=True)
class Net:
    """One small network and one input; ``act`` names the activation of both hidden layers."""

    act: str
    x: np.ndarray
    w1: np.ndarray  # (d, n)
    b1: np.ndarray
    w2: np.ndarray  # (n, n)
    b2: np.ndarray
    w3: np.ndarray  # (n,)
    b3: float

    @property
    def width(self) -> int:
        return int(self.w1.shape[1])

    def hidden(self) -> np.ndarray:
        """h = f(W1 x + b1): the activations that dropout masks."""
        return ACTIVATIONS[self.act](self.x @ self.w1 + self.b1)

    def head(self, dropped: np.ndarray) -> np.ndarray:
        """y for each row of ``dropped`` (the masked, scaled h~): f(h~ W2 + b2) . w3 + b3."""
        return ACTIVATIONS[self.act](dropped @ self.w2 + self.b2) @ self.w3 + self.b3


def random_net(rng: np.random.Generator, act: str, width: int, n_inputs: int = 8) -> Net:
    """Standard initialisation: He normal (std sqrt(2/fan_in)) for ReLU, LeCun normal (sqrt(1/fan_in)) otherwise.

    Biases ~ N(0, 0.1^2) so that ReLU units are not all symmetric about 0; input x ~ N(0, I).
    """
    gain = 2.0 if act == "relu" else 1.0
    def layer(fan_in: int, fan_out: int) -> np.ndarray:
        return rng.normal(0.0, math.sqrt(gain / fan_in), size=(fan_in, fan_out))
    return Net(act, rng.normal(size=n_inputs), layer(n_inputs, width), rng.normal(0, 0.1, width),
               layer(width, width), rng.normal(0, 0.1, width), layer(width, 1)[:, 0], 0.0)


def scale(scheme: str, keep: float) -> float:
    """Training-time factor on kept units: 1 (vanilla) or 1/keep (inverted)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose from {SCHEMES}")
    return 1.0 if scheme == "vanilla" else 1.0 / keep


def all_masks(n: int) -> np.ndarray:
    """Every {0,1} mask of n units, shape (2^n, n); row i is the binary expansion of i (bit j = unit j)."""
    if not 0 < n <= MAX_ENUMERATED_UNITS:
        raise ValueError(f"can enumerate 1..{MAX_ENUMERATED_UNITS} units, not {n}")
    return ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


def mask_probabilities(masks: np.ndarray, keep: float) -> np.ndarray:
    """P(m) = keep^k (1-keep)^(n-k) for a mask with k kept units (independent Bernoulli(keep) units)."""
    kept = masks.sum(axis=1)
    return keep ** kept * (1.0 - keep) ** (masks.shape[1] - kept)


@dataclass(frozen=True)
class Enumeration:
    """Outputs of all 2^n sub-networks and their probabilities, for one net, rate and scheme."""

    outputs: np.ndarray  # y(m) per mask
    probs: np.ndarray  # P(m)
    exact: float  # sum P(m) y(m)
    rule: float  # y with m replaced by keep
    sd: float  # sqrt(Var_m y): the spread Monte Carlo has to average away

    @property
    def gap(self) -> float:
        return self.rule - self.exact


def _keep(rate: float) -> float:
    keep = 1.0 - rate
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"rate must be in [0, 1), got {rate!r}")
    return keep


def enumerate_net(net: Net, rate: float, scheme: str, masks: np.ndarray | None = None) -> Enumeration:
    """Exact ensemble mean over all 2^n masks, the weight-scaling rule, and the mask spread."""
    keep = _keep(rate)
    masks = all_masks(net.width) if masks is None else masks
    h = net.hidden()
    s = scale(scheme, keep)
    outputs = net.head(masks * (s * h))
    probs = mask_probabilities(masks, keep)
    exact = float(probs @ outputs)
    rule = float(net.head((s * keep * h)[None, :])[0])
    sd = math.sqrt(max(float(probs @ (outputs - exact) ** 2), 0.0))
    return Enumeration(outputs, probs, exact, rule, sd)


def linear_rounding_bound(net: Net, rate: float, scheme: str, masks: np.ndarray | None = None) -> float:
    """A-priori float64 bound on |rule - exact| for a *linear* net, where the two agree in exact arithmetic.

    Standard forward-error analysis (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed.,
    Lemma 3.1 and eq. 3.5): a length-L dot product in any summation order errs by at most
    gamma_L |a|.|b|, gamma_L = L u / (1 - L u), u = 2^-53. Along the chain x -> h -> h~ -> z -> y
    and the 2^n-term weighted sum, at most N = 2^n + 2n + d + 12 roundings compound (the masks are
    exact; P(m) costs n+1 more; keep + (1-keep) = 1 + delta with |delta| <= u makes sum P(m) = 1 + O(n u),
    also inside N). Every term is bounded by the same forward pass on absolute values, so
    |fl(rule) - fl(exact)| <= gamma_N * (sum P(m) |y|_abs(m) + |y|_abs(rule)).
    """
    if net.act != "linear":
        raise ValueError(f"the rule is exact only for a linear net, not {net.act!r}")
    keep = _keep(rate)
    masks = all_masks(net.width) if masks is None else masks
    s = scale(scheme, keep)
    abs_h = np.abs(net.x) @ np.abs(net.w1) + np.abs(net.b1)
    def abs_forward(dropped: np.ndarray) -> np.ndarray:
        return (dropped @ np.abs(net.w2) + np.abs(net.b2)) @ np.abs(net.w3) + abs(net.b3)
    n, d = net.width, net.x.shape[0]
    terms = 2 ** n + 2 * n + d + 12
    gamma = terms * UNIT_ROUNDOFF / (1.0 - terms * UNIT_ROUNDOFF)
    total = float(mask_probabilities(masks, keep) @ abs_forward(masks * (s * abs_h)))
    return gamma * (total + float(abs_forward((s * keep * abs_h)[None, :])[0]))


def sample_mask_indices(rng: np.random.Generator, n: int, keep: float, shape: tuple[int, ...]) -> np.ndarray:
    """Draw i.i.d. Bernoulli(keep) masks of n units and return each as its row index in all_masks(n)."""
    bits = rng.random(shape + (n,)) < keep
    return bits.astype(np.int64) @ (1 << np.arange(n, dtype=np.int64))


def monte_carlo_means(enum: Enumeration, rng: np.random.Generator, n: int, keep: float, k: int, repeats: int) -> np.ndarray:
    """``repeats`` independent Monte Carlo estimates of the ensemble mean, each from k sampled masks."""
    idx = sample_mask_indices(rng, n, keep, (repeats, k))
    return enum.outputs[idx].mean(axis=1)


@dataclass(frozen=True)
class GapSettings:
    activations: tuple[str, ...] = ("linear", "relu", "sigmoid", "tanh")
    widths: tuple[int, ...] = (2, 4, 8, 12, 16)
    rates: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9)
    nets: int = 30
    seed: int = 0


def gap_rows(settings: GapSettings) -> list[dict[str, object]]:
    """One row per (activation, width, rate, scheme): gap statistics over ``nets`` random networks.

    ``rel_gap_median`` = median over nets of |rule - exact| / sd, the gap in units of the mask
    spread; ``k_break_even`` = median (sd / gap)^2, the number of Monte Carlo masks whose standard
    error equals the rule's error (fewer masks: the rule is more accurate; more: Monte Carlo is).
    """
    rows = []
    for a_i, act in enumerate(settings.activations):
        for width in settings.widths:
            masks = all_masks(width)
            rng = np.random.default_rng([settings.seed, a_i, width])
            nets = [random_net(rng, act, width) for _ in range(settings.nets)]
            for rate in settings.rates:
                for scheme in SCHEMES:
                    enums = [enumerate_net(net, rate, scheme, masks) for net in nets]
                    gaps = np.array([abs(e.gap) for e in enums])
                    sds = np.array([e.sd for e in enums])
                    rel = np.divide(gaps, sds, out=np.zeros_like(gaps), where=sds > 0)
                    bounds = [linear_rounding_bound(n_, rate, scheme, masks) for n_ in nets] if act == "linear" else [math.nan]
                    with np.errstate(divide="ignore"):
                        k_star = np.where(gaps > 0, (sds / np.where(gaps > 0, gaps, 1.0)) ** 2, np.inf)
                    rows.append({
                        "activation": act, "width": width, "rate": rate, "scheme": scheme, "nets": settings.nets,
                        "abs_gap_mean": float(gaps.mean()), "abs_gap_max": float(gaps.max()),
                        "sd_mean": float(sds.mean()), "rel_gap_median": float(np.median(rel)),
                        "rel_gap_max": float(rel.max()), "k_break_even": float(np.median(k_star)),
                        "rounding_bound_max": float(max(bounds)),
                    })
    return rows


@dataclass(frozen=True)
class McSettings:
    activations: tuple[str, ...] = ("relu", "sigmoid", "tanh")
    width: int = 12
    rate: float = 0.5
    ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
    nets: int = 10
    repeats: int = 200
    seed: int = 1


def mc_rows(settings: McSettings) -> list[dict[str, object]]:
    """Monte Carlo error vs. K next to the rule's error, both as fractions of the mask spread sd.

    ``mc_rms_rel`` = sqrt(mean over nets and repeats of ((MC_K - exact)/sd)^2), which theory
    puts at 1/sqrt(K); ``rule_rel`` = sqrt(mean over nets of (gap/sd)^2), the same RMS for the rule.
    """
    rows = []
    keep = 1.0 - settings.rate
    masks = all_masks(settings.width)
    for a_i, act in enumerate(settings.activations):
        rng = np.random.default_rng([settings.seed, a_i])
        nets = [random_net(rng, act, settings.width) for _ in range(settings.nets)]
        for scheme in SCHEMES:
            # a net whose output does not depend on the mask (e.g. every ReLU dead) has nothing to average
            enums = [e for e in (enumerate_net(net, settings.rate, scheme, masks) for net in nets) if e.sd > 0]
            if not enums:
                continue
            rule_rel = math.sqrt(float(np.mean([(e.gap / e.sd) ** 2 for e in enums])))
            for k in settings.ks:
                errs = [((monte_carlo_means(e, rng, settings.width, keep, k, settings.repeats) - e.exact) / e.sd) ** 2
                        for e in enums]
                rows.append({"activation": act, "scheme": scheme, "width": settings.width, "rate": settings.rate,
                             "k": k, "mc_rms_rel": math.sqrt(float(np.mean(errs))), "theory_rel": 1 / math.sqrt(k),
                             "rule_rel": rule_rel, "nets": len(enums), "repeats": settings.repeats})
    return rows


def gap_table(rows: Iterable[dict[str, object]], width: int, scheme: str) -> tuple[list[str], list[list[str]]]:
    """Markdown-ready table: median |gap|/sd per activation (rows) and rate (columns) at one width."""
    chosen = [r for r in rows if r["width"] == width and r["scheme"] == scheme]
    rates = sorted({float(r["rate"]) for r in chosen})
    acts = list(dict.fromkeys(str(r["activation"]) for r in chosen))
    cell = {(r["activation"], r["rate"]): r for r in chosen}
    body = [[a] + [f"{cell[(a, rate)]['rel_gap_median']:.2g}" for rate in rates] for a in acts]
    return ["activation \\ rate"] + [f"{rate:g}" for rate in rates], body
