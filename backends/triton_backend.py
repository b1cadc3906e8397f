"""Triton: a reference kernel that regenerates the dropout mask from its seed in backward (GPU only).

Forward launches ``r = tl.rand(seed, offset)``, ``y = r < keep ? x * scale : 0`` and keeps only the
seed; backward runs the same kernel on grad_out with the same seed, so Philox regenerates the same
mask and no mask is stored (backends/triton_kernels.py). The pair is a ``torch.autograd.Function``,
so the gradient comes from torch's autograd like any layer's. A seeded spec passes its seed; an
unseeded call draws the next seed from a host generator the adapter holds (OS entropy: fresh masks
in every process). ``scale`` is 1/keep, and 0 at keep 0 (rate 1: zeros). Elementwise only: no
shared-axis mask, no inference mode.

GPU only: with ``spec.device == "cpu"`` the checks' host arrays go to cuda:0; timing refuses "cpu"
(Unsupported). Runs in the main environment: triton ships with the CUDA builds of torch.

:class:`TritonInterpreted` (registry name ``triton-interp``, API ``triton:seeded.interpreted``) is the
same kernel and the same autograd function run by Triton's interpreter (``TRITON_INTERPRET=1``, which
its worker sets) on CPU tensors, in the ``triton-interp`` worker environment (triton 3.7.1 next to the
CPU build of torch): verify and probe check the kernel without a GPU. Its own API id keeps its probe
records apart from the GPU's; it is never timed (an interpreter's speed says nothing about a GPU's).
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from backends.base import ApiInfo, BaseBackend, Traffic, Unavailable, Unsupported

_DTYPES = ("float32", "float16")
PREPARE_INPUT_SEED = 20261126
SEED_BOUND = 2**31 - 1  # tl.rand takes a 32-bit seed
_REGENERATED = Traffic(mask="none")  # backward regenerates the mask from the seed: none is stored or read

Tensor = Any  # torch.Tensor


class TritonBackend(BaseBackend):
    name = "triton"
    apis = ("seeded",)
    modules = ("triton", "torch")
    infos = {"seeded": ApiInfo(frozenset({"seed", "backward"}), _DTYPES, traffic=_REGENERATED)}
    interpreter = False
    """True: run on CPU tensors in Triton's interpreter (TritonInterpreted), False: on a CUDA GPU."""

    def __init__(self) -> None:
        super().__init__()
        self._seeds = np.random.default_rng()  # unseeded calls: the next seed of this stream
        self._function: Any = None
        self._kernels: ModuleType | None = None

    # -- framework: triton, torch and a CUDA device, with the reason when any is missing -----
    def _import_framework(self) -> ModuleType:
        return self._load()

    def _load(self) -> ModuleType:
        problems = []
        try:
            torch = importlib.import_module("torch")
        except Exception as exc:
            raise Unavailable(f"torch failed to import ({type(exc).__name__}: {exc}); triton:seeded launches on "
                              "torch CUDA tensors") from exc
        if self.interpreter and os.environ.get("TRITON_INTERPRET") != "1":
            problems.append("TRITON_INTERPRET is not 1 (the triton-interp registry entry's worker sets it)")
        if not self.interpreter and not torch.cuda.is_available():
            problems.append(f"no CUDA device (torch {torch.__version__} sees none)")
        try:
            triton = importlib.import_module("triton")
        except ImportError:
            problems.append("triton is not installed (" + ("run `dropbench env create triton-interp`" if self.interpreter
                                                           else "it ships with the CUDA builds of torch") + ")")
            triton = None
        if problems:
            raise Unavailable(" and ".join(problems))
        self._kernels = importlib.import_module("backends.triton_kernels")
        return triton

    def devices(self) -> list[str]:
        """The GPUs only (this backend has no CPU path); the interpreted variant: "cpu"."""
        try:
            self.framework()
        except Unavailable:
            return []
        if self.interpreter:
            return ["cpu"]
        torch = importlib.import_module("torch")
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    def event_timing(self, step: Callable[[], None], device: str) -> dict[str, Any]:
        """Per-call CUDA-event times of a prepared GPU step, warm and cold (backends/cuda_timing.py)."""
        if self.interpreter or not device.startswith("cuda"):
            raise Unsupported(f"{self.name}: CUDA events time GPU steps only, not {device!r}")
        timing = importlib.import_module("backends.cuda_timing")
        return timing.torch_event_timing(step, device)

    def versions(self) -> dict[str, str]:
        """Package versions, and where the kernel ran (recorded with every result)."""
        out = super().versions()
        out["triton device"] = "interpreter (TRITON_INTERPRET=1, CPU tensors)" if self.interpreter else "cuda"
        return out

    def _cuda(self, device: str) -> str:
        """spec.device as a torch device; "cpu" -> cuda:0 (the checks' host arrays go to the GPU), except
        under the interpreter, which runs on CPU tensors."""
        if self.interpreter:
            return "cpu"
        return "cuda:0" if device in ("cpu", "cuda") else device

    # -- the autograd function ------------------------------------------------------------
    def function(self) -> Any:
        """``SeededDropout.apply(x, seed, keep, scale)``: forward and backward share the seed, not a mask."""
        if self._function is None:
            self.framework()
            torch = importlib.import_module("torch")
            kernels = self._kernels

            class SeededDropout(torch.autograd.Function):
                @staticmethod
                def forward(ctx: Any, x: Tensor, seed: int, keep: float, scale: float) -> Tensor:
                    ctx.dropout = (seed, keep, scale)  # three numbers: the mask is regenerated in backward
                    return kernels.apply_mask(x.contiguous(), seed, keep, scale)

                @staticmethod
                def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None, None, None]:
                    seed, keep, scale = ctx.dropout
                    return kernels.apply_mask(grad_out.contiguous(), seed, keep, scale), None, None, None

            self._function = SeededDropout
        return self._function

    def _seed(self, spec: Any) -> int:
        return int(spec.seed) if spec.seed is not None else int(self._seeds.integers(0, SEED_BOUND))

    @staticmethod
    def _keep_and_scale(spec: Any) -> tuple[float, float]:
        keep = float(1.0 - spec.rate)
        return keep, (0.0 if keep == 0 else 1.0 / keep)

    def _apply(self, x: Tensor, spec: Any) -> Tensor:
        if x.numel() == 0:  # a zero-size grid cannot be launched; nothing to compute
            return x.clone()
        keep, scale = self._keep_and_scale(spec)
        return self.function().apply(x, self._seed(spec), keep, scale)

    # -- checks -----------------------------------------------------------------------------
    def _impl(self, api: str) -> Callable[[np.ndarray, np.ndarray | None, Any], tuple[np.ndarray, np.ndarray | None]]:
        self._check_api(api)

        def run(x: np.ndarray, grad_out: np.ndarray | None, spec: Any) -> tuple[np.ndarray, np.ndarray | None]:
            self.framework()
            torch = importlib.import_module("torch")
            device = torch.device(self._cuda(spec.device))
            xt = torch.tensor(x, device=device, requires_grad=grad_out is not None)
            y = self._apply(xt, spec)
            grad = None
            if grad_out is not None:
                g = torch.tensor(grad_out, device=device)
                grad = torch.autograd.grad(y, xt, g)[0] if y.requires_grad else torch.zeros_like(xt)
                grad = grad.cpu().numpy()
            return y.detach().cpu().numpy(), grad

        return run

    # -- timing -----------------------------------------------------------------------------
    def prepare(self, shape: Sequence[int], spec: Any, *, api: str, direction: str,
                compiled: bool = False) -> Callable[[], None]:
        """The kernel (and its regenerating backward) on CUDA tensors, then torch.cuda.synchronize."""
        if self.interpreter:
            raise Unsupported(f"{self.name}:{api} runs in Triton's interpreter (TRITON_INTERPRET=1): a check of the "
                              "kernel, never timed (its speed says nothing about a GPU's)")
        shape, backward = self._gpu_prepare_args(shape, spec, api, direction, compiled)
        self.framework()
        torch = importlib.import_module("torch")
        device = torch.device(self._cuda(spec.device))
        gen = torch.Generator(device=device).manual_seed(PREPARE_INPUT_SEED)
        dtype = getattr(torch, spec.dtype)
        x = torch.randn(shape, generator=gen, device=device, dtype=dtype).requires_grad_(backward)
        g = torch.randn(shape, generator=gen, device=device, dtype=dtype) if backward else None
        if spec.seed is not None:
            self._seeds = np.random.default_rng(spec.seed)  # seeded once: the steps continue one stream
        step_spec = spec.replace(seed=None)

        def step() -> None:
            y = self._apply(x, step_spec)
            if g is not None:
                torch.autograd.grad(y, x, g)
            torch.cuda.synchronize(device)

        return step


class TritonInterpreted(TritonBackend):
    """triton:seeded's kernel and autograd function under Triton's interpreter, on CPU tensors (no GPU)."""

    apis = ("seeded.interpreted",)
    infos = {"seeded.interpreted": ApiInfo(frozenset({"seed", "backward"}), _DTYPES, traffic=_REGENERATED)}
    interpreter = True
    environment = "triton-interp"
    worker_env = {"TRITON_INTERPRET": "1"}  # read by triton at import: set before the worker imports it
