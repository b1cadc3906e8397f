"""numba-cuda:fused - numba:fused's kernel on a CUDA GPU, drawing the same mask for the same seed.

Why: a fused reference kernel on the GPU whose masks can be compared with the CPU's exactly. The
stream (seed -> root -> one key per call -> a counter hash per 64-bit word) is numba:fused's
(backends/numba_kernels.py), and the key sequence is the same :class:`CallStream`; only the loop is a
CUDA grid (backends/numba_cuda_kernels.py). So for the same seed and the same call, every kept position
and every output bit equal numba:fused's: verify checks that (its ``reference`` family, through
:meth:`NumbaCudaBackend.reference_for`), on the GPU and, without one, under numba's CUDA simulator.

Forward writes y and a 1-byte mask in one pass; backward reads the mask. A mask shared along axes is
drawn on the device in its own shape and applied on the host exactly as numba:fused applies it (checks
only; timing takes element-wise masks). GPU only: with ``spec.device == "cpu"`` the checks' host arrays
go to cuda:0. :class:`NumbaCudaSimulated` (``--backend backends.numba_cuda_backend:NumbaCudaSimulated``, API
``fused.simulated``; not in the registry: minutes per verify, so no plain run pays for it) runs the
same kernels under ``NUMBA_ENABLE_CUDASIM=1`` on the CPU: checked, never timed.
"""
from __future__ import annotations

import importlib
import math
import os
import warnings
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from backends.base import ApiInfo, BaseBackend, Unavailable, Unsupported
from backends.numba_backend import CallStream, keep_threshold
from backends.numpy_fast import run_kernel, train_scale

_CAPS = frozenset({"vanilla", "broadcast_axes", "seed", "backward", "eval"})
_DTYPES = ("float32", "float16", "float64")
PREPARE_INPUT_SEED = 20261126
SIMULATOR_VAR = "NUMBA_ENABLE_CUDASIM"
SIM_LAUNCH = (2, 4)
"""(blocks, threads) under the simulator, which runs every thread as Python: small, but more than one of
each, so the grid-stride mapping is exercised (a mask depends on neither)."""
MAX_BLOCKS = 65535


