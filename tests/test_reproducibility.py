"""A seeded verify run gives the same records when repeated (timestamps aside)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _verify_records(tmp_path, name: str, backends: list[str]) -> str:
    out = tmp_path / f"{name}.json"
    args = [sys.executable, "-m", "suite.cli", "verify", "--json", str(out)]
    for backend in backends:
        args += ["--backend", backend]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    payload = json.loads(out.read_text())
    payload.pop("created")
    return json.dumps(payload, sort_keys=True)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_verify_twice_is_byte_identical(tmp_path, backend: str) -> None:
    if backend == "torch":
        pytest.importorskip("torch")
    first = _verify_records(tmp_path, "a", [backend])
    second = _verify_records(tmp_path, "b", [backend])
    assert first == second
