"""CuPy: dropout as one ``cupy.ElementwiseKernel`` over ``cupy.random`` uniforms (GPU only).

The kernel selects, like TensorFlow (``y = r < keep ? x * scale : 0``), so a dropped inf or NaN
becomes 0. Forward writes the output and a bool mask; backward applies the stored mask to
``grad_out`` (contrast with triton:seeded, which stores nothing and regenerates the mask from its
seed). Uniforms come from ``cupy.random.default_rng``: ``default_rng(seed)`` for a seeded spec, else
a generator the adapter holds (seeded from OS entropy, so fresh masks in every process). A mask
shared along axes is drawn in the mask shape and broadcast by the kernel. ``scale`` is 1/keep,
and 0 at keep 0 (rate 1: zeros, never inf*0).

GPU only: there is no CPU path. The checks hand NumPy arrays in and get NumPy arrays back, so
with ``spec.device == "cpu"`` the kernel runs on cuda:0; timing refuses "cpu" (Unsupported), so a
CPU benchmark never reports a GPU kernel. Runs in the interpreter that runs dropbench; the device run
(.ci/gpu-run) uses the GPU machine's own cupy-cuda13x (14.2.0 there, CUDA 13 like its torch; CuPy 14 needs
numpy 2), installing nothing; the `gpu` extra pins the same for a machine that installs its own.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from backends.base import ApiInfo, BaseBackend, DeviceBaseline, Traffic, Unavailable, Unsupported

_DTYPES = ("float32", "float16", "float64")
PREPARE_INPUT_SEED = 20261126
INSTALL_HINT = ("pip install cupy-cuda13x (CUDA 13, as the CUDA build of torch 2.13.0; the `gpu` extra) on a machine "
                "with an NVIDIA GPU")

Array = Any  # cupy.ndarray


class CupyBackend(BaseBackend):
    name = "cupy"
    apis = ("elementwise",)
    modules = ("cupy",)
    infos = {
        # a bare kernel: no inference mode, no vanilla scaling
        "elementwise": ApiInfo(frozenset({"broadcast_axes", "seed", "backward"}), _DTYPES,
                               traffic=Traffic(mask="bool")),  # the stored bool mask, read again in backward
    }

    def __init__(self) -> None:
        super().__init__()
        self._rng: Any = None
        self._kernels: tuple[Any, Any] | None = None

    # -- framework: cupy and a CUDA device, with the reason when either is missing ---------
    def _import_framework(self) -> ModuleType:
        return self._load()

    @staticmethod
    def _load() -> ModuleType:
        try:
            cupy = importlib.import_module("cupy")
        except ImportError as exc:
            raise Unavailable(f"cupy is not installed ({INSTALL_HINT}): {exc}") from exc
        except Exception as exc:
            raise Unavailable(f"cupy failed to import: {type(exc).__name__}: {exc}") from exc
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # no driver, no libcuda: CUDARuntimeError
            raise Unavailable(f"no CUDA device: cupy {cupy.__version__} cannot reach a GPU ({type(exc).__name__}: {exc})") from exc
        if count < 1:
            raise Unavailable(f"no CUDA device: cupy {cupy.__version__} sees 0 GPUs")
        return cupy

    def event_timing(self, step: Callable[[], None], device: str) -> dict[str, Any]:
        """Per-call CUDA-event times of a prepared GPU step, warm and cold (backends/cuda_timing.py)."""
        if not device.startswith("cuda"):
            raise Unsupported(f"{self.name}: CUDA events time GPU steps only, not {device!r}")
        timing = importlib.import_module("backends.cuda_timing")
        return timing.cupy_event_timing(step, device)

    def devices(self) -> list[str]:
        """The GPUs only: this backend has no CPU path."""
        try:
            cupy = self.framework()
        except Unavailable:
            return []
        return [f"cuda:{i}" for i in range(cupy.cuda.runtime.getDeviceCount())]

    @staticmethod
    def _index(device: str) -> int:
        """cuda:N -> N; "cpu" and "cuda" -> 0 (the checks' host arrays go to the first GPU)."""
        _, _, index = device.partition(":")
        return int(index) if device.startswith("cuda") and index else 0

    # -- the kernels --------------------------------------------------------------------
    def device_baseline(self, api: str, numel: int, dtype: str, device: str) -> DeviceBaseline:
        """The GPU's own copy (``cupy.copyto``) and raw cuRAND Philox words, synchronized in the step."""
        cupy = self.framework()
        index = self._index(device)
        count = cupy.cuda.runtime.getDeviceCount()
        if index >= count:
            raise Unavailable(f"cupy sees {count} CUDA device(s), not {device}")
        with cupy.cuda.Device(index):
            stream = cupy.cuda.get_current_stream()
            versions = {"cupy": str(cupy.__version__)}
            if api == "copy":
                storage = np.uint16 if dtype == "bfloat16" else np.dtype(dtype)  # a copy only moves bytes
                src = cupy.ones(numel, dtype=storage)
                dst = cupy.empty_like(src)

                def step() -> None:
                    cupy.copyto(dst, src)
                    stream.synchronize()

                impl, output = "cupy.copyto", dst
            else:
                from cupy.cuda import curand  # noqa: PLC0415 - inside the cupy worker only

                buf = cupy.empty(numel, dtype=cupy.uint32)
                generator = curand.createGenerator(curand.CURAND_RNG_PSEUDO_PHILOX4_32_10)
                curand.setPseudoRandomGeneratorSeed(generator, PREPARE_INPUT_SEED)
                curand.setStream(generator, stream.ptr)

                def step() -> None:
                    curand.generate(generator, buf.data.ptr, numel)  # raw 32-bit words
                    stream.synchronize()

                impl, output = "cuRAND curandGenerate Philox4_32_10 (cupy)", buf
            stream.synchronize()
        return DeviceBaseline(api, impl, f"cuda:{index}", 1, step, versions, output)

    def kernels(self) -> tuple[Any, Any]:
        """(forward, backward) ElementwiseKernels, compiled on first use."""
        if self._kernels is None:
            cupy = self.framework()
            forward = cupy.ElementwiseKernel(
                "T x, float32 r, float32 keep, T scale", "T y, bool m",
                "m = r < keep; y = m ? (T)(x * scale) : (T)0;", "dropbench_dropout_forward")
            backward = cupy.ElementwiseKernel(
                "T g, bool m, T scale", "T dx", "dx = m ? (T)(g * scale) : (T)0;", "dropbench_dropout_backward")
            self._kernels = (forward, backward)
        return self._kernels

    def _generator(self, spec: Any) -> Any:
        cupy = self.framework()
        if spec.seed is not None:
            return cupy.random.default_rng(spec.seed)
        if self._rng is None:
            self._rng = cupy.random.default_rng()  # seeded from OS entropy
        return self._rng

    @staticmethod
    def _keep_and_scale(spec: Any) -> tuple[float, float]:
        keep = 1.0 - spec.rate
        return float(keep), (0.0 if keep == 0 else 1.0 / keep)

    def _forward(self, x: Array, spec: Any, rng: Any) -> tuple[Array, Array]:
        cupy = self.framework()
        keep, scale = self._keep_and_scale(spec)
        r = rng.random(spec.mask_shape(tuple(x.shape)), dtype=cupy.float32)
        forward, _ = self.kernels()
        return forward(x, r, cupy.float32(keep), x.dtype.type(scale))

    # -- checks ---------------------------------------------------------------------------
    def _impl(self, api: str) -> Callable[[np.ndarray, np.ndarray | None, Any], tuple[np.ndarray, np.ndarray | None]]:
        self._check_api(api)

        def run(x: np.ndarray, grad_out: np.ndarray | None, spec: Any) -> tuple[np.ndarray, np.ndarray | None]:
            cupy = self.framework()
            with cupy.cuda.Device(self._index(spec.device)):
                if x.size == 0:  # a zero-size launch: nothing to draw or compute
                    return x.copy(), (None if grad_out is None else grad_out.copy())
                y, mask = self._forward(cupy.asarray(x), spec, self._generator(spec))
                grad = None
                if grad_out is not None:
                    _, backward = self.kernels()
                    scale = y.dtype.type(self._keep_and_scale(spec)[1])
                    grad = cupy.asnumpy(backward(cupy.asarray(grad_out), mask, scale))
                return cupy.asnumpy(y), grad

        return run

    # -- timing ---------------------------------------------------------------------------
    def prepare(self, shape: Sequence[int], spec: Any, *, api: str, direction: str,
                compiled: bool = False) -> Callable[[], None]:
        """Forward (+ backward with the stored mask) on device arrays, then a device synchronize."""
        shape, backward = self._gpu_prepare_args(shape, spec, api, direction, compiled)
        cupy = self.framework()
        device = cupy.cuda.Device(self._index(spec.device))
        with device:
            inputs = cupy.random.default_rng(PREPARE_INPUT_SEED)
            x = inputs.standard_normal(shape, dtype=cupy.float32).astype(spec.dtype)
            g = inputs.standard_normal(shape, dtype=cupy.float32).astype(spec.dtype) if backward else None
            rng = self._generator(spec)
            _, backward_kernel = self.kernels()
            scale = x.dtype.type(self._keep_and_scale(spec)[1])
            step_spec = spec.replace(seed=None)

        def step() -> None:
            with device:
                _, mask = self._forward(x, step_spec, rng)
                if g is not None:
                    backward_kernel(g, mask, scale)
                device.synchronize()

        return step
