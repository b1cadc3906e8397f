"""The contract every framework adapter fulfils.

Adapters translate one abstract :class:`suite.spec.DropoutSpec` into one framework API call.
They take and return NumPy arrays so that the checks never touch a framework. Nothing in
this module imports a framework: an adapter imports its framework lazily, inside
:meth:`BaseBackend.framework`, so that listing backends stays cheap and an uninstalled
framework becomes an :class:`Unavailable` instead of an ImportError at import time.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

CAPABILITIES: frozenset[str] = frozenset({"vanilla", "broadcast_axes", "seed", "backward", "eval"})
"""Spec features an API may or may not express.

vanilla: the classic scheme (no scaling in training, x*keep in eval);
broadcast_axes: a mask shared along chosen axes (TF noise_shape, MXNet axes);
seed: the same ``spec.seed`` reproduces the same mask;
backward: the framework's autograd gives the input gradient;
eval: the API has an inference mode (``spec.training=False`` gives identity).

These are also the default of an API (or a plugin) that declares nothing. Opt-in
capabilities, never implied by a default, are in :data:`OPT_IN_CAPABILITIES`.
"""

OPT_IN_CAPABILITIES: frozenset[str] = frozenset({"inplace"})
"""Capabilities an API must name itself (they are not in :data:`CAPABILITIES`, the default):

