"""Each deliberately wrong adapter must be caught by `verify`, by the check meant for it."""
from __future__ import annotations

import pytest

from suite.runtime.loader import resolve
from suite.verify.runner import run_verify

# fault -> check families that must fail (each family must catch it on its own)
FAULTS = {
    "ScaleByRate": {"values", "mean"},
    "RateKeepSwapped": {"values", "kept-fraction", "zeros", "identity"},
    "MaskReused": {"fresh-mask"},
    "GradientUnmasked": {"gradient"},
    "TrainEvalSwapped": {"eval", "values", "zeros"},
    "BroadcastNotShared": {"broadcast-shared"},
    "VanillaAsInverted": {"vanilla-train", "vanilla-eval"},
    "SeedIgnored": {"seed"},
}


def _failing_families(plugin: str) -> tuple[int, set[str]]:
    report = run_verify(resolve([f"tests.meta.plugins:{plugin}"]), timeout=120)
    assert report.backends[0]["status"] == "ok", report.backends
    return report.exit_code(), {r["check"].split("/")[0] for r in report.failed}


def test_correct_plugin_passes() -> None:
    code, families = _failing_families("CorrectDropout")
    assert families == set()
    assert code == 0


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_is_caught(fault: str) -> None:
    code, families = _failing_families(fault)
    assert code == 1
    missing = FAULTS[fault] - families
    assert not missing, f"{fault} escaped {sorted(missing)}; failed: {sorted(families)}"
