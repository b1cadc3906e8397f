"""numba-cuda:fused draws numba:fused's mask for the same seed: checked under numba's CUDA simulator (no GPU).

Each test runs its body in a fresh interpreter with NUMBA_ENABLE_CUDASIM=1 (numba reads it at import, and
this process may already hold numba.cuda in its real mode). The comparisons are exact (bytes), and the
reference family of verify is shown to fail on a kernel whose stream is one call off.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("numba", reason="numba is not installed (the `all` extra pins it): numba-cuda:fused cannot be checked")

REPO = Path(__file__).resolve().parents[1]


def _simulated(body: str) -> dict:
    """Run ``body`` (which sets ``result``, a JSON-able dict) under the CUDA simulator; returns ``result``."""
    code = textwrap.dedent("""
        import json, sys
        import numpy as np
        from backends.numba_backend import NumbaBackend
        from backends.numba_cuda_backend import NumbaCudaSimulated
        from suite.spec import DropoutSpec
        sim, cpu = NumbaCudaSimulated(), NumbaBackend(threads=2)
        if not sim.available():
            print(json.dumps({"unavailable": sim.unavailable_reason()})); sys.exit(0)
        result = {}
    """) + textwrap.dedent(body) + "\nprint(json.dumps(result))\n"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=REPO, env=env,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "unavailable" in result:
        pytest.skip(f"numba.cuda's simulator is not usable here: {result['unavailable']}")
    return result


def test_same_seed_same_output_and_gradient_bit_for_bit() -> None:
    """Odd and tiny sizes (a word split at the end), three dtypes, rates at the edges, the stream across calls."""
    result = _simulated("""
        def same(a, b):
            return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
        for dtype in ("float32", "float16", "float64"):
            for shape in ((1,), (7,), (33, 65)):
                x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
                g = np.random.default_rng(2).standard_normal(shape).astype(dtype)
                for rate in (0.0, 0.3, 1.0):
                    spec = DropoutSpec(rate=rate, dtype=dtype, seed=99)
                    a = sim.forward_backward(x, g, spec, api="fused.simulated")
                    b = cpu.forward_backward(x, g, spec, api="fused")
                    result[f"{dtype}/{shape}/{rate}"] = same(a[0], b[0]) and same(a[1], b[1])
        # unseeded calls after a seeded one continue the same stream on both
        x = np.random.default_rng(3).standard_normal(1001).astype("float32")
        spec = DropoutSpec(rate=0.5, dtype="float32", seed=5)
        sim.forward(x, spec, api="fused.simulated"); cpu.forward(x, spec, api="fused")
        result["next call"] = same(sim.forward(x, spec.replace(seed=None), api="fused.simulated"),
                                   cpu.forward(x, spec.replace(seed=None), api="fused"))
        # a mask shared along axes (drawn in its own shape on the device)
        x = np.random.default_rng(4).standard_normal((8, 3, 5)).astype("float32")
        spec = DropoutSpec(rate=0.5, dtype="float32", seed=11, broadcast_axes=(1,))
        result["shared"] = same(sim.forward(x, spec, api="fused.simulated"), cpu.forward(x, spec, api="fused"))
        result["dropped some"] = bool((sim.forward(x, spec, api="fused.simulated") == 0).any())
    """)
    assert result.pop("dropped some")
    assert all(result.values()), sorted(k for k, ok in result.items() if not ok)
    assert len(result) == 3 * 3 * 3 + 2


def test_verify_reference_family_passes_and_catches_a_stream_one_call_off() -> None:
    result = _simulated("""
        from suite.verify.conformance import ApiChecker

        class OneCallOff(NumbaCudaSimulated):
            def kernel(self):
                k = super().kernel()
                if not getattr(k, "shifted", False):
                    reseed = k.reseed
                    def shifted(seed):
                        reseed(seed); k.next_key()  # draws call 1 where numba:fused draws call 0
                    k.reseed, k.shifted = shifted, True
                return k

        for name, backend in (("correct", NumbaCudaSimulated()), ("off", OneCallOff())):
            checker = ApiChecker(backend, "fused.simulated")
            result[name] = [[check, outcome.passed, outcome.detail] for check, outcome in checker._same_as_reference("float32")]
    """)
    assert [(c, ok) for c, ok, _ in result["correct"]] == [("reference/float32", True), ("reference-grad/float32", True)]
    assert [(c, ok) for c, ok, _ in result["off"]] == [("reference/float32", False), ("reference-grad/float32", False)]
    assert "numba:fused" in result["off"][0][2] and "differ" in result["off"][0][2]


def test_the_gpu_backend_without_a_gpu_is_unavailable_with_the_reason() -> None:
    from backends.numba_cuda_backend import NumbaCudaBackend

    backend = NumbaCudaBackend()
    if backend.available():
        pytest.skip("numba.cuda sees a GPU here")
    assert "CUDA" in (backend.unavailable_reason() or "") or "numba.cuda" in (backend.unavailable_reason() or "")
    assert backend.devices() == []
