"""Probe cases and outcome classification for `dropbench probe`: pure functions, no framework.

A probe does not judge, it observes: each :class:`Case` says what input and spec to hand
an API, :func:`classify` names what came back in the fixed vocabulary :data:`OUTCOMES`,
and convention cases add a measured *finding* (same mask or not, which axes share a mask,
what the scale rounds to). Each record also carries the label the DropoutSpec prescribes
(``expected``, None where the spec is silent) so reports can list the differences without
re-deciding anything. Running cases through backends lives in :mod:`suite.probe.runner`.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import numpy as np

from suite.verify import independence
from suite.verify.checks import rounding_tolerance
from suite.verify.correlation import agreements
from suite.verify.stats import ALPHA_PER_CHECK, binomial_interval

OUTCOMES = ("error", "crash", "timeout", "n/a", "empty", "nan", "identity", "zeros", "inverted", "vanilla", "gaussian",
            "alpha", "other")
"""The vocabulary, in the order it is decided: the first that applies wins."""
NO_OUTPUT = ("error", "crash", "timeout", "n/a")  # nothing came back to classify

BASE_SHAPE = (64, 64)

# Convention findings (the label a matrix cell shows for a convention case).
SAME_MASK, NEW_MASK = "same mask", "new mask"
FORWARD_MASK, FORWARD_MASK_OTHER_SCALE, OTHER_MASK = "forward mask", "forward mask, other scale", "different mask"
SHARED_AS_ASKED = "shared as asked"
DROPPED_NAN_ZERO, NAN_SURVIVES = "dropped NaN -> 0", "dropped NaN stays NaN"
DROPS_RATE, DROPS_KEEP = "drops 10% (rate)", "drops 90% (reads rate as keep_prob)"
SEEDS_INDEPENDENT, SEEDS_SHIFTED, SEEDS_CORRELATED = "independent", "s+1 = s's mask moved", "correlated"

# Findings measured in two processes are filled in by the parent (probe_run), not the worker.
KINDS = ("forward", "grad-values", "grad-mask", "seed-twice", "process", "broadcast", "keep-share", "kept-value",
         "device-seed", "compiled", "compiled-grad", "rate-resolution", "threads", "seed-neighbours", "seed-output", "grad-multiplier")
ALL_KINDS = ("bernoulli", "gaussian", "alpha")  # suite.spec.KINDS: the dropout kinds a case applies to
FAMILY = ("gaussian", "alpha")


@dataclass(frozen=True)
class Case:
    """One probe: the input, the spec, what is observed, and why a porting user cares.

    ``rate`` is handed to the adapter unvalidated (``DropoutSpec.unchecked``); ``dtype`` is
    the input's dtype ("int32" and "bfloat16" included); ``fill`` puts +inf or NaN in row 0.
    ``expected`` is an fnmatch pattern over the cell label the DropoutSpec prescribes (None:
    the spec says nothing). ``checks`` are the `verify` check ids this case observes, which
    ties the map to known_divergences.toml.
    """

    id: str
    why: str
    rate: Any = 0.5
    dtype: str = "float32"
    shape: tuple[int, ...] = BASE_SHAPE
    fill: str = "ones"  # ones | inf-row | nan-row
    training: bool = True
    kind: str = "forward"
    axes: tuple[int, ...] = ()
    seeded: bool = True  # give the run's seed (when the API can be seeded); False: never
    expected: str | None = None
    checks: tuple[str, ...] = ()
    convention: bool = False  # a row of the conventions table (its cell shows the finding)
    device: str = "cpu"  # "cuda": a GPU case (GPU_CASES), n/a with the reason where the API sees no GPU
    timeout_s: float | None = None  # a longer per-case watchdog (torch.compile's first compile)
    kinds: tuple[str, ...] = ALL_KINDS  # the dropout kinds it applies to; an API of another kind records n/a

    def expected_for(self, kind: str) -> str | None:
        """``expected`` for an API of dropout ``kind``: "inverted" is the kind's own label there, "{kind}"
        is filled in, and "zeros" (rate 1) holds for alpha dropout (its limit) but not for Gaussian (undefined)."""
        e = self.expected
        if kind not in self.kinds:  # the API records n/a: the case prescribes nothing for it
            return None
        if e is None or kind == "bernoulli":
            return e
        if "{kind}" in e:
            return e.replace("{kind}", kind)
        if e == "inverted":
            return kind
        if e == "zeros":
            return "zeros" if kind == "alpha" else None
        return e

    @property
    def keep(self) -> float:
        """1 - rate as a float64, whatever the rate is (NaN for NaN, -0.5 for 1.5)."""
        try:
            return 1.0 - float(self.rate)
        except (TypeError, ValueError):
            return math.nan

    @property
    def cross_process(self) -> bool:
        return self.kind == "process"

    @property
    def cross_threads(self) -> bool:
        """Run again in a worker pinned to one thread (the main worker runs it at the default count)."""
        return self.kind == "threads"

    def rate_repr(self) -> str:
        """How the rate is handed over, e.g. ``1 (int)``, ``array(0.5, dtype=float32)``."""
        if isinstance(self.rate, np.ndarray):
            return f"np.array({self.rate.item()!r}, dtype={self.rate.dtype}) (0-d)"
        if isinstance(self.rate, bool) or not isinstance(self.rate, float):
            return f"{self.rate!r} ({type(self.rate).__name__})"
        return repr(self.rate)

    def make_input(self, layout_ndim: int | None = None, layout_axes: tuple[int, ...] = ()) -> tuple[np.ndarray, tuple[int, ...]]:
        """(x, broadcast_axes) for an API; a fixed-layout API (torch Dropout1d/2d) gets its layout.

        Plain cases are reshaped to the layout's ndim with trailing size-1 axes (same values,
        one mask value per element); the channel case uses the layout's own channel axes.
        """
        shape, axes = self.shape, self.axes
        if layout_ndim is not None:
            if self.id == "broadcast-channel":
                shape, axes = (8, 16) + (4,) * (layout_ndim - 2), tuple(layout_axes)
            elif not self.axes and len(shape) < layout_ndim:
                if any(a < len(shape) for a in layout_axes):  # a per-sample layout (drop path): one sample per element
                    shape = (math.prod(shape),) + (1,) * (layout_ndim - 1)
                else:
                    shape = shape + (1,) * (layout_ndim - len(shape))
                axes = tuple(layout_axes)
        x = np.ones(shape, dtype=_numpy_dtype(self.dtype))
        if self.fill == "inf-row" and x.size:
            x[0] = np.inf
        elif self.fill == "nan-row" and x.size:
            x[0] = np.nan
        return x, axes


def _numpy_dtype(name: str) -> Any:
    """NumPy dtype for a case; bfloat16 comes from ml_dtypes (imported lazily: it ships with TF)."""
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError as exc:
            raise LookupError("bfloat16 needs the ml_dtypes package (pip install ml_dtypes)") from exc
        return ml_dtypes.bfloat16
    return np.dtype(name)


def _case(id: str, why: str, **kw: Any) -> Case:
    return Case(id=id, why=why, **kw)


CASES: tuple[Case, ...] = (
    # --- the edge cases the issue fixes ---------------------------------------------------
    _case("rate=0", "Dropout(0) is how a config switches dropout off; the spec says identity.",
          rate=0.0, expected="identity", checks=("identity/rate=0/float32",)),
    _case("rate=0.5", "The common case: every output is 0 or 2x.",
          rate=0.5, expected="inverted", checks=("values/rate=0.5/float32",)),
    _case("rate=1", "Dropping everything (e.g. a sweep reaching p=1); the spec says zeros.",
          rate=1.0, expected="zeros", checks=("zeros/rate=1/float32",)),
    _case("rate=-0.1", "An out-of-range rate from a bad schedule; the spec rejects it (ValueError).",
          rate=-0.1, expected="error: *"),
    _case("rate=1.5", "An out-of-range rate (e.g. a keep_prob in percent); the spec rejects it.",
          rate=1.5, expected="error: *"),
    _case("rate=nan", "A NaN hyper-parameter from a broken schedule; the spec rejects it.",
          rate=math.nan, expected="error: *"),
    _case("int32", "Integer activations (e.g. token ids fed to the wrong layer): the spec defines floats only.",
          dtype="int32"),
    _case("empty", "An empty batch (shape (0, 4)), e.g. the last shard of a dataset.",
          shape=(0, 4), expected="empty"),
    _case("float16", "Half precision training: does dropout keep the dtype and the scale?",
          dtype="float16", expected="inverted", checks=("values/rate=0.5/float16", "dtype/float16")),
    _case("bfloat16", "bfloat16 training (TPU/recent GPUs); n/a where the adapter has no bfloat16 bridge.",
          dtype="bfloat16", expected="inverted"),
    _case("eval", "Inference, switched off each API's own way; n/a where the API has no such mode.",
          training=False, expected="identity", checks=("eval/float32",)),
    _case("inf-input", "Row 0 is +inf (an overflowed activation): does a dropped inf become 0 or NaN (inf*0)?",
          fill="inf-row"),
    _case("nan-input", "Row 0 is NaN: does dropout hide a NaN (dropped -> 0) or pass it on?",
          fill="nan-row"),
    # --- added: rates given as other Python types -------------------------------------------
    _case("int-rate=0", "Dropout(0) written as a Python int, as configs often do.",
          rate=0, expected="identity"),
    _case("int-rate=1", "rate 1 written as a Python int (`Dropout(1)`): does it act like 1.0?",
          rate=1, expected="zeros"),
    _case("0d-array-rate=0.5", "A rate that is a 0-d NumPy array (e.g. computed by a NumPy schedule), not a float.",
          rate=np.array(0.5, dtype=np.float32), expected="inverted"),
    # verify names a failing forward_backward at rate 1 after its first check, zeros/rate=1
    _case("grad:rate=1", "The gradient at rate 1 (outcome of d(sum y)/dx); the spec says zeros.",
          rate=1.0, kind="grad-values", expected="zeros", checks=("zero-grad/rate=1/float32", "zeros/rate=1/float32")),
    # --- conventions a porting user trips on, measured ----------------------------------------
    _case("keep-vs-rate", "rate=0.1 handed over (keep_prob=0.9 where the API takes keep_prob): does it drop 10%?",
          rate=0.1, kind="keep-share", expected=DROPS_RATE, convention=True,
          checks=("values/rate=0.1/float32", "kept-fraction/rate=0.1/float32")),
    _case("seed-twice", "The same seed in two calls of one process: the same mask?",
          kind="seed-twice", expected=SAME_MASK, convention=True, checks=("seed/float32",)),
    _case("seed-neighbours", "Seeds s and s+1 (layers seeded base + i): independent masks, or one mask moved along "
          "the other (a seed used as an offset into one stream)? Every shift tested, as verify's cross-seed does.",
          kind="seed-neighbours", shape=(256, 256), expected=SEEDS_INDEPENDENT, convention=True,
          checks=("cross-seed/float32",)),  # verify's size: a generator split into per-thread states shows at 65536
    _case("seed-process", "The same seed in two fresh processes: the same mask (reproducible runs)?",
          kind="process", expected=SAME_MASK, convention=True),
    _case("unseeded-process", "No seed, first calls of two fresh processes: fresh masks, or a fixed default seed?",
          kind="process", seeded=False, convention=True),
    _case("broadcast-channel", "Channel dropout: one mask value per (sample, channel) of (N, C, H, W), shared along axes "
          "(2, 3) (each framework's name for it: README, The spec); a 1-d channel layout is (N, C, L).",
          shape=(8, 16, 4, 4), axes=(2, 3), kind="broadcast", expected=SHARED_AS_ASKED, convention=True,
          checks=("broadcast-shared/axes=2,3/float32", "mask-shared/rate=0.5/float32")),
    _case("broadcast-batch", "One mask per feature shared across the batch (variational dropout): axes (0,).",
          axes=(0,), kind="broadcast", expected=SHARED_AS_ASKED, convention=True,
          checks=("broadcast-shared/axes=0/float32",)),
    _case("grad-mask", "Backward with grad_out = 1: does the gradient reuse the forward mask and scale?",
          kind="grad-mask", expected=FORWARD_MASK, convention=True, checks=("gradient/rate=0.5/float32",)),
    _case("float32-scale@0.9", "The kept value at rate 0.9 in float32: 1/keep = 10 exactly, or off by a few ulp?",
          rate=0.9, kind="kept-value", expected="10.0 (+0 ulp)", convention=True, checks=("values/rate=0.9/float32",)),
    _case("float16-scale@0.1", "What 1/0.9 rounds to in float16 (Dropout(0.1) in a half-precision model).",
          rate=0.1, dtype="float16", kind="kept-value", expected="1.111 (+0 ulp)", convention=True,
          checks=("values/rate=0.1/float16",)),
)

# --- issue 18: compiled vs eager, rate resolution, thread count (a block of its own, to ease merging) ----
EAGER_MASK, NOT_EAGER_MASK = "eager's mask", "not eager's mask"
RESOLUTION_SHAPE = (2048, 1024)
"""2**21 elements: the exact Binomial regions (level ALPHA_PER_CHECK, 2.5e-10) of each resolution rate and of
its 1/16 and 1/256 grid neighbours are disjoint (tests/test_probes.py checks it), so a quantizing API is told
apart from an exact one with false-fail probability <= ALPHA_PER_CHECK per neighbour; one float32 forward is 8 MiB."""
RESOLUTION_STEPS = (("1/16", 1 / 16), ("1/256", 1 / 256))
THREADS_SHAPE = (1024, 1024)  # 2**20 elements: above torch's and MXNet's per-thread grain, so two threads split it
AS_GIVEN = "p as given (finer than 1/256)"
SAME_AT_THREADS, NEW_AT_THREADS = "same mask at 1 and N threads", "new mask at 1 thread"

CASES = CASES + (
    _case("compiled", "The same seed and input, eager and in the API's compiled mode (its ApiInfo.compiled: graph "
          "function, jit, hybridized block, compiler): does compiling a model change its dropout masks?",
          kind="compiled", convention=True, timeout_s=240.0),
    _case("compiled-grad", "Forward and backward inside the compiled mode (grad_out = 1): does the gradient still "
          "reuse the forward mask and scale?",
          kind="compiled-grad", expected=FORWARD_MASK, convention=True, timeout_s=240.0),
    _case("resolution@0.002", "rate 0.002 over 2**21 elements: applied as given, or rounded to a 1/256 or 1/16 grid "
          "(a keep probability stored in a byte, cuDNN's 1/16 steps)?",
          rate=0.002, shape=RESOLUTION_SHAPE, kind="rate-resolution", expected="p as given*", convention=True),
    _case("resolution@0.0293", "rate 7.5/256 = 0.029296875, halfway between two 1/256 steps: as given, or rounded?",
          rate=7.5 / 256, shape=RESOLUTION_SHAPE, kind="rate-resolution", expected="p as given*", convention=True),
    _case("resolution@0.998", "rate 0.998 (keep 0.002) over 2**21 elements: as given, or rounded?",
          rate=0.998, shape=RESOLUTION_SHAPE, kind="rate-resolution", expected="p as given*", convention=True),
    _case("threads", "The same seed with 1 thread and with the default N threads (2**20 elements, two fresh "
          "workers' worth of state): does the mask depend on the thread count?",
          shape=THREADS_SHAPE, kind="threads", expected=SAME_AT_THREADS, convention=True),
)

GPU_CASES: tuple[Case, ...] = (
    # --- on the GPU (`dropbench probe --device cuda`): what changes when a model moves to the device -----
    _case("cuda:seed-vs-cpu", "The same seed on the CPU and on the GPU: the same mask? (A model debugged on the "
          "CPU and trained on the GPU drops other units unless the generators agree.)",
          kind="device-seed", convention=True, device="cuda"),
    # the linked upstream issue (pytorch/pytorch#59421): its CUDA kernel selects (0), its CPU one multiplies (NaN)
    _case("cuda:inf-input", "Row 0 is +inf on the GPU: does a dropped inf become 0 (a select) as on some GPU "
          "kernels, or NaN (inf*0) as on the same framework's CPU?", fill="inf-row", device="cuda"),
    _case("cuda:eval", "Inference on the GPU, switched off each API's own way.",
          training=False, expected="identity", device="cuda"),
    _case("cuda:float16-scale@0.1", "What 1/0.9 rounds to in float16 on the device (a fused kernel may scale in "
          "float32 and round once, or round the scale first).", rate=0.1, dtype="float16", kind="kept-value",
          expected="1.111 (+0 ulp)", convention=True, device="cuda"),
    _case("cuda:bfloat16-scale@0.1", "What 1/0.9 rounds to in bfloat16 on the device (1.109375 is the nearest).",
          rate=0.1, dtype="bfloat16", kind="kept-value", convention=True, device="cuda"),
)
"""Cases run only when the probe is asked for a GPU (``--device cuda``); CASES are the CPU map."""

# --- issue 28: the dropout family beyond Bernoulli (a block of its own, to ease merging) -------------------------
# The conventions above read y != 0 as the mask: they are Bernoulli cases (n/a for Gaussian and alpha dropout,
# whose outputs are never 0). The edge cases run on every kind, each judged by its own kind's label.
SAME_OUTPUT, NEW_OUTPUT = "same output", "new output"
FORWARD_MULTIPLIER, OTHER_MULTIPLIER = "forward multiplier", "other multiplier"
CASES = tuple(Case(**{**c.__dict__, "kinds": ("bernoulli",)}) if c.convention else c for c in CASES)
GPU_CASES = tuple(Case(**{**c.__dict__, "kinds": ("bernoulli",)}) if c.convention else c for c in GPU_CASES)
CASES = CASES + (
    _case("family:rate=0.999", "Gaussian or alpha dropout near rate 1: Gaussian noise of variance 999, alpha's a = 15.8; "
          "defined by the spec, numerically extreme.", rate=0.999, expected="{kind}", kinds=FAMILY),
    _case("family:seed-twice", "The same seed in two calls of one process: the same output (the noise, not a 0/1 mask)?",
          kind="seed-output", expected=SAME_OUTPUT, convention=True, kinds=FAMILY, checks=("seed/float32",)),
    _case("family:grad", "Backward with x = 1 and grad_out = 1: is the gradient the forward's multiplier (Gaussian: "
          "y; alpha: a where kept, 0 where dropped)?", kind="grad-multiplier", expected=FORWARD_MULTIPLIER,
          convention=True, kinds=FAMILY, checks=("gradient/rate=0.5/float32",)),
)
CASE_IDS: tuple[str, ...] = tuple(c.id for c in CASES)
GPU_CASE_IDS: tuple[str, ...] = tuple(c.id for c in GPU_CASES)
BY_ID: dict[str, Case] = {c.id: c for c in CASES + GPU_CASES}


def cases_for(device: str) -> tuple[Case, ...]:
    """The cases a probe on ``device`` runs: the CPU map, plus the GPU cases for "cuda"."""
    return CASES + (GPU_CASES if device.startswith("cuda") else ())


# -- classification ----------------------------------------------------------------------
def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _tolerance(*arrays: np.ndarray) -> float:
    """Two roundings in the coarsest float dtype (as `verify`); bfloat16 via ml_dtypes' finfo."""
    eps = 0.0
    for a in arrays:
        if a.dtype.name == "bfloat16":
            eps = max(eps, 2.0**-7)
    return max(2.0 * eps, rounding_tolerance(*arrays))


