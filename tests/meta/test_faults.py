"""Each deliberately wrong adapter must be caught by `verify`, by the check meant for it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from suite.runtime.loader import resolve
from suite.verify.runner import run_verify

# fault -> check families that must fail (each family must catch it on its own)
FAULTS = {
    "ScaleByRate": {"values", "mean"},
    "RateKeepSwapped": {"values", "kept-fraction", "zeros", "identity"},
    "MaskReused": {"fresh-mask", "cross-seed", "call-dispersion"},
    "GradientUnmasked": {"gradient"},
    "TrainEvalSwapped": {"eval", "values", "zeros"},
    "BroadcastNotShared": {"broadcast-shared"},
    "VanillaAsInverted": {"vanilla-train", "vanilla-eval"},
    "SeedIgnored": {"seed"},
    "SeedValueIgnored": {"cross-seed"},
    "HalfCallAdvance": {"cross-call"},
    "SeedAsOffset": {"cross-seed"},
    "FixedCount": {"call-dispersion"},
    "RowKeepVaries": {"dispersion"},
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


@pytest.mark.parametrize("plugin, reason", [("InvertedUnsupported", "the training family did not run"),
                                            ("AllUnsupported", "no check ran"),
                                            ("NoScaling", "declares neither inverted nor vanilla training")])
def test_uncertified_plugin_fails_unless_partial_is_allowed(plugin: str, reason: str) -> None:
    """An API whose declared training never ran, or that declares none, gets no certificate and exit 1;
    --allow-partial accepts it."""
    refs = resolve([f"tests.meta.plugins:{plugin}"])
    report = run_verify(refs, timeout=120)
    assert not report.failed
    assert [c.api for c in report.uncertified] == ["plugin:dropout"] and reason in report.uncertified[0].reason
    assert report.exit_code() == 1
    assert "OK" not in report.final_line() and "not certified: plugin:dropout" in report.final_line()
    assert run_verify(refs, timeout=120, allow_partial=True).exit_code() == 0


def test_vanilla_only_dropout_is_certified_with_every_family() -> None:
    """The classic paper's scheme, declared as the only scaling: every family runs in vanilla and it certifies."""
    report = run_verify(resolve(["tests.meta.plugins:VanillaOnly"]), timeout=120)
    assert report.exit_code() == 0 and not report.uncertified and not report.failed, [c.reason for c in report.uncertified]
    cov = report.coverage[0]
    assert {"training", "gradient", "seed", "fresh mask", "independence", "between calls", "eval"} <= set(cov.ran)
    assert "training (vanilla)" in cov.line()


def test_declared_inplace_dropout_is_certified() -> None:
    report = run_verify(resolve(["tests.meta.plugins:InplaceDeclared"]), timeout=120)
    assert report.exit_code() == 0 and not report.uncertified, [r for r in report.failed]
    assert report.final_line().startswith("verify: ") and " 0 failed" in report.final_line()


def test_layout_plugin_of_rank_two_runs() -> None:
    """A fixed 2-d layout (per-sample dropout) used to crash the worker (only 3-d/4-d shapes existed)."""
    report = run_verify(resolve(["tests.meta.plugins:CorrectChannelDropout"]), timeout=120)
    assert report.backends[0]["status"] == "ok" and report.exit_code() == 0, report.failed
    assert {c.api for c in report.coverage if c.certified} == {"channel:channel2d", "channel:rows2d"}


def test_cli_never_says_ok_for_a_backend_that_supports_nothing() -> None:
    """Every call raises Unsupported: exit 1, 'not certified', counts on the last line; --allow-partial: exit 0."""
    args = [sys.executable, "-m", "suite.cli", "verify", "--backend", "tests.meta.plugins:AllUnsupported"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("verify: 0 passed, 0 known divergences, 0 failed") and "not certified: plugin:dropout" in last
    assert "OK" not in proc.stdout and "NOT CERTIFIED: no check ran" in proc.stdout
    partial = subprocess.run([*args, "--allow-partial"], capture_output=True, text=True, timeout=300, check=False)
    assert partial.returncode == 0 and "--allow-partial" in partial.stdout.strip().splitlines()[-1]
