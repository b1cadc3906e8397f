"""`pytest --benchmark-only` collects the same benchmarks whichever path is named, with ids `-k` accepts.

Issue 16: naming tests/benchmarks (or the file) once collected only the smallest size, and ids held
"2^16", which `-k` rejects ("unexpected character '^'").
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from suite.bench.cases import DEFAULT_SIZES, id_size_label, parse_size

ROOT = Path(__file__).resolve().parents[1]
BENCH_FILE = "tests/benchmarks/test_bench_dropout.py"


def _collect(*args: str) -> tuple[int, list[str], str]:
    """(exit code, benchmark node ids, output) of `pytest --benchmark-only --co -q ARGS` from the root."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--benchmark-only", "--co", "-q", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    ids = [line.strip() for line in proc.stdout.splitlines() if line.startswith(BENCH_FILE + "::")]
    return proc.returncode, ids, proc.stdout + proc.stderr


def _sizes(ids: list[str]) -> set[str]:
    labels = {id_size_label(n) for n in DEFAULT_SIZES}
    return {part for node in ids for part in node.split("[", 1)[1].rstrip("]").split("-") if part in labels}


def test_collection_is_the_same_whichever_path_is_named() -> None:
    runs = {name: _collect(*args) for name, args in
            {"bare": (), "folder": ("tests/benchmarks",), "file": (BENCH_FILE,)}.items()}
    for name, (rc, ids, out) in runs.items():
        assert rc == 0, (name, out[-2000:])
        assert _sizes(ids) == {id_size_label(n) for n in DEFAULT_SIZES}, (name, sorted(_sizes(ids)))
    assert set(runs["bare"][1]) == set(runs["folder"][1]) == set(runs["file"][1])


def test_every_benchmark_id_is_selectable_with_k() -> None:
    rc, ids, out = _collect("tests/benchmarks", "-k", "numpy:fast and 2p16 and cpu and not channel")
    assert rc == 0, out[-2000:]  # 4 would be "Wrong expression passed to '-k'"
    assert ids and all("numpy:fast-" in i and "-2p16-" in i and "-cpu-" in i for i in ids), ids
    assert len(ids) == 2, ids  # forward and forward_backward, eager


def test_id_sizes_parse_back_and_carry_no_caret() -> None:
    for n in (*DEFAULT_SIZES, 1000):
        label = id_size_label(n)
        assert "^" not in label
        assert parse_size(label) == n