def _matches(y: np.ndarray, target: np.ndarray, tol: float) -> np.ndarray:
    """y == target elementwise within a relative tolerance; NaN matches NaN, inf matches inf."""
    with np.errstate(invalid="ignore"):
        close = np.abs(y - target) <= tol * np.abs(target)
    return (y == target) | close | (np.isnan(y) & np.isnan(target))


def _fmt(value: float) -> str:
    return format(float(value), ".9g")


def summarize(y: np.ndarray, *, values: bool = True) -> dict[str, Any]:
    """A JSON-safe, deterministic description of an output: shape, dtype, counts, top values."""
    arr = np.asarray(y)
    out: dict[str, Any] = {"shape": list(arr.shape), "dtype": arr.dtype.name}
    if arr.size == 0 or not values:
        return out
    v = _f64(arr).ravel()
    out["nan"] = int(np.isnan(v).sum())
    out["zeros"] = int((v == 0).sum())
    distinct, counts = np.unique(v[~np.isnan(v)], return_counts=True)
    order = np.argsort(-counts, kind="stable")[:4]
    out["values"] = {_fmt(distinct[i]): int(counts[i]) for i in sorted(order, key=lambda i: distinct[i])}
    if len(distinct) > 4:
        out["distinct"] = int(len(distinct))
    return out