inplace: the API writes its result into the array it was given (``inplace=True``); ``verify``
then accepts a call that changes its input, which otherwise fails ``input-unchanged``.
"""

KNOWN_CAPABILITIES: frozenset[str] = CAPABILITIES | OPT_IN_CAPABILITIES

SCALINGS: tuple[str, ...] = ("inverted", "vanilla")
"""The training scalings an API may implement (``ApiInfo.scalings``, or a plugin's ``scalings``)."""


DIRECTIONS = ("forward", "forward_backward")


class Unavailable(RuntimeError):
    """The framework behind a backend cannot be used here (not installed, import failed, no device)."""


class Unsupported(NotImplementedError):
    """The API cannot express this spec (e.g. vanilla scaling); the check is skipped, not failed."""


@dataclass(frozen=True)
class Layout:
    """A fixed input layout that an API always broadcasts over (channel dropout).

    ``torch.nn.Dropout2d`` only exists for (N, C, H, W) input with one mask value per
    channel, i.e. ``broadcast_axes=(2, 3)``; the checks must feed it that layout.
    """

    ndim: int
    broadcast_axes: tuple[int, ...]


MASK_BYTES: dict[str, float] = {"none": 0.0, "bit": 0.125, "bool": 1.0, "uint8": 1.0}
"""Bytes per mask element by how an API keeps its mask; "x" (a multiplier in x's dtype) is x's itemsize."""


@dataclass(frozen=True)
class Traffic:
    """What one step of an API moves through memory, per element: the bytes model of the bandwidth columns.

    Forward reads x, writes y and writes the mask; backward reads grad_out and the mask and writes
    grad_x. ``mask``: "none" (regenerated from the seed in backward, nothing stored: triton:seeded),
    "bit", "bool"/"uint8" (1 byte), "x" (a multiplier tensor in x's dtype, e.g. torch's CPU
    ``input * noise``). ``declared`` False: nobody looked; the default assumes a stored 1-byte mask.
    A mask shared along axes has fewer elements: the caller passes ``mask_elements``. Temporaries are
    not counted (e.g. CuPy's float32 uniforms, written by the generator and read once by the kernel,
    or torch's bernoulli_ pass over its noise): the model is a lower bound of what a step moves.
    """

    mask: str = "bool"
    declared: bool = True

    def mask_bytes(self, itemsize: int) -> float:
        if self.mask == "x":
            return float(itemsize)
        if self.mask not in MASK_BYTES:
            raise ValueError(f"unknown mask storage {self.mask!r}; choose from x, {', '.join(MASK_BYTES)}")
        return MASK_BYTES[self.mask]

    def bytes_moved(self, direction: str, numel: int, itemsize: int, mask_elements: int | None = None) -> float:
        """Bytes one step moves: forward x + y + mask written; forward_backward adds grad_out + grad_x + mask read."""
        mask = self.mask_bytes(itemsize) * (numel if mask_elements is None else mask_elements)
        forward = 2 * numel * itemsize + mask
        if direction == "forward":
            return forward
        if direction != "forward_backward":
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        return forward + 2 * numel * itemsize + mask


ASSUMED_TRAFFIC = Traffic(declared=False)


@dataclass(frozen=True)
class ApiInfo:
    """What one API supports; the checks skip (with a reason) what is not listed."""

    capabilities: frozenset[str] = CAPABILITIES
    dtypes: tuple[str, ...] = ("float32",)
    layout: Layout | None = None
    compiled: str | None = None
    """The name of the API's graph/compiled mode ("tf.function", "jit", "hybridized"), which the
    benchmarks time next to eager through ``prepare(..., compiled=True)``; None: eager only."""
    traffic: Traffic = ASSUMED_TRAFFIC
    """What one step moves per element (the bench's ``bytes_moved``); default: a stored 1-byte mask, undeclared."""
    scalings: tuple[str, ...] | None = None
    """The training scalings the API implements, from :data:`SCALINGS`; None: inverted, plus vanilla
    when the 'vanilla' capability is declared. ``verify`` runs its training families in the first one
    and certifies only when every family of each declared scaling ran; an API naming none is not certified."""
    kind: str = "bernoulli"
    """Which member of the dropout family the API is (``suite.spec.KINDS``): a spec of another kind is Unsupported."""


def declared_scalings(info: ApiInfo) -> tuple[str, ...]:
    """The scalings ``info`` declares, in :data:`SCALINGS` order; ValueError naming an unknown one."""
    if info.scalings is None:
        return ("inverted",) + (("vanilla",) if "vanilla" in info.capabilities else ())
    unknown = set(info.scalings) - set(SCALINGS)
    if unknown or isinstance(info.scalings, str):
        raise ValueError(f"scalings must be a collection of {SCALINGS}, got {info.scalings!r}")
    return tuple(s for s in SCALINGS if s in info.scalings)


@runtime_checkable
class Backend(Protocol):
    """What a third-party backend must provide (``--backend module:attr``)."""

    name: str
    apis: tuple[str, ...]

    def available(self) -> bool: ...

    def versions(self) -> dict[str, str]: ...

    def devices(self) -> list[str]: ...

    def forward(self, x: np.ndarray, spec: Any, *, api: str) -> np.ndarray: ...

    def forward_backward(
        self, x: np.ndarray, grad_out: np.ndarray, spec: Any, *, api: str
    ) -> tuple[np.ndarray, np.ndarray]: ...


def api_info(backend: Any, api: str) -> ApiInfo:
    """The ApiInfo of ``api``, also for duck-typed plugins that only have ``capabilities``.

    A plugin's ``capabilities`` may be one collection for all of its APIs or a mapping
    from API name to a collection; absent means every capability.
    """
    getter = getattr(backend, "api_info", None)
    if callable(getter):
        return getter(api)
    caps = getattr(backend, "capabilities", None)
    if caps is None:
        return ApiInfo()
    if isinstance(caps, Mapping):
        caps = caps.get(api, CAPABILITIES)
    unknown = set(caps) - KNOWN_CAPABILITIES
    if unknown:
        raise ValueError(f"backend {backend.name!r} declares unknown capabilities {sorted(unknown)}")
    dtypes = getattr(backend, "dtypes", ("float32",))
    if isinstance(dtypes, Mapping):
        dtypes = dtypes.get(api, ("float32",))
    scalings = getattr(backend, "scalings", None)
    if isinstance(scalings, Mapping):
        scalings = scalings.get(api)
    info = ApiInfo(capabilities=frozenset(caps), dtypes=tuple(dtypes),
                   scalings=None if scalings is None else tuple(scalings) if not isinstance(scalings, str) else scalings)
    declared_scalings(info)  # an unknown scaling is a ValueError here, before any check
    return info


@dataclass
class DeviceBaseline:
    """One prepared roofline baseline on a device: ``step`` runs once and synchronizes.

    A backend that can time its device's own memory copy and raw RNG offers them through
    ``device_baseline(api, numel, dtype, device)`` (api "copy" or "rng32"); the benchmark
    harness asks the worker's backend first, then every built-in that has one.
    """

    api: str  # "copy" | "rng32"
    impl: str  # what exactly is timed, e.g. "numpy.copyto"
    device: str  # "cpu" | "cuda:N"
    threads: int  # threads the baseline itself uses
    step: Callable[[], None]
    versions: dict[str, str]
    output: Any = None  # the buffer step() writes (for tests and sanity checks)


def set_thread_env(names: Sequence[str], threads: int) -> dict[str, str]:
    """Set a framework's own thread variables (read at its import) in this worker; returns them."""
    values = {name: str(threads) for name in names}
    os.environ.update(values)
    return values


class BaseBackend:
    """Shared plumbing for the built-in adapters: lazy import, availability, API dispatch.

    Subclasses set ``name``, ``apis``, ``modules`` (import names, the first is the
    framework), ``infos`` and implement ``_forward_<api>``-style dispatch through
    :meth:`_impl`.
    """

    name: str = ""
    apis: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    infos: Mapping[str, ApiInfo] = {}
    environment: str | None = None
    """The worker environment (backends/environments.toml) whose interpreter runs this backend; None: the main one."""
    worker_env: Mapping[str, str] = {}
    """Variables the worker needs before anything is imported (e.g. KERAS_BACKEND)."""
    compiled_mode: str | None = None
    """Default :attr:`ApiInfo.compiled` for every API of this backend that does not set its own."""
    mlp_module: str | None = None
    """A module that trains the textbook MLP in this framework (``dropbench experiment train``):
    ``import_framework()``, ``versions()``, ``runtime_info()``, ``build(problem, spec)``."""

    def __init__(self) -> None:
        self._framework: ModuleType | None = None
        self._import_error: str | None = None

    # -- availability -------------------------------------------------
    def _import_framework(self) -> ModuleType:
        """Import the framework; subclasses override to apply shims before importing."""
        return importlib.import_module(self.modules[0])

    def framework(self) -> ModuleType:
        """The imported framework module, or :class:`Unavailable` with the import error."""
        if self._framework is None:
            if self._import_error is not None:
                raise Unavailable(self._import_error)
            try:
                self._framework = self._import_framework()
            except Unavailable as exc:  # the adapter's own reason (no GPU, package missing): as is
                self._import_error = str(exc)
                raise
            except Exception as exc:  # any import failure makes the backend unavailable
                self._import_error = f"{self.modules[0]} failed to import: {type(exc).__name__}: {exc}"
                raise Unavailable(self._import_error) from exc
        return self._framework

    def available(self) -> bool:
        try:
            self.framework()
        except Unavailable:
            return False
        return True

    def unavailable_reason(self) -> str | None:
        """Why :meth:`available` is False (the import error), else None."""
        return None if self.available() else self._import_error

    def versions(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for mod_name in self.modules:
            try:
                mod = importlib.import_module(mod_name) if mod_name != self.modules[0] else self.framework()
                out[mod_name] = str(getattr(mod, "__version__", "unknown"))
            except Exception as exc:
                out[mod_name] = f"unavailable ({type(exc).__name__})"
        return out

    def devices(self) -> list[str]:
        return ["cpu"]

    def api_info(self, api: str) -> ApiInfo:
        self._check_api(api)
        info = self.infos.get(api, ApiInfo())
        if info.compiled is None and self.compiled_mode is not None:
            info = replace(info, compiled=self.compiled_mode)
        return info

    def pin_threads(self, threads: int) -> dict[str, Any]:
        """Pin this framework's thread pools to ``threads``; returns what it reports back.

        Called in the worker before the framework is imported (set import-time variables here,
        then import and call the framework's own API). The default does nothing: the BLAS/OpenMP
        variables the harness sets are all a NumPy-only backend has.
        """
        return {}

    # -- dispatch -------------------------------------------------------
    def _check_api(self, api: str) -> None:
        if api not in self.apis:
            raise ValueError(f"unknown api {api!r} for backend {self.name!r}; choose from {', '.join(self.apis)}")

    def _require(self, api: str, spec: Any, *, backward: bool = False) -> ApiInfo:
        """Raise Unsupported when ``spec`` asks for a feature ``api`` lacks."""
        info = self.api_info(api)
        caps = info.capabilities
        if getattr(spec, "kind", "bernoulli") != info.kind:
            raise Unsupported(f"{self.name}:{api} is {info.kind} dropout; the spec asks for {spec.kind}")
        if spec.scaling == "vanilla" and "vanilla" not in caps:
            raise Unsupported(f"{self.name}:{api} has no vanilla (test-time scaling) mode")
        if not spec.training and "eval" not in caps:
            raise Unsupported(f"{self.name}:{api} has no inference mode")
        if spec.seed is not None and "seed" not in caps:
            raise Unsupported(f"{self.name}:{api} cannot be seeded per call")
        if backward and "backward" not in caps:
            raise Unsupported(f"{self.name}:{api} has no backward")
        if info.layout is not None:
            if spec.normalized_axes(info.layout.ndim) != info.layout.broadcast_axes:
                raise Unsupported(
                    f"{self.name}:{api} always shares its mask along axes {info.layout.broadcast_axes} "
                    f"of a {info.layout.ndim}-d input; spec asks for {tuple(spec.broadcast_axes)}"
                )
        elif spec.broadcast_axes and "broadcast_axes" not in caps:
            raise Unsupported(f"{self.name}:{api} cannot share a mask along axes")
        device = "cuda:0" if spec.device == "cuda" else spec.device
        if device != "cpu" and device not in self.devices():
            raise Unsupported(f"{self.name}:{api} has no device {spec.device!r} here")
        return info

    def forward(self, x: np.ndarray, spec: Any, *, api: str) -> np.ndarray:
        """y for x; x arrives in the dtype the caller chose (the harness uses spec.dtype)."""
        self._check_axes(x, spec, api)
        self._require(api, spec)
        return self._impl(api)(x, None, spec)[0]

    def forward_backward(
        self, x: np.ndarray, grad_out: np.ndarray, spec: Any, *, api: str
    ) -> tuple[np.ndarray, np.ndarray]:
        self._check_axes(x, spec, api)
        self._require(api, spec, backward=True)
        y, grad = self._impl(api)(x, grad_out, spec)
        assert grad is not None
        return y, grad

    # -- compiled mode, for the probe's compiled-vs-eager cases --------------------------
    def compiled_mode_for_probe(self, api: str) -> str | None:
        """The compiled mode :meth:`forward_compiled` runs for ``api`` (None: none).

        Usually :attr:`ApiInfo.compiled` (the mode the benchmarks time); an adapter may probe a
        mode it does not time (torch.compile: one compile costs 15-70 s on a 2-core CPU).
        """
        return self.api_info(api).compiled

    def forward_compiled(self, x: np.ndarray, spec: Any, *, api: str) -> np.ndarray:
        """y for x from the API's compiled mode (tf.function, jit, hybridized), with the same seeding as forward()."""
        self._check_axes(x, spec, api)
        self._require(api, spec)
        return self._compiled(api)(x, None, spec)[0]

    def forward_backward_compiled(
        self, x: np.ndarray, grad_out: np.ndarray, spec: Any, *, api: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """forward_backward() with forward and backward inside the compiled mode."""
        self._check_axes(x, spec, api)
        self._require(api, spec, backward=True)
        y, grad = self._compiled(api)(x, grad_out, spec)
        assert grad is not None
        return y, grad

    def _compiled(self, api: str) -> Callable[[np.ndarray, np.ndarray | None, Any], tuple[np.ndarray, np.ndarray | None]]:
        mode = self.compiled_mode_for_probe(api)
        if mode is None:
            raise Unsupported(f"{self.name}:{api} has no compiled mode")
        return self._compiled_impl(api)

    def _compiled_impl(self, api: str) -> Callable[[np.ndarray, np.ndarray | None, Any], tuple[np.ndarray, np.ndarray | None]]:
        """:meth:`_impl` inside the compiled mode; adapters with a compiled mode override this."""
        raise Unsupported(f"{self.name}:{api}: the adapter does not run its compiled mode outside timing")

    def _check_axes(self, x: np.ndarray, spec: Any, api: str) -> None:
        spec.mask_shape(x.shape)  # raises ValueError naming an out-of-range axis
        info = self.api_info(api)
        if info.layout is not None and x.ndim != info.layout.ndim:
            raise Unsupported(f"{self.name}:{api} needs a {info.layout.ndim}-d input, got shape {x.shape}")

    def _impl(self, api: str) -> Callable[[np.ndarray, np.ndarray | None, Any], tuple[np.ndarray, np.ndarray | None]]:
        """The function ``(x, grad_out_or_None, spec) -> (y, grad_or_None)`` for ``api``."""
        raise NotImplementedError

    def _prepare_args(self, shape: Sequence[int], spec: Any, api: str, direction: str) -> tuple[tuple[int, ...], bool]:
        """Validate a prepare() call as forward() would: (shape as ints, whether backward is timed)."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        backward = direction == "forward_backward"
        shape = tuple(int(n) for n in shape)
        self._check_axes(np.broadcast_to(np.float32(0), shape), spec, api)  # zero-memory stand-in
        self._require(api, spec, backward=backward)
        return shape, backward

    def _gpu_prepare_args(self, shape: Sequence[int], spec: Any, api: str, direction: str,
                          compiled: bool) -> tuple[tuple[int, ...], bool]:
        """:meth:`_prepare_args` for GPU-only kernels: no CPU timing, no separate compiled mode."""
        shape_, backward = self._prepare_args(shape, spec, api, direction)
        if spec.device == "cpu":
            raise Unsupported(f"{self.name}:{api} runs on a GPU only: no CPU timing")
        if compiled:
            raise Unsupported(f"{self.name}:{api}: the kernel is already compiled; no separate mode")
        if spec.dtype not in self.api_info(api).dtypes:
            raise Unsupported(f"{self.name}:{api} has no dtype {spec.dtype!r}")
        return shape_, backward

    def prepare(self, shape: Sequence[int], spec: Any, *, api: str, direction: str,
                compiled: bool = False) -> Callable[[], None]:
        """A closure that runs one timed step on device-resident data.

        ``direction`` is "forward" or "forward_backward" (forward plus the framework's own
        backward of sum(y * grad_out)). Inputs are created before returning; the closure
        ends with the framework's synchronization. ``compiled`` asks for the framework's
        graph mode (tf.function, hybridized Gluon) where one exists.
        """
        raise Unsupported(f"{self.name}:{api} has no timing closure")
