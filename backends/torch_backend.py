"""PyTorch: F.dropout, nn.Dropout, the channel-wise nn.Dropout1d/2d and d2l's from-scratch layer.

Every API is built by one function, :meth:`TorchBackend._builder`, which turns a spec into a
``tensor -> tensor`` callable; the checks (:meth:`_impl`) and the timing closures
(:meth:`prepare`) both use it, so there is one place per API. The spec goes to torch as is:
edge rates, dtype promotion and torch's own exceptions are what the suite records.
torch is imported lazily through :meth:`BaseBackend.framework`, never at module level.
"""
from __future__ import annotations

import importlib
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from backends.attention_inputs import one_hot_values, require_finite, weights_layout
from backends.base import ApiInfo, BaseBackend, DeviceBaseline, Layout, Traffic, Unavailable, Unsupported

_DTYPES = ("float32", "float16", "float64")  # all three run forward and backward on CPU torch
_NOISE = Traffic(mask="x")  # a multiplier tensor in x's dtype, kept for backward (see infos)
_ATTENTION = ("F.scaled_dot_product_attention", "nn.MultiheadAttention")
_MODULES = {"nn.Dropout": "Dropout", "nn.Dropout1d": "Dropout1d", "nn.Dropout2d": "Dropout2d",
            "nn.AlphaDropout": "AlphaDropout", "nn.FeatureAlphaDropout": "FeatureAlphaDropout"}
_ALPHA_FUNCTIONS = {"F.alpha_dropout": "alpha_dropout", "F.feature_alpha_dropout": "feature_alpha_dropout"}
# aten's _dropout_impl<alpha>: noise (x's dtype) times a, plus b, both kept as tensors as wide as x
_ALPHA = ApiInfo(frozenset({"seed", "backward", "eval"}), _DTYPES, traffic=_NOISE, kind="alpha")
_FEATURE_ALPHA = replace(_ALPHA, capabilities=_ALPHA.capabilities | {"broadcast_axes"},
                         layout=Layout(ndim=4, broadcast_axes=(2, 3)))  # one mask value per (sample, channel)

Tensor = Any  # torch.Tensor, unnamed here so that this module imports without torch


def pin_torch_threads(torch: Any, threads: int) -> dict[str, Any]:
    """Intra- and inter-op pools; the second can only be set before any parallel work ran."""
    out: dict[str, Any] = {}
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError as exc:  # parallel work already started in this process
        out["interop_error"] = str(exc).splitlines()[0]
    out.update({"torch.get_num_threads": torch.get_num_threads(),
                "torch.get_num_interop_threads": torch.get_num_interop_threads()})
    return out