def classify(x: np.ndarray, y: np.ndarray, keep: float, kind: str = "bernoulli") -> tuple[str, dict[str, Any]]:
    """The first outcome of OUTCOMES (after the no-output ones) that describes y for input x.

    empty: no elements; nan: a NaN where x had none; identity: y == x; zeros: all 0;
    inverted: every y in {0, x/keep} with both present; vanilla: every y in {0, x} with
    both present; other: anything else. NaN in x may stay NaN (NaN/keep is NaN).
    For a Gaussian or alpha API (``kind``) after zeros: gaussian / alpha when the finite
    elements pass that kind's check (:func:`family_label`), else other.
    """
    x, y = np.asarray(x), np.asarray(y)
    detail = summarize(y)
    if y.size == 0:
        return "empty", detail
    xs, ys = _f64(x), _f64(y)
    if xs.shape != ys.shape:
        nan_new = bool(np.isnan(ys).any()) and not bool(np.isnan(xs).any())
        detail["note"] = f"output shape {list(ys.shape)} != input shape {list(xs.shape)}"
        return ("nan" if nan_new else "other"), detail
    if (np.isnan(ys) & ~np.isnan(xs)).any():
        return "nan", detail
    tol = _tolerance(x, y)
    if _matches(ys, xs, 0.0).all():
        return "identity", detail
    dropped = ys == 0
    if dropped.all():
        return "zeros", detail
    if kind != "bernoulli":
        return family_label(xs, ys, 1.0 - keep, kind, np.asarray(x).dtype), detail
    if math.isfinite(keep) and keep > 0:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            kept = _matches(ys, xs / keep, tol) & ~dropped
        if (kept | dropped).all() and kept.any() and dropped.any():
            return "inverted", detail
    kept = _matches(ys, xs, tol) & ~dropped
    if (kept | dropped).all() and kept.any() and dropped.any():
        return "vanilla", detail
    return "other", detail


