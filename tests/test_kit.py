"""The conformance kit (issue 27): verify_dropout on functions and backends, and the pytest plugin from a
project outside the checkout. Bugs these catch: a wrong scale certified, a failure without verify's check
id in the message, a non-NumPy array refused, the plugin importing NumPy (or the checks) in every pytest run,
the plugin missing from a plain install."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from backends.example_plugin import ExampleDropout
from dropbench import verify_dropout
from suite.kit import pytest_plugin


def good(x, rate, training, seed):
    if not training or rate == 0:
        return x.copy()
    keep = 1.0 - rate
    kept = np.random.default_rng(seed).random(x.shape) < keep
    return np.where(kept, x / keep if keep else 0, 0).astype(x.dtype)


def scaled_by_rate(x, rate, training, seed):  # the classic slip: 1/rate instead of 1/keep
    if not training or rate == 0:
        return x.copy()
    kept = np.random.default_rng(seed).random(x.shape) < 1.0 - rate
    return np.where(kept, x / rate, 0).astype(x.dtype)


class ViaArray:
    """An array type that NumPy reads only through __array__."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a


class ViaDlpack:
    """An array type that NumPy reads only through DLPack."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, *args, **kwargs):
        return self.a.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def test_a_correct_function_is_certified_with_its_coverage() -> None:
    result = verify_dropout(good)
    assert result.certified and result.failed == []
    assert {r["status"] for r in result.checks} >= {"pass", "skip"}
    (cov,) = result.coverage
    assert cov.api == "function:good" and cov.certified
    assert "training" in cov.ran and "gradient" in cov.skipped  # a plain function has no backward
    assert result.statistical_checks > 0 and "NOT" not in result.message.splitlines()[0]
    assert result.assert_ok() is result


def test_a_wrong_scale_fails_with_verifys_check_and_detail() -> None:
    result = verify_dropout(scaled_by_rate)
    assert not result.certified
    assert {r["check"] for r in result.failed} >= {"values/rate=0.1/float32", "mean/rate=0.1/float32"}
    first = result.message.splitlines()[0]
    assert "NOT CERTIFIED" in first and "function:scaled_by_rate" in first
    assert "values/rate=0.1/float32" in result.message and "kept values are not x*1.11111" in result.message
    with pytest.raises(AssertionError, match="values/rate=0.1/float32"):
        result.assert_ok()


@pytest.mark.parametrize("wrap", [ViaArray, ViaDlpack], ids=["__array__", "dlpack"])
def test_other_array_types_in_and_out(wrap) -> None:
    seen = []

    def f(x, rate, training, seed):
        seen.append(type(x))
        return wrap(good(np.asarray(x.a), rate, training, seed))

    assert verify_dropout(f, to_input=wrap).certified
    assert set(seen) == {wrap}


def test_a_torch_function_with_tensors_in_and_out() -> None:
    """The README's example: to_input=torch.from_numpy, a tensor back (read through DLPack), float16 too."""
    torch = pytest.importorskip("torch", reason="torch is in the `all` extra")

    def torch_dropout(x, rate, training, seed):
        if seed is not None:
            torch.manual_seed(seed)
        return torch.nn.functional.dropout(x, rate, training)

    result = verify_dropout(torch_dropout, to_input=torch.from_numpy, dtypes=("float32", "float16"))
    assert result.certified, result.message
    assert any(r["check"].endswith("/float16") and r["status"] == "pass" for r in result.checks)


def test_a_function_that_returns_no_array_gets_the_contracts_message() -> None:
    result = verify_dropout(lambda x, rate, training, seed: [0.0], name="lists")
    assert not result.certified
    assert "must return a numpy.ndarray" in result.message and "function:lists" in result.message


def test_backend_class_instance_and_api_subset() -> None:
    by_class, by_instance = verify_dropout(ExampleDropout), verify_dropout(ExampleDropout(), apis=["dropout"])
    for result in (by_class, by_instance):
        assert result.certified and "gradient" in result.coverage[0].ran  # a backend's backward is checked
    with pytest.raises(ValueError, match="'nope'"):
        verify_dropout(ExampleDropout, apis=["nope"])
    with pytest.raises(TypeError, match="only for a plain function"):
        verify_dropout(ExampleDropout, dtypes=("float16",))
    with pytest.raises(TypeError, match="cannot verify 42"):
        verify_dropout(42)


def test_an_unavailable_backend_is_not_certified() -> None:
    class Missing(ExampleDropout):
        def available(self) -> bool:
            return False

        def unavailable_reason(self) -> str:
            return "no such framework here"

    result = verify_dropout(Missing)
    assert not result.certified and "no such framework here" in result.message and result.checks == []


LIGHT = ("numpy", "pandas", "matplotlib", "backends", "suite.verify", "suite.kit.api", "dropbench")


def test_the_plugin_imports_nothing_heavy_and_defines_no_hook() -> None:
    """pytest loads it in every run (bench workers too): it must cost nothing and change nothing."""
    code = ("import sys; import suite.kit.pytest_plugin; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {LIGHT!r} or m in {LIGHT!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
    assert [n for n in vars(pytest_plugin) if n.startswith("pytest_")] == []


def _plugin_installed() -> bool:
    return any(e.name == "dropbench" and e.value == "suite.kit.pytest_plugin"
               for e in importlib.metadata.entry_points(group="pytest11"))


USER_TESTS = '''
import numpy as np


def my_dropout(x, rate, training, seed):
    if not training or rate == 0:
        return x.copy()
    keep = 1.0 - rate
    kept = np.random.default_rng(seed).random(x.shape) < keep
    return np.where(kept, x * (1 / {scale} if {scale} else 0), 0).astype(x.dtype)


def test_my_dropout(dropout_conformance):
    dropout_conformance(my_dropout)


def test_unrelated():
    assert 1 + 1 == 2
'''


@pytest.mark.skipif(not _plugin_installed(), reason="dropbench is not installed (pip install -e .): no pytest11 entry point")
@pytest.mark.parametrize("scale, outcome", [("keep", "2 passed"), ("rate", "1 failed, 1 passed")])
def test_the_fixture_from_a_project_outside_the_checkout(tmp_path, scale, outcome) -> None:
    """A kernel author's own test file in an empty folder: the fixture comes from the entry point alone."""
    (tmp_path / "test_mine.py").write_text(textwrap.dedent(USER_TESTS.replace("{scale}", scale)))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mine.py"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert outcome in proc.stdout, proc.stdout + proc.stderr
    if scale == "rate":
        assert proc.returncode == 1
        assert "NOT CERTIFIED" in proc.stdout and "values/rate=0.1/float32" in proc.stdout
        assert "Traceback" not in proc.stdout  # verify's message, not a stack
    else:
        assert proc.returncode == 0
