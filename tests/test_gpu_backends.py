"""cupy:elementwise, triton:seeded and numba-cuda:fused: skipped with a stated reason without a GPU, checked where one is."""
from __future__ import annotations

import numpy as np
import pytest

from backends.base import Unsupported
from backends.cupy_backend import CupyBackend
from backends.numba_cuda_backend import NumbaCudaBackend
from backends.triton_backend import TritonBackend
from suite.spec import DropoutSpec
from suite.verify.conformance import check_api

BACKENDS = {"cupy": CupyBackend, "triton": TritonBackend, "numba-cuda": NumbaCudaBackend}
REASONS = ("no CUDA device", "not installed")


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_unavailable_backend_states_why(name: str) -> None:
    backend = BACKENDS[name]()
    if backend.available():
        pytest.skip(f"{name} runs here: the GPU tests below apply")
    reason = backend.unavailable_reason()
    assert reason and any(r in reason for r in REASONS), reason
    assert backend.devices() == []  # no CPU path, and no GPU seen here


def test_adapter_modules_import_no_framework() -> None:
    import subprocess
    import sys

    code = ("import sys, backends.cupy_backend, backends.triton_backend, backends.jax_backend, backends.keras3_backend\n"
            "import backends.numba_cuda_backend\n"
            "print([m for m in ('cupy', 'triton', 'torch', 'jax', 'keras', 'tensorflow', 'numba') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_gpu_backend_passes_the_checks_on_a_gpu(name: str) -> None:
    backend = BACKENDS[name]()
    if not backend.available():
        pytest.skip(f"{name}: {backend.unavailable_reason()}")
    api = backend.apis[0]
    records = check_api(backend, api)
    bad = [r for r in records if r.status not in ("pass", "skip")]
    assert not bad, bad
    with pytest.raises(Unsupported, match="GPU only"):
        backend.prepare((64, 64), DropoutSpec(rate=0.5), api=api, direction="forward")
    step = backend.prepare((64, 64), DropoutSpec(rate=0.5, device="cuda"), api=api, direction="forward_backward")
    step()


def test_triton_backward_regenerates_the_forward_mask() -> None:
    backend = TritonBackend()
    if not backend.available():
        pytest.skip(f"triton: {backend.unavailable_reason()}")
    x = np.random.default_rng(0).uniform(0.5, 2.0, (1000, 37)).astype(np.float32)
    y, grad = backend.forward_backward(x, np.ones_like(x), DropoutSpec(rate=0.3, seed=11), api="seeded")
    np.testing.assert_array_equal(grad != 0, y != 0)
    np.testing.assert_allclose(grad[grad != 0], np.float32(1 / 0.7), rtol=1e-6)