def family_label(x: np.ndarray, y: np.ndarray, rate: float, kind: str, dtype: Any = np.float64) -> str:
    """``gaussian``: y/x over the finite inputs passes the Gaussian noise check (mean 1, variance rate/keep,
    normal share within one sd; level 1e-9); ``alpha``: every finite input's output is a*x + b or
    a*alpha' + b, both present; else ``other``."""
    from suite.verify import family  # noqa: PLC0415 (verify's family checks; imported when a family API is probed)

    if not (math.isfinite(rate) and 0.0 < rate < 1.0):
        return "other"
    finite = np.isfinite(x)
    xs, ys = x[finite].astype(dtype), y[finite].astype(dtype)
    if xs.size == 0:
        return "other"
    tol = _tolerance(xs, ys)  # knows bfloat16, which NumPy's finfo does not
    if kind == "gaussian":
        return kind if family.gaussian_noise(xs, ys, rate, tol=tol).passed else "other"
    outcome, kept = family.alpha_values(xs, ys, rate, tol=tol)
    return kind if outcome.passed and kept.any() and not kept.all() else "other"


def same_output_finding(first: np.ndarray, second: np.ndarray) -> str:
    return SAME_OUTPUT if np.array_equal(_f64(first), _f64(second), equal_nan=True) else NEW_OUTPUT


