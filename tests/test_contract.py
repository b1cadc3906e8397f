"""A plugin that breaks the backend contract gets one line naming the rule it broke, not a traceback."""
from __future__ import annotations

import numpy as np
import pytest

from suite.runtime.loader import BackendRef, load_for_worker
from suite.verify.runner import run_verify


class _Plugin:
    name = "broken"
    apis = ("dropout",)
    capabilities = {"eval"}  # no "backward": forward() alone is called, so its own return is what is judged

    def available(self):
        return True

    def versions(self):
        return {}

    def devices(self):
        return ["cpu"]

    def forward(self, x, spec, *, api):
        return x * (np.random.default_rng(0).random(x.shape) < spec.keep_prob) / max(spec.keep_prob, 1e-9)

    def forward_backward(self, x, grad_out, spec, *, api):
        return self.forward(x, spec, api=api), grad_out


class ReturnsList(_Plugin):
    def forward(self, x, spec, *, api):
        return x.tolist()


class WrongShape(_Plugin):
    def forward(self, x, spec, *, api):
        return x.ravel()


class ReturnsOneArray(_Plugin):
    capabilities = {"eval", "backward"}

    def forward_backward(self, x, grad_out, spec, *, api):
        return x


class AvailableNone(_Plugin):
    def available(self):
        return None


class NoApis(_Plugin):
    apis = ()


def _details(attr: str) -> set[str]:
    report = run_verify([BackendRef(attr, f"tests.test_contract:{attr}")], required=True)
    return {r["detail"] for r in report.records if r["status"] == "error"}


@pytest.mark.parametrize("attr, message", [
    ("ReturnsList", "contract: forward() must return a numpy.ndarray of shape (256, 256), got list"),
    ("WrongShape", "contract: forward() must return an array of the input's shape (256, 256), got shape (65536,)"),
    ("ReturnsOneArray", "contract: forward_backward() must return a (y, grad) pair, got ndarray"),
])
def test_a_wrong_return_is_named_as_a_contract_break(attr: str, message: str) -> None:
    assert message in _details(attr)


@pytest.mark.parametrize("attr, message", [
    ("AvailableNone", "contract: available() must return a bool, got NoneType None"),
    ("NoApis", "contract: `apis` must be a non-empty tuple of API names (str), got ()"),
])
def test_a_broken_declaration_makes_the_backend_unavailable_with_the_rule(attr: str, message: str) -> None:
    backend, payload = load_for_worker(f"tests.test_contract:{attr}")
    assert backend is None and payload["reason"] == message
    report = run_verify([BackendRef(attr, f"tests.test_contract:{attr}")], required=True)
    assert report.exit_code() == 1 and report.backends[0]["reason"] == message


def test_a_correct_plugin_breaks_no_rule() -> None:
    backend, payload = load_for_worker("tests.test_contract:_Plugin")
    assert backend is not None and payload["available"] is True
