"""JAX, Flax and Keras 3 on every Keras backend, each in the worker (and environment) it needs.

Keras 3 reads KERAS_BACKEND once per process, so every check here runs through `verify` workers or
subprocesses, never in the pytest process (tests/test_conformance.py verifies keras3:torch and
keras3:tensorflow in the main environment, and every other API, the same way). The jax environment
is optional (`dropbench env create jax`): its tests are skipped, with the command, where it is not built.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from backends import BUILTIN
from backends.base import api_info
from suite.bench.cases import Plan, plan_cases
from suite.runtime.environments import state
from suite.runtime.loader import api_ids, load, resolve
from suite.verify.runner import run_verify

JAX_ENV = state("jax")
needs_jax_env = pytest.mark.skipif(not JAX_ENV.usable, reason=JAX_ENV.detail)


def _statuses(report) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in report.records:
        out.setdefault(r["api"], {}).setdefault(r["status"], 0)
        out[r["api"]][r["status"]] += 1
    return out


def test_registry_names_map_to_keras3_api_ids() -> None:
    ids = {name: api_ids(BUILTIN[name]) for name in ("keras3-jax", "keras3-torch", "keras3-tensorflow", "keras3-numpy")}
    assert ids == {name: (f"keras3:{name[7:]}", f"keras3:{name[7:]}.MultiHeadAttention", f"keras3:{name[7:]}.GaussianDropout",
                          f"keras3:{name[7:]}.AlphaDropout") for name in ids}
    assert ids["keras3-jax"] == ("keras3:jax", "keras3:jax.MultiHeadAttention", "keras3:jax.GaussianDropout",
                                 "keras3:jax.AlphaDropout")
    assert api_ids(BUILTIN["jax"]) == ("jax:random.bernoulli", "jax:flax.nnx.Dropout")


def test_compiled_modes_are_per_keras_backend() -> None:
    """The graph mode comes from each API's own ApiInfo (declared in its adapter), not from a table."""
    refs = {name: BUILTIN[name] for name in ("keras3-jax", "keras3-torch", "jax")}
    plan = Plan(backends=tuple(refs.items()), sizes=(4096,))
    adapters = {ref: load(ref) for ref in refs.values()}
    cases = plan_cases(plan, {ref: (b.apis[0],) for ref, b in adapters.items()},
                       {ref: b.name for ref, b in adapters.items()},
                       {ref: {api: api_info(b, api).compiled for api in b.apis} for ref, b in adapters.items()})
    modes = {(c.api_id, c.mode) for c in cases}
    assert modes == {("keras3:jax", "eager"), ("keras3:jax", "jit"), ("keras3:torch", "eager"),
                     ("jax:random.bernoulli", "eager"), ("jax:random.bernoulli", "jit")}


def test_one_process_hosts_one_keras_backend() -> None:
    """In-process use (a plain `pytest`): a Keras backend runs only where KERAS_BACKEND named it before
    Keras was imported; the others say why instead of running on (or switching) the process's Keras."""
    code = ("from backends.keras3_backend import Keras3Torch, Keras3Tensorflow\n"
            "first, second = Keras3Torch(), Keras3Tensorflow()\n"
            "print(first.available(), second.available())\n"
            "print(second.unavailable_reason())\n")
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": "."}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**env, "KERAS_BACKEND": "torch"})
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "True False", proc.stdout + proc.stderr
    assert "already runs on 'torch'" in lines[1] and "KERAS_BACKEND=tensorflow" in lines[1]
    unset = subprocess.run([sys.executable, "-c", code.replace("first.available(), ", "")
                            + "import sys; print('keras' in sys.modules)\n"], capture_output=True, text=True,
                           timeout=300, env=env)
    lines = unset.stdout.strip().splitlines()
    assert lines[0] == "False" and "needs a process started with KERAS_BACKEND=tensorflow" in lines[1], unset.stdout
    assert lines[2] == "False"  # Keras was not imported (it would have picked a backend for the whole process)


@needs_jax_env
def test_jax_flax_and_keras3_in_the_jax_environment_pass_verify() -> None:
    report = run_verify(resolve(["jax", "keras3-jax", "keras3-numpy"]), required=True)
    assert [b["status"] for b in report.backends] == ["ok", "ok", "ok"], report.backends
    assert all(b["python"].startswith(str(JAX_ENV.path)) for b in report.backends)
    statuses = _statuses(report)
    attention = {"keras3:jax.MultiHeadAttention", "keras3:numpy.MultiHeadAttention"}
    family = {f"keras3:{kb}.{layer}" for kb in ("jax", "numpy") for layer in ("GaussianDropout", "AlphaDropout")}
    assert set(statuses) == {"jax:random.bernoulli", "jax:flax.nnx.Dropout", "keras3:jax", "keras3:numpy"} | attention | family
    for api in ("keras3:jax.AlphaDropout", "keras3:numpy.AlphaDropout"):
        assert statuses.pop(api).get("known") == 2  # ZeroDivisionError at rate 1, float32 and float16 (README, The dropout family)
    assert statuses["jax:random.bernoulli"].get("known") == 2  # NaN gradient at rate 1, float32 and float16
    assert statuses["keras3:jax.MultiHeadAttention"].get("known") == 1  # the fused path at dropout 0
    for api, counts in statuses.items():
        # attention dropout: float32 only, no backward, no axes, so fewer checks apply; the family on NumPy: no backward
        least = 16 if api in attention else 30 if api in family else 40
        assert set(counts) <= {"pass", "skip", "known"} and counts["pass"] >= least, statuses
    assert report.exit_code() == 0 and not report.stale


@needs_jax_env
def test_jax_environment_really_has_numpy_2() -> None:
    proc = subprocess.run([str(JAX_ENV.python), "-c", "import numpy, jax; print(numpy.__version__)"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().startswith("2."), proc.stdout + proc.stderr