def grad_multiplier_finding(y: np.ndarray, grad: np.ndarray, rate: float, kind: str) -> str:
    """With x = 1 and grad_out = 1 the gradient is the forward's multiplier: Gaussian y itself; alpha a where kept."""
    from suite.verify import family  # noqa: PLC0415

    ys, gs = _f64(y), _f64(grad)
    if ys.shape != gs.shape:
        return f"gradient shape {list(gs.shape)}"
    tol = _tolerance(np.asarray(y), np.asarray(grad))
    if kind == "gaussian":
        expected = ys
    else:
        kept = family.alpha_values(np.ones_like(y), y, rate)[1]
        expected = np.where(kept, family.alpha_affine(rate)[0], 0.0)
    return FORWARD_MULTIPLIER if _matches(gs, expected, tol).all() else OTHER_MULTIPLIER


# -- convention findings (pure: arrays in, label out) --------------------------------------------
def mask_digest(y: np.ndarray) -> str:
    """A short fingerprint of which elements were kept, to compare masks across processes."""
    return hashlib.sha256(np.packbits(_f64(y) != 0).tobytes() + str(np.shape(y)).encode()).hexdigest()[:16]


def same_mask_finding(first: np.ndarray, second: np.ndarray) -> str:
    return SAME_MASK if np.array_equal(_f64(first) != 0, _f64(second) != 0) else NEW_MASK