class TorchBackend(BaseBackend):
    name = "torch"
    apis = ("F.dropout", "nn.Dropout", "nn.Dropout1d", "nn.Dropout2d", "d2l-scratch") + _ATTENTION + (
        "F.alpha_dropout", "nn.AlphaDropout", "F.feature_alpha_dropout", "nn.FeatureAlphaDropout")
    modules = ("torch",)
    mlp_module = "backends.torch_mlp"
    infos = {
        # No torch API has vanilla scaling; only the channel-wise modules share a mask, and
        # only along their fixed layout. torch.manual_seed seeds them all.
        # On the CPU, aten's _dropout_impl draws `noise` in x's dtype (bernoulli_, div_ by keep) and returns
        # input * noise; autograd keeps noise for backward: a mask as wide as x (traffic "x"). CUDA's fused
        # native_dropout stores a bool mask instead; the model here is the CPU path the committed runs time.
        "F.dropout": ApiInfo(frozenset({"seed", "backward", "eval"}), _DTYPES, traffic=_NOISE),
        "nn.Dropout": ApiInfo(frozenset({"seed", "backward", "eval"}), _DTYPES, traffic=_NOISE),
        "nn.Dropout1d": ApiInfo(
            frozenset({"broadcast_axes", "seed", "backward", "eval"}), _DTYPES, Layout(ndim=3, broadcast_axes=(2,)),
            traffic=_NOISE),
        "nn.Dropout2d": ApiInfo(
            frozenset({"broadcast_axes", "seed", "backward", "eval"}), _DTYPES, Layout(ndim=4, broadcast_axes=(2, 3)),
            traffic=_NOISE),
        # d2l's dropout_layer(X, dropout) is a bare function: no eval mode, no axes, no vanilla.
        "d2l-scratch": ApiInfo(frozenset({"seed", "backward"}), _DTYPES),
        # Dropout inside attention, on the softmax weights (backends/attention_inputs.py makes them the
        # output). No backward: y is x times the weights' mask, so d y/d x is computed by the adapter, not
        # by torch's attention backward. SDPA has no training flag (dropout_p applies whenever it is
        # given; callers pass 0.0 in eval), so no eval; the module has train()/eval().
        "F.scaled_dot_product_attention": ApiInfo(frozenset({"seed"}), ("float32", "float64")),
        "nn.MultiheadAttention": ApiInfo(frozenset({"seed", "eval"}), ("float32", "float64")),
        # Alpha dropout (SELU networks); the feature forms drop whole channels of (N, C, *) to alpha'.
        "F.alpha_dropout": _ALPHA,
        "nn.AlphaDropout": _ALPHA,
        "F.feature_alpha_dropout": _FEATURE_ALPHA,
        "nn.FeatureAlphaDropout": _FEATURE_ALPHA,
    }

    def __init__(self) -> None:
        super().__init__()
        self._compiled_fns: dict[tuple[Any, ...], Callable[[Tensor], Tensor]] = {}

    def pin_threads(self, threads: int) -> dict[str, Any]:
        return pin_torch_threads(self.framework(), threads)

    def event_timing(self, step: Callable[[], None], device: str) -> dict[str, Any]:
        """Per-call CUDA-event times of a prepared GPU step, warm and cold (backends/cuda_timing.py)."""
        if not device.startswith("cuda"):
            raise Unsupported(f"{self.name}: CUDA events time GPU steps only, not {device!r}")
        timing = importlib.import_module("backends.cuda_timing")
        return timing.torch_event_timing(step, device)

    def devices(self) -> list[str]:
        """"cpu" plus one "cuda:i" per visible GPU (just "cpu" when torch is missing)."""
        try:
            torch = self.framework()
        except Exception:
            return ["cpu"]
        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    # -- device baselines ---------------------------------------------------------------
    def device_baseline(self, api: str, numel: int, dtype: str, device: str) -> DeviceBaseline:
        """The GPU's own copy (``Tensor.copy_``) and raw Philox output, synchronized in the step."""
        torch = self.framework()
        index = int(device.partition(":")[2] or 0)
        if not torch.cuda.is_available():
            raise Unavailable(f"torch {torch.__version__} sees no CUDA device")
        if index >= torch.cuda.device_count():
            raise Unavailable(f"torch sees {torch.cuda.device_count()} CUDA device(s), not {device}")
        dev = torch.device(f"cuda:{index}")
        versions = {"torch": str(torch.__version__), "cuda": str(torch.version.cuda)}
        sync = lambda: torch.cuda.synchronize(dev)  # noqa: E731
        if api == "copy":
            src = torch.ones(numel, dtype=getattr(torch, dtype), device=dev)
            dst = torch.empty_like(src)

            def step() -> None:
                dst.copy_(src)
                sync()

            impl, output = "torch.Tensor.copy_ (cuda)", dst
        else:
            # random_() on int32 draws one 32-bit Philox word per element (kept to 31 bits); torch
            # has no full-range uint32 fill, and this is the cheapest per-element RNG op it offers.
            buf = torch.empty(numel, dtype=torch.int32, device=dev)

            def step() -> None:
                buf.random_()
                sync()

            impl, output = "torch.Tensor.random_ int32 (cuda Philox4x32-10)", buf
        sync()
        return DeviceBaseline(api, impl, str(dev), 1, step, versions, output)

    # -- one builder per API ----------------------------------------------
    def _builder(self, api: str, spec: Any) -> Callable[[Tensor], Tensor]:
        """The API as a user would set it up for ``spec``: modules are constructed once, here."""
        self._check_api(api)
        torch = self.framework()
        if api == "F.dropout":
            functional = torch.nn.functional
            return lambda x: functional.dropout(x, p=spec.rate, training=spec.training)
        if api in _ALPHA_FUNCTIONS:
            function = getattr(torch.nn.functional, _ALPHA_FUNCTIONS[api])
            return lambda x: function(x, p=spec.rate, training=spec.training)
        if api in _MODULES:
            module = getattr(torch.nn, _MODULES[api])(p=spec.rate)
            module.train(spec.training)  # train(False) is eval()
            return module
        if api == "d2l-scratch":

            def dropout_layer(X: Tensor, dropout: float) -> Tensor:
                # Verbatim from d2l.ai (PyTorch tab), including the CPU-only torch.rand
                # and the .float() that promotes float16 input to a float32 output.
                assert 0 <= dropout <= 1
                if dropout == 1:
                    return torch.zeros_like(X)
                if dropout == 0:
                    return X
                mask = (torch.rand(X.shape) > dropout).float()
                return mask * X / (1.0 - dropout)

            return lambda x: dropout_layer(x, spec.rate)
        if api in _ATTENTION:
            return self._attention_builder(api, spec)
        raise AssertionError(f"no builder for {api!r}")  # apis and builders out of step

    def _attention_builder(self, api: str, spec: Any) -> Callable[[Tensor], Tensor]:
        """x -> x * (dropped weights * L), the weights all 1/L (zero query/key; one-hot values L * e_j).

        SDPA is called as a model calls it, ``dropout_p=rate`` (scale=1: the logits are 0 anyway);
        the module as built, ``MultiheadAttention(L, 1, dropout=rate, bias=False, batch_first=True)``
        with its query/key projections zero and value/output projections the identity, called with
        the default need_weights=True.
        """
        torch = self.framework()
        info = self.infos[api]

        def attention(x: Tensor) -> Tensor:
            dtype_name = str(x.dtype).removeprefix("torch.")
            if dtype_name not in info.dtypes:
                raise Unsupported(f"{self.name}:{api} is probed in {', '.join(info.dtypes)} only, not {dtype_name}")
            require_finite(f"{self.name}:{api}", x.detach().cpu().numpy())
            rows, keys = weights_layout(tuple(x.shape))
            if rows == 0:
                return x * 0
            opts = {"dtype": x.dtype, "device": x.device}
            values = torch.tensor(one_hot_values(keys, np.dtype(dtype_name)), device=x.device)[None]
            if api == "F.scaled_dot_product_attention":
                q, k = torch.zeros(1, rows, 1, **opts), torch.zeros(1, keys, 1, **opts)
                out = torch.nn.functional.scaled_dot_product_attention(q, k, values, dropout_p=spec.rate, scale=1.0)
            else:
                mha = torch.nn.MultiheadAttention(keys, 1, dropout=spec.rate, bias=False, batch_first=True, **opts)
                with torch.no_grad():
                    mha.in_proj_weight.zero_()
                    mha.in_proj_weight[2 * keys:].copy_(torch.eye(keys, **opts))
                    mha.out_proj.weight.copy_(torch.eye(keys, **opts))
                mha.train(spec.training)
                out, _ = mha(torch.zeros(1, rows, keys, **opts), torch.zeros(1, keys, keys, **opts), values)
            return x * out.reshape(x.shape)

        return attention

    def _seed(self, spec: Any) -> None:
        """Reseed torch's global generators (CPU and CUDA) only when the spec names a seed."""
        if spec.seed is not None:
            self.framework().manual_seed(spec.seed)

    def _input_grad(self, y: Tensor, x: Tensor, grad_out: Tensor) -> Tensor:
        """dL/dx for L = sum(y * grad_out) by autograd.

        An output with no autograd path to x (d2l's ``torch.zeros_like(X)`` at rate 1) is a
        constant, so its gradient is zero; torch would leave ``x.grad`` as None.
        """
        torch = self.framework()
        if not y.requires_grad:
            return torch.zeros_like(x)
        (grad,) = torch.autograd.grad(y, x, grad_out)
        return grad

    # -- checks ----------------------------------------------------------
    def _impl(self, api: str) -> Callable[[np.ndarray, np.ndarray | None, Any], tuple[np.ndarray, np.ndarray | None]]:
        self._check_api(api)

        def run(x: np.ndarray, grad_out: np.ndarray | None, spec: Any) -> tuple[np.ndarray, np.ndarray | None]:
            torch = self.framework()
            dropout = self._builder(api, spec)
            device = torch.device(spec.device)
            # torch.tensor copies, so an output that *is* its input (rate 0, eval) never
            # aliases the caller's array.
            xt = torch.tensor(x, device=device)
            if grad_out is not None:
                xt.requires_grad_(True)
            self._seed(spec)
            y = dropout(xt)
            grad = None
            if grad_out is not None:
                grad = self._input_grad(y, xt, torch.tensor(grad_out, device=device))
                grad = grad.detach().cpu().numpy()
            return y.detach().cpu().numpy(), grad

        return run

    # -- compiled (probe only) -------------------------------------------------
    def compiled_mode_for_probe(self, api: str) -> str | None:
        return "torch.compile" if api == "F.dropout" else None

    def _compiled(self, api: str) -> Callable[[np.ndarray, np.ndarray | None, Any], tuple[np.ndarray, np.ndarray | None]]:
        if api != "F.dropout":
            self._check_api(api)
            raise Unsupported(f"{self.name}:{api}: torch.compile is probed on F.dropout only (the modules call the "
                              "same op; one inductor compile costs 15-70 s on a 2-core CPU)")
        return self._compiled_impl(api)

    def _compiled_impl(self, api: str) -> Callable[[np.ndarray, np.ndarray | None, Any], tuple[np.ndarray, np.ndarray | None]]:
        """F.dropout under ``torch.compile`` (inductor, default config: no ``fallback_random``).

        One compiled function per (rate, training), kept as a training loop keeps it; the seed is
        applied with ``torch.manual_seed`` right before the call, exactly as in eager.
        """
        def run(x: np.ndarray, grad_out: np.ndarray | None, spec: Any) -> tuple[np.ndarray, np.ndarray | None]:
            torch = self.framework()
            key = (api, repr(spec.rate), bool(spec.training))
            fn = self._compiled_fns.get(key)
            if fn is None:
                fn = self._compiled_fns[key] = torch.compile(self._builder(api, spec))
            xt = torch.tensor(x, device=torch.device(spec.device))
            if grad_out is not None:
                xt.requires_grad_(True)
            self._seed(spec)
            y = fn(xt)
            grad = None
            if grad_out is not None:
                grad = self._input_grad(y, xt, torch.tensor(grad_out, device=xt.device)).detach().cpu().numpy()
            return y.detach().cpu().numpy(), grad

        return run

    # -- timing ----------------------------------------------------------
    def prepare(
        self, shape: Sequence[int], spec: Any, *, api: str, direction: str, compiled: bool = False
    ) -> Callable[[], None]:
        """One timed step on device-resident data; all allocation and construction happen here.

        A given seed is applied once, before the first step, so a timed run is reproducible
        without paying for a reseed every step.
        """
        if api in _ATTENTION:
            raise Unsupported(f"{self.name}:{api}: attention dropout is probed, not timed (a timing would be the attention's)")
        shape, backward = self._prepare_args(shape, spec, api, direction)
        if compiled:
            raise Unsupported(f"{self.name}:{api}: torch.compile is not benchmarked")
        torch = self.framework()
        dropout = self._builder(api, spec)
        device = torch.device(spec.device)
        dtype = getattr(torch, spec.dtype)
        x = torch.randn(tuple(shape), dtype=dtype, device=device)
        grad_out = torch.randn(tuple(shape), dtype=dtype, device=device)
        x.requires_grad_(backward)
        sync: Callable[[], None] = (
            (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        )
        self._seed(spec)

        def step() -> None:
            y = dropout(x)
            if backward:
                self._input_grad(y, x, grad_out)
            sync()

        return step


class TorchPrevious(TorchBackend):
    """The same adapter in the "torch-prev" environment (the previous minor torch), for ``probe --diff``.

    Not in the registry: ``--backend backends.torch_backend:TorchPrevious`` after ``dropbench env create torch-prev``.
    """

    environment = "torch-prev"