def launch(words: int, simulated: bool) -> tuple[int, int]:
    """(blocks, threads per block) for ``words`` 64-bit words: one thread per word on a GPU, capped."""
    if simulated:
        return SIM_LAUNCH
    from backends.numba_cuda_kernels import THREADS  # noqa: PLC0415 - imports numba.cuda

    return max(1, min(MAX_BLOCKS, -(-words // THREADS))), THREADS


class CudaFusedDropout(CallStream):
    """The fused kernel on the device; host arrays in and out for the checks, device arrays for timing."""

    def __init__(self, cuda: ModuleType, kernels: ModuleType, simulated: bool, seed: int | None = None) -> None:
        self.cuda, self.k, self.simulated = cuda, kernels, simulated
        self.reseed(seed)
        self._mask: Any = None  # device mask of the last element-wise forward
        self._multiplier: np.ndarray | None = None  # host where(m, scale, 0) of the last shared-mask forward
        self._mask_shape: tuple[int, ...] | None = None
        self._x_shape: tuple[int, ...] | None = None
        self._scale: np.generic | None = None

    def _run(self, kernel: Any, numel: int, *args: Any) -> None:
        blocks, threads = launch(-(-numel // 2), self.simulated)
        kernel[blocks, threads](*args)

    def forward_device(self, x: Any, y: Any, m: Any, keep: float, scale: np.generic) -> None:
        """One element-wise forward on device arrays (flat x, y, bool m): the timed step's body."""
        self._run(self.k.fused_forward, x.size, x, y, m, self.next_key(), np.uint64(keep_threshold(keep)), scale)

    def backward_device(self, g: Any, out: Any, m: Any, scale: np.generic) -> None:
        self._run(self.k.masked_scale, 2 * g.size, g, out, m, scale)

    def forward(self, x: np.ndarray, keep: float, scale: float, *, mask_shape: Sequence[int] | None = None) -> np.ndarray:
        """y = x * m * scale on the device (host x in, host y out); the mask stays for :meth:`backward`."""
        x = np.ascontiguousarray(x)
        if x.dtype.kind != "f" or x.dtype.itemsize not in (2, 4, 8):
            raise TypeError(f"numba-cuda:fused takes float16/32/64 input, got {x.dtype}")
        mask_shape = tuple(x.shape) if mask_shape is None else tuple(int(n) for n in mask_shape)
        scale_ = x.dtype.type(scale)
        self._x_shape, self._mask_shape, self._scale = tuple(x.shape), mask_shape, scale_
        cuda = self.cuda
        if mask_shape == tuple(x.shape):
            dx = cuda.to_device(x.reshape(-1))
            dy = cuda.device_array(x.size, dtype=x.dtype)
            self._mask = cuda.device_array(x.size, dtype=np.bool_)
            if x.size:
                self.forward_device(dx, dy, self._mask, keep, scale_)
            else:
                self.next_key()  # an empty call still takes its place in the stream, as on the CPU
            self._multiplier = None
            return dy.copy_to_host().reshape(x.shape)
        dm = cuda.device_array(math.prod(mask_shape), dtype=np.bool_)
        key, thr = self.next_key(), np.uint64(keep_threshold(keep))
        if dm.size:
            self._run(self.k.fill_mask, dm.size, dm, key, thr)
        multiplier = np.zeros(dm.size, dtype=x.dtype)
        np.multiply(dm.copy_to_host(), scale_, out=multiplier)  # exactly scale or +0.0, as numba:fused
        self._multiplier = multiplier.reshape(mask_shape)
        return np.multiply(x, self._multiplier)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """grad = grad_out * m * scale with the last forward's mask and scale."""
        if self._scale is None or self._x_shape is None:
            raise RuntimeError("backward() before forward(): there is no mask to reuse")
        grad_out = np.ascontiguousarray(grad_out).astype(self._scale.dtype, copy=False)
        if tuple(grad_out.shape) != self._x_shape:
            raise ValueError(f"grad_out shape {grad_out.shape} != forward input shape {self._x_shape}")
        if self._multiplier is not None:
            return np.multiply(grad_out, self._multiplier)
        dg = self.cuda.to_device(grad_out.reshape(-1))
        out = self.cuda.device_array(grad_out.size, dtype=grad_out.dtype)
        if grad_out.size:
            self.backward_device(dg, out, self._mask, self._scale)
        return out.copy_to_host().reshape(grad_out.shape)


class NumbaCudaBackend(BaseBackend):
    name = "numba-cuda"
    apis = ("fused",)
    modules = ("numba", "numba_cuda")
    infos = {"fused": ApiInfo(capabilities=_CAPS, dtypes=_DTYPES)}
    simulated = False
    """True: numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, set by the worker) runs the kernels on the CPU."""

    def __init__(self) -> None:
        super().__init__()
        self._kernel: CudaFusedDropout | None = None

    def _import_framework(self) -> ModuleType:
        if self.simulated and os.environ.get(SIMULATOR_VAR) != "1":
            raise Unavailable(f"{SIMULATOR_VAR} is not 1 (its worker_env sets it)")
        numba = importlib.import_module("numba")
        try:
            cuda = importlib.import_module("numba.cuda")
        except Exception as exc:
            raise Unavailable(f"numba.cuda failed to import (pip install numba-cuda): {type(exc).__name__}: {exc}") from exc
        if not self.simulated:
            if os.environ.get(SIMULATOR_VAR) == "1":
                raise Unavailable(f"{SIMULATOR_VAR}=1 here: that is NumbaCudaSimulated's job, not a GPU")
            try:
                ok = bool(cuda.is_available())
            except Exception as exc:
                raise Unavailable(f"no CUDA device: numba.cuda cannot reach a GPU ({type(exc).__name__}: {exc})") from exc
            if not ok:
                raise Unavailable(f"no CUDA device (numba {numba.__version__}'s numba.cuda sees none)")
        else:  # uint64 wrap-around is the hash's arithmetic; NumPy scalars warn about it in the simulator
            warnings.filterwarnings("ignore", message="overflow encountered", category=RuntimeWarning)
        return numba

    def versions(self) -> dict[str, str]:
        out = super().versions()
        if out.get("numba_cuda", "").startswith("unavailable"):
            out.pop("numba_cuda")  # numba's own numba.cuda (before the numba-cuda package): nothing to name
        out["numba-cuda device"] = "CUDA simulator (NUMBA_ENABLE_CUDASIM=1, CPU)" if self.simulated else "cuda"
        return out

    def devices(self) -> list[str]:
        """The GPUs only; the simulated variant: "cpu"."""
        try:
            self.framework()
        except Unavailable:
            return []
        if self.simulated:
            return ["cpu"]
        cuda = importlib.import_module("numba.cuda")
        return [f"cuda:{i}" for i in range(len(cuda.gpus))]

    def kernel(self) -> CudaFusedDropout:
        if self._kernel is None:
            self.framework()
            cuda = importlib.import_module("numba.cuda")
            self._kernel = CudaFusedDropout(cuda, importlib.import_module("backends.numba_cuda_kernels"), self.simulated)
        return self._kernel

    def reference_for(self, api: str) -> tuple[Any, str]:
        """numba:fused (the CPU kernel, in this worker): verify's ``reference`` family wants its output bit for bit."""
        self._check_api(api)
        from backends.numba_backend import NumbaBackend  # noqa: PLC0415 - not a cycle; only when verify asks

        return NumbaBackend(threads=1), "fused"

    def _impl(self, api: str) -> Callable[[np.ndarray, np.ndarray | None, Any], tuple[np.ndarray, np.ndarray | None]]:
        self._check_api(api)
        return lambda x, grad_out, spec: run_kernel(self.kernel(), x, grad_out, spec)

    def event_timing(self, step: Callable[[], None], device: str) -> dict[str, Any]:
        """Per-call CUDA-event times of a prepared GPU step, warm and cold (backends/cuda_timing.py)."""
        if self.simulated or not device.startswith("cuda"):
            raise Unsupported(f"{self.name}: CUDA events time GPU steps only, not {device!r}")
        timing = importlib.import_module("backends.cuda_timing")
        return timing.numba_event_timing(step, device)

    def prepare(self, shape: Sequence[int], spec: Any, *, api: str, direction: str,
                compiled: bool = False) -> Callable[[], None]:
        """The fused forward (and the mask-reading backward) on device arrays, then cuda.synchronize()."""
        if self.simulated:
            raise Unsupported(f"{self.name}:{api} runs in numba's CUDA simulator: a check of the kernel, never timed")
        shape_, backward = self._gpu_prepare_args(shape, spec, api, direction, compiled)
        if not spec.training or spec.mask_shape(shape_) != shape_:
            raise Unsupported(f"{self.name}:{api} times training with an element-wise mask only")
        kernel = self.kernel()
        cuda = kernel.cuda
        index = int(str(spec.device).partition(":")[2] or 0)
        cuda.select_device(index)
        rng = np.random.default_rng(PREPARE_INPUT_SEED)
        numel = math.prod(shape_)
        x = cuda.to_device(rng.standard_normal(numel).astype(spec.dtype))
        g = cuda.to_device(rng.standard_normal(numel).astype(spec.dtype)) if backward else None
        y, m = cuda.device_array(numel, dtype=spec.dtype), cuda.device_array(numel, dtype=np.bool_)
        grad = cuda.device_array(numel, dtype=spec.dtype) if backward else None
        keep, scale = spec.keep_prob, np.dtype(spec.dtype).type(train_scale(spec))
        kernel.reseed(spec.seed)  # seeded: the steps continue one stream from call 0

        def step() -> None:
            kernel.forward_device(x, y, m, keep, scale)
            if g is not None:
                kernel.backward_device(g, grad, m, scale)
            cuda.synchronize()

        step()  # compiles both kernels for these types outside the timing
        return step


class NumbaCudaSimulated(NumbaCudaBackend):
    """numba-cuda:fused's kernels under numba's CUDA simulator on the CPU (no GPU): checked, never timed."""

    apis = ("fused.simulated",)
    infos = {"fused.simulated": ApiInfo(capabilities=_CAPS, dtypes=_DTYPES)}
    simulated = True
    worker_env = {SIMULATOR_VAR: "1"}  # read by numba at import: set before the worker imports it