def seed_neighbour_finding(first: np.ndarray, second: np.ndarray) -> tuple[str, dict[str, Any]]:
    """Masks of seeds s and s+1 (keep 0.5): independent at every shift (verify's cross-seed test), or the
    best shift (where they agree most) and how much, e.g. all of it for a seed used as an offset."""
    a, b = _f64(first) != 0, _f64(second) != 0
    if independence.masks_independent([("s,s+1", a, b)], 0.5, zero=True).passed:
        return SEEDS_INDEPENDENT, {}
    d = independence.shifts(a.size, zero=True)
    pairs, agree = agreements(a, b, d)
    i = int(np.argmax(np.abs(agree - pairs / 2) / pairs))
    detail = {"shift": int(d[i]), "agree": f"{int(agree[i])}/{int(pairs[i])}"}
    return (SEEDS_SHIFTED if agree[i] >= 0.99 * pairs[i] else SEEDS_CORRELATED), detail


def keep_share_finding(y: np.ndarray, rate: float, alpha: float = ALPHA_PER_CHECK) -> str:
    """Whether ``rate`` was read as the drop probability or as the keep probability.

    The kept count must fall in the exact Binomial(n, 1-rate) region of level alpha (ALPHA_PER_CHECK):
    a correct API is misread with probability <= alpha, and the two regions are disjoint.
    """
    mask = _f64(y) != 0
    n, k = int(mask.size), int(mask.sum())
    lo, hi = binomial_interval(n, 1.0 - rate, alpha)
    if lo <= k <= hi:
        return DROPS_RATE
    lo, hi = binomial_interval(n, rate, alpha)
    if lo <= k <= hi:
        return DROPS_KEEP
    return f"drops {1 - k / max(n, 1):.1%}"


def shared_axes(y: np.ndarray) -> tuple[int, ...]:
    """Axes (of size > 1) along which the kept/dropped pattern never changes."""
    mask = _f64(y) != 0
    return tuple(a for a in range(mask.ndim) if mask.shape[a] > 1 and (mask.any(axis=a) == mask.all(axis=a)).all())


def broadcast_finding(y: np.ndarray, requested: tuple[int, ...]) -> str:
    """``shared as asked`` when the mask is constant along exactly the requested axes."""
    y = np.asarray(y)
    axes = shared_axes(y)
    wanted = tuple(sorted(a % y.ndim for a in requested if y.shape[a % y.ndim] > 1)) if y.ndim else ()
    if axes == wanted:
        return SHARED_AS_ASKED
    return f"shared along {','.join(map(str, axes))}" if axes else "not shared"


