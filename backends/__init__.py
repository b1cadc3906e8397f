"""Framework adapters. Each module imports its framework lazily; this file imports none.

BUILTIN maps a backend name to ``module:attr``; adding a framework is one module and one
line here (or an entry point in the group ``dropbench.backends``). A registry name may differ
from the backend's own ``name``: Keras 3 reads its backend once per process, so each Keras
backend is an entry of its own (``keras3-jax`` ...) of the one backend ``keras3``. An adapter
class may declare ``environment`` (a worker environment of backends/environments.toml, e.g. "jax")
and ``worker_env`` (variables set before its worker imports anything).
"""
from pathlib import Path

BUILTIN: dict[str, str] = {
    "numpy": "backends.numpy_backend:NumpyBackend",
    "numba": "backends.numba_backend:NumbaBackend",
    "torch": "backends.torch_backend:TorchBackend",
    "tensorflow": "backends.tensorflow_backend:TensorflowBackend",
    "mxnet": "backends.mxnet_backend:MxnetBackend",
    "jax": "backends.jax_backend:JaxBackend",
    "keras3-jax": "backends.keras3_backend:Keras3Jax",
    "keras3-torch": "backends.keras3_backend:Keras3Torch",
    "keras3-tensorflow": "backends.keras3_backend:Keras3Tensorflow",
    "keras3-numpy": "backends.keras3_backend:Keras3Numpy",
    "cupy": "backends.cupy_backend:CupyBackend",
    "triton": "backends.triton_backend:TritonBackend",
    "triton-interp": "backends.triton_backend:TritonInterpreted",  # the same kernel in Triton's interpreter, CPU
    "numba-cuda": "backends.numba_cuda_backend:NumbaCudaBackend",  # numba:fused's stream on a CUDA GPU
    # (its kernels under numba's CUDA simulator, checked without a GPU: backends.numba_cuda_backend:NumbaCudaSimulated,
    #  by module:attr only: the simulator runs every GPU thread as Python, minutes per verify; .ci/gpu-run adds it)
}

EXECUTORS: dict[str, str] = {
    "ray": "backends.ray_executor:RayCluster",
}
"""Cluster engines for ``--executor NAME`` (suite/runtime/executors.py); like the frameworks, the harness
never names them, and each adapter imports its engine only when it is used."""

DATA_DIR = Path(__file__).resolve().parent
"""Framework knowledge kept as data lives here, next to the adapters, not in the harness."""
KNOWN_DIVERGENCES_FILE = DATA_DIR / "known_divergences.toml"
PROBE_NOTES_FILE = DATA_DIR / "probe_notes.toml"
ENVIRONMENTS_FILE = DATA_DIR / "environments.toml"
DEVICE_PEAKS_FILE = DATA_DIR / "device_peaks.toml"
