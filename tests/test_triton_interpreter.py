"""triton:seeded's kernel under Triton's interpreter (TRITON_INTERPRET=1) on the CPU: the triton-interp entry.

The checks that need the interpreter run in the ``triton-interp`` worker environment
(``dropbench env create triton-interp``) and are skipped with that reason where it is not built.
"""
from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from backends.base import Unsupported
from backends.triton_backend import TritonBackend, TritonInterpreted
from suite.runtime.environments import declaration, state
from suite.runtime.loader import api_ids, resolve
from suite.spec import DropoutSpec
from suite.verify.runner import run_verify

REF = "backends.triton_backend:TritonInterpreted"
ENV = "triton-interp"
ROOT = Path(__file__).resolve().parent.parent


def _env_python() -> Path:
    current = state(ENV)
    if not current.usable:
        pytest.skip(f"the {ENV} environment is not built here: {current.detail}")
    return current.python


def test_interpreted_entry_runs_in_its_environment_with_the_interpreter_on() -> None:
    assert declaration(REF) == (ENV, {"TRITON_INTERPRET": "1"})
    # its own API id: its probe and verify records never mix with the GPU's triton:seeded
    assert api_ids(REF) == ("triton:seeded.interpreted",)
    assert set(api_ids(REF)).isdisjoint(api_ids("backends.triton_backend:TritonBackend"))


def test_interpreted_variant_is_never_timed() -> None:
    with pytest.raises(Unsupported, match="never timed"):
        TritonInterpreted().prepare((64, 64), DropoutSpec(rate=0.5), api="seeded.interpreted", direction="forward")


def test_interpreted_variant_without_its_environment_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    backend = TritonInterpreted()
    assert not backend.available()
    reason = backend.unavailable_reason() or ""
    assert "TRITON_INTERPRET is not 1" in reason, reason
    assert "no CUDA device" not in reason  # the interpreter needs no GPU
    assert backend.devices() == []
    assert not TritonBackend.interpreter


def test_verify_passes_under_the_interpreter() -> None:
    """All checks, float32 and float16, incl. the seeded backward that regenerates the mask."""
    _env_python()
    report = run_verify(resolve(["triton-interp"]), required=True)
    assert report.exit_code() == 0, report.failed or report.missing
    (backend,) = report.backends
    assert backend["status"] == "ok" and ENV in backend["python"]
    assert backend["versions"]["triton device"].startswith("interpreter")
    passed = {r["check"] for r in report.records if r["status"] == "pass"}
    for dtype in ("float32", "float16"):
        assert {f"gradient/rate=0.5/{dtype}", f"seed/{dtype}", f"fresh-mask/rate=0.5/{dtype}",
                f"zero-grad/rate=1/{dtype}", f"kept-fraction/rate=0.9/{dtype}"} <= passed
    assert {r["status"] for r in report.records} <= {"pass", "skip"}


def test_the_mask_does_not_depend_on_the_block_size() -> None:
    """The interpreter's blocks of 65,536 and the GPU's of 1024 must draw the same mask, and the
    backward (the kernel again, on grad_out) must regenerate it at a size that is no multiple of either."""
    python = _env_python()
    code = textwrap.dedent("""
        import json, torch
        from backends import triton_kernels as k
        from backends.triton_backend import TritonInterpreted
        x = torch.rand(1000, 37) + 0.5
        small = k.apply_mask(x, 7, 0.7, 1 / 0.7, block=1024)
        large = k.apply_mask(x, 7, 0.7, 1 / 0.7, block=k.INTERPRETED_BLOCK)
        other = k.apply_mask(x, 8, 0.7, 1 / 0.7)
        b = TritonInterpreted()
        xn = x.numpy()
        y, g = b.forward_backward(xn, xn * 0 + 1, __import__("suite.spec", fromlist=["x"]).DropoutSpec(rate=0.3, seed=11),
                                  api="seeded.interpreted")
        print(json.dumps({"same": bool(torch.equal(small, large)), "seed_matters": bool(not torch.equal(small, other)),
                          "default_block": k.INTERPRETED_BLOCK if k.interpreted() else k.BLOCK,
                          "grad_mask": bool(((g != 0) == (y != 0)).all()),
                          "grad_scale": float(abs(g[g != 0] - 1 / 0.7).max()), "kept": float((y != 0).mean())}))
    """)
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "TRITON_INTERPRET": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["same"] and out["seed_matters"] and out["grad_mask"], out
    assert out["default_block"] == 65536
    assert out["grad_scale"] < 1e-6
    assert 0.6 < out["kept"] < 0.8  # 37,000 draws at keep 0.7: sd 0.0024, a bound 40 sd away only catches nonsense