def grad_mask_finding(y: np.ndarray, grad: np.ndarray) -> str:
    """With x = 1 and grad_out = 1 the input gradient must equal y (same mask, same scale)."""
    ys, gs = _f64(y), _f64(grad)
    if ys.shape != gs.shape:
        return f"gradient shape {list(gs.shape)}"
    if _matches(gs, ys, _tolerance(np.asarray(y), np.asarray(grad))).all():
        return FORWARD_MASK
    if np.array_equal(ys != 0, gs != 0):
        return FORWARD_MASK_OTHER_SCALE
    return OTHER_MASK


def nan_input_finding(x: np.ndarray, y: np.ndarray) -> str | None:
    """Where x is NaN: does a dropped NaN become 0 (the NaN is hidden) or stay NaN (inf*0-style)?"""
    xs, ys = _f64(x), _f64(y)
    if xs.shape != ys.shape or not np.isnan(xs).any():
        return None
    at = ys[np.isnan(xs)]
    if (at == 0).any():
        return DROPPED_NAN_ZERO
    hidden = at[~np.isnan(at)]  # alpha dropout may set a dropped NaN to its constant a*alpha' + b
    return f"dropped NaN -> {_fmt(hidden[0])}" if hidden.size else NAN_SURVIVES


def ulp_offset(value: float, exact: float, dtype: Any) -> int:
    """Signed number of representable ``dtype`` values between ``value`` and ``exact`` rounded to dtype."""
    dt = np.dtype(dtype)
    unsigned = {2: np.uint16, 4: np.uint32, 8: np.uint64}[dt.itemsize]
    a = int(np.array(value, dtype=dt).view(unsigned))
    b = int(np.array(exact, dtype=dt).view(unsigned))
    return a - b  # both positive: the bit patterns are ordered like the values


def kept_value_finding(y: np.ndarray, keep: float) -> str:
    """``<kept value> (<ulps> ulp)`` relative to 1/keep rounded to the output dtype (input is 1)."""
    ys = np.asarray(y)
    v = _f64(ys).ravel()
    kept = np.unique(v[(v != 0) & ~np.isnan(v)])
    if len(kept) != 1:
        return f"{len(kept)} distinct kept values"
    value = float(kept[0])
    if ys.dtype.kind != "f" or not value > 0:
        return f"{value:.6g}"
    shortest = str(np.array(value, dtype=ys.dtype)[()])  # the shortest repr that round-trips in that dtype
    return f"{shortest} ({ulp_offset(value, 1.0 / keep, ys.dtype):+d} ulp)"


# -- records -----------------------------------------------------------------------------------------
def new_record(api: str, case: Case) -> dict[str, Any]:
    """A record with every field present, in the JSON's field order."""
    return {"api": api, "case": case.id, "outcome": None, "error_type": None, "message": None,
            "finding": None, "expected": case.expected, "detail": None}


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def short_message(exc: BaseException | str, limit: int = 300) -> str:
    """One line, whitespace collapsed, terminal colours removed, cut to ``limit`` characters.

    A message that embeds a C++ traceback (MXNet: "Traceback ... MXNetError: what") keeps
    only the part from the line that names its own exception class.
    """
    text = _ANSI.sub("", str(exc))
    if isinstance(exc, BaseException):
        lines = text.splitlines()
        prefix = f"{type(exc).__name__}: "
        for i, line in enumerate(lines):
            if line.strip().startswith(prefix):
                text = "\n".join([line.strip()[len(prefix):], *lines[i + 1:]])
                break
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cell_label(record: dict[str, Any]) -> str:
    """What a matrix cell shows: the outcome (error with its class), or a convention's finding.

    An output whose dtype differs from the input's gets `` -> dtype`` (e.g. float16 in,
    float32 out), since the vocabulary alone would hide it.
    """
    outcome = record["outcome"]
    if outcome == "error":
        return f"error: {record['error_type']}"
    if outcome in NO_OUTPUT:
        return outcome
    label = outcome
    if record.get("finding"):
        case = BY_ID.get(record["case"])
        label = record["finding"] if case is None or case.convention else f"{outcome}; {record['finding']}"
    detail = record.get("detail") or {}
    if detail.get("in_dtype") and detail.get("dtype") and detail["dtype"] != detail["in_dtype"]:
        label += f" -> {detail['dtype']}"
    return label


def departs(record: dict[str, Any]) -> bool | None:
    """Whether the observed cell departs from what the spec prescribes; None where the spec is silent.

    n/a (the API has no such mode) is never a departure.
    """
    if record["outcome"] == "n/a":
        return False
    if record.get("expected") is None:
        return None
    return not fnmatchcase(cell_label(record), record["expected"])


