"""Framework adapters. Each module imports its framework lazily; this file imports none.

BUILTIN maps a backend name to ``module:attr``; adding a framework is one module and one
line here (or an entry point in the group ``dropbench.backends``).
"""
BUILTIN: dict[str, str] = {
    "numpy": "backends.numpy_backend:NumpyBackend",
    "torch": "backends.torch_backend:TorchBackend",
    "tensorflow": "backends.tensorflow_backend:TensorflowBackend",
    "mxnet": "backends.mxnet_backend:MxnetBackend",
}