# -- issue 18 findings ---------------------------------------------------------------------------------
def eager_mask_finding(eager: np.ndarray, compiled: np.ndarray) -> str:
    """Whether the compiled call kept exactly the elements the eager call kept (same seed, same input)."""
    e, c = _f64(eager), _f64(compiled)
    if e.shape != c.shape:
        return f"compiled shape {list(c.shape)}"
    return EAGER_MASK if np.array_equal(e != 0, c != 0) else NOT_EAGER_MASK


def binomial_region(n: int, p: float, alpha: float = ALPHA_PER_CHECK) -> tuple[int, int]:
    """:func:`suite.verify.stats.binomial_interval` computed on a window of +-40 sd around the mode.

    The same exact two-tailed region (the mass outside the window is below 1e-300), in milliseconds
    for n = 2**21 where the full pmf takes a second: the resolution cases need a few per record.
    """
    if n <= 0 or p <= 0.0:
        return 0, 0
    if p >= 1.0:
        return n, n
    mode = int(math.floor((n + 1) * p))
    mode = min(max(mode, 0), n)
    width = int(math.ceil(40 * math.sqrt(n * p * (1 - p)) + 50))
    lo_k, hi_k = max(0, mode - width), min(n, mode + width)
    k = np.arange(lo_k, hi_k, dtype=np.float64)  # pmf(k+1)/pmf(k) = (n-k)/(k+1) * p/(1-p), as stats does
    steps = np.log((n - k) / (k + 1)) + math.log(p / (1 - p))
    log_pmf = np.concatenate(([0.0], np.cumsum(steps)))  # relative to pmf(lo_k); normalized below
    pmf = np.exp(log_pmf - log_pmf.max())
    pmf /= pmf.sum()
    half = alpha / 2
    cdf = np.cumsum(pmf)
    sf = np.cumsum(pmf[::-1])[::-1]
    below = np.nonzero(cdf <= half)[0]
    lo = int(lo_k + below[-1] + 1) if below.size else lo_k
    above = np.nonzero(sf <= half)[0]
    hi = int(lo_k + above[0] - 1) if above.size else hi_k
    return lo, hi


def rate_interval(n: int, dropped: int, alpha: float = ALPHA_PER_CHECK) -> tuple[float, float]:
    """The drop rates p whose exact region (level alpha) holds ``dropped`` of ``n``: an exact confidence
    interval (inverting the test), found by bisection to 1e-7 relative."""
    if n <= 0:
        return 0.0, 1.0

    def accepts_above(p: float) -> bool:  # dropped <= hi(p): p is not too small
        return dropped <= binomial_region(n, p, alpha)[1]

    def accepts_below(p: float) -> bool:  # dropped >= lo(p): p is not too large
        return dropped >= binomial_region(n, p, alpha)[0]

    def bisect(ok_hi: bool) -> float:
        a, b = 0.0, 1.0
        for _ in range(40):
            m = (a + b) / 2
            if (accepts_above(m) if ok_hi else not accepts_below(m)):
                b = m
            else:
                a = m
        return b if ok_hi else a

    lo = 0.0 if dropped == 0 else bisect(True)
    hi = 1.0 if dropped == n else bisect(False)
    return lo, hi


def grid_neighbours(rate: float) -> list[tuple[str, float]]:
    """(step name, grid value) for each 1/16 and 1/256 grid point next to ``rate`` (rate itself excluded)."""
    out: list[tuple[str, float]] = []
    for name, step in RESOLUTION_STEPS:
        for value in (math.floor(rate / step) * step, math.ceil(rate / step) * step):
            if value != rate and (name, value) not in out:
                out.append((name, value))
    return out


def resolution_finding(y: np.ndarray, rate: float, alpha: float = ALPHA_PER_CHECK) -> tuple[str, dict[str, Any]]:
    """Which drop probability produced y: ``rate`` as given, a grid neighbour, or neither; with the measured rate.

    The dropped count must fall in the exact region of ``rate`` and in none of its 1/16 and 1/256
    grid neighbours' regions (disjoint at the cases' element count, so each wrong call has
    probability <= alpha).
    """
    mask = _f64(y) == 0
    n, dropped = int(mask.size), int(mask.sum())
    lo, hi = rate_interval(n, dropped, alpha)
    detail = {"n": n, "dropped": dropped, "measured_rate": dropped / max(n, 1), "interval": [lo, hi],
              "alpha": alpha}

    def fits(p: float) -> bool:
        a, b = binomial_region(n, p, alpha)
        return a <= dropped <= b

    hits = [(name, value) for name, value in grid_neighbours(rate) if fits(value)]
    if fits(rate) and not hits:
        return AS_GIVEN, detail
    if hits:
        name, value = hits[0]  # 1/16 neighbours come first: the coarsest grid the count fits
        return f"rounded to {value:.6g} (a {name} step)", detail
    return f"drops {dropped / max(n, 1):.4%} (interval {lo:.4%}-{hi:.4%})", detail
