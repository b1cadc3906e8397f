"""The checker itself is checked: which families run, a fault for each that only it catches, mutants.

Runs the conformance plan in-process (``check_api``) on the plugins of tests/meta/plugins.py;
tests/meta/test_faults.py covers the same path through ``run_verify`` and its worker.

(a) ``test_correct_plugins_run_exactly_these_families``: a deleted or renamed check family fails it.
(b) ``test_fault_is_caught_by_its_family_alone``: every family has a fault that only it catches,
    so every family pulls its weight (no family is redundant with the others).
(c) lives in tests/test_statistical_honesty.py (power over many seeds).
(d) ``test_mutant_*``: written here, no mutation package. Each Outcome-returning function of
    suite/verify/checks.py, and each check family of the conformance plan, is replaced in turn by
    "always pass"; the fault that only it catches must then escape, i.e. test (b) would fail.
    ``test_every_check_function_has_a_mutant`` makes a new check function without a mutant fail.
"""
from __future__ import annotations

import inspect
from functools import cache

import pytest

from suite.verify import checks, conformance, dispersion, independence
from suite.verify.checks import Outcome
from suite.verify.conformance import check_api
from suite.verify.coverage import CONTRACTS
from tests.meta import plugins

ELEMENTWISE_FAMILIES = {
    "identity", "identity-grad", "zeros", "zero-grad", "values", "kept-fraction", "mean", "gradient",
    "fresh-mask", "lag", "position", "magnitude", "eval", "eval-grad", "seed",
    "vanilla-train", "vanilla-kept-fraction", "vanilla-eval", "broadcast-shared", "broadcast-values",
    "broadcast-kept-fraction", "broadcast-lag", "broadcast-position", "dtype", "grad-dtype", "input-unchanged",
    "cross-call", "call-dispersion", "dispersion", "cross-seed",
}
# a fixed layout: mask-shared instead of the free broadcast cases, and no |x| bins (x varies in a group)
LAYOUT_FAMILIES = (ELEMENTWISE_FAMILIES - {"broadcast-shared", "broadcast-values", "broadcast-kept-fraction",
                                           "broadcast-lag", "broadcast-position", "magnitude"}) | {"mask-shared"}

# family -> the fault that only this family catches
EXCLUSIVE = {
    "identity": "RateZeroScaled",
    "identity-grad": "RateZeroGradDropped",
    "zeros": "RateOneIdentity",
    "zero-grad": "RateOneGradPassed",
    "values": "OneValueOff",
    "mask-shared": "ChannelOneGroupUnshared",
    "kept-fraction": "KeepSlightlyLow",
    "mean": "SignBiasedKeep",
    "gradient": "GradientUnmasked",
    "fresh-mask": "UnseededCallRepeats",
    "lag": "DiagonalShareDraw",
    "position": "OneRowKeepsMore",
    "magnitude": "KeepDependsOnMagnitude",
    "eval": "EvalScaled",
    "eval-grad": "EvalGradDropped",
    "seed": "SeedIgnored",
    "vanilla-train": "VanillaTrainScaled",
    "vanilla-kept-fraction": "VanillaKeepOff",
    "vanilla-eval": "VanillaEvalIdentity",
    "broadcast-shared": "BroadcastOneUnshared",
    "broadcast-values": "BroadcastScaleOff",
    "broadcast-kept-fraction": "BroadcastKeepLow",
    "broadcast-lag": "BroadcastGroupsPaired",
    "broadcast-position": "BroadcastRowKeepsMore",
    "dtype": "PromotesFloat16",
    "grad-dtype": "GradPromotesFloat16",
    "input-unchanged": "WritesInput",
    "cross-call": "HalfCallAdvance",
    "cross-seed": "SeedAsOffset",
    "call-dispersion": "FixedCount",
    "dispersion": "RowKeepVaries",
}
# check function -> the family (above) whose exclusive fault escapes when the function always passes
MUTANT_TARGET = {
    "identity": "identity",
    "scaled_by": "vanilla-eval",
    "zeros": "zeros",
    "scaled_values": "values",
    "gradient_matches": "gradient",
    "mask_shared": "mask-shared",
    "kept_fraction": "kept-fraction",
    "mean_preserved": "mean",
    "independent_masks": "fresh-mask",
    "same_output": "seed",
    "dtype_kept": "dtype",
    "input_unchanged": "input-unchanged",
    "lag_agreement": "lag",
    "position_uniform": "position",
    "magnitude_uniform": "magnitude",
    "masks_independent": "cross-call",
    "calls_dispersion": "call-dispersion",
    "groups_dispersion": "dispersion",
}
CHECK_MODULES = (checks, independence, dispersion)
"""Modules whose public Outcome-returning functions are the checks (each gets a mutant)."""


@cache
def _statuses(plugin: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(families that failed, that passed, that errored) over every API of the plugin."""
    backend = getattr(plugins, plugin)()
    return _run(backend)


def _run(backend) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    by: dict[str, set[str]] = {"fail": set(), "pass": set(), "error": set()}
    for api in backend.apis:
        for r in check_api(backend, api):
            by.get(r.status, set()).add(r.check.split("/")[0])
    return frozenset(by["fail"]), frozenset(by["pass"]), frozenset(by["error"])


@pytest.mark.parametrize("plugin, expected", [("CorrectDropout", ELEMENTWISE_FAMILIES), ("CorrectChannelDropout", LAYOUT_FAMILIES),
                                              ("InplaceDeclared", ELEMENTWISE_FAMILIES), ("VanillaOnly", ELEMENTWISE_FAMILIES)])
def test_correct_plugins_run_exactly_these_families(plugin: str, expected: set[str]) -> None:
    failed, passed, errored = _statuses(plugin)
    assert not failed and not errored, (failed, errored)
    assert passed == expected, f"missing {sorted(expected - passed)}, unexpected {sorted(passed - expected)}"


def test_every_family_has_an_exclusive_fault_and_a_contract() -> None:
    assert set(EXCLUSIVE) == ELEMENTWISE_FAMILIES | LAYOUT_FAMILIES
    grouped = {family for families in CONTRACTS.values() for family in families}
    assert set(EXCLUSIVE) <= grouped, sorted(set(EXCLUSIVE) - grouped)


@pytest.mark.parametrize("family", sorted(EXCLUSIVE))
def test_fault_is_caught_by_its_family_alone(family: str) -> None:
    failed, _, errored = _statuses(EXCLUSIVE[family])
    assert failed == {family} and not errored, f"{EXCLUSIVE[family]}: failed {sorted(failed)}, errored {sorted(errored)}"


def _always_pass(*args, **kwargs) -> Outcome:
    return Outcome(True, "mutant: always pass")


def _outcome_functions() -> list[str]:
    return sorted(name for module in CHECK_MODULES for name, fn in inspect.getmembers(module, inspect.isfunction)
                  if fn.__module__ == module.__name__ and not name.startswith("_")
                  and inspect.signature(fn).return_annotation in ("Outcome", Outcome))


def _module_of(function: str):
    return next(m for m in CHECK_MODULES if getattr(getattr(m, function, None), "__module__", None) == m.__name__)


def test_every_check_function_has_a_mutant() -> None:
    assert _outcome_functions() == sorted(MUTANT_TARGET)


@pytest.mark.parametrize("function", sorted(MUTANT_TARGET))
def test_mutant_check_function_lets_a_fault_escape(function: str, monkeypatch: pytest.MonkeyPatch) -> None:
    family = MUTANT_TARGET[function]
    monkeypatch.setattr(_module_of(function), function, _always_pass)
    failed, _, _ = _run(getattr(plugins, EXCLUSIVE[family])())
    assert family not in failed, f"with {function} always passing, {EXCLUSIVE[family]} is still caught by {family}"
    assert failed != {family}  # so test_fault_is_caught_by_its_family_alone[family] fails: the mutant is killed


@pytest.mark.parametrize("family", sorted(EXCLUSIVE))
def test_mutant_plan_family_lets_its_fault_escape(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The conformance plan with one family's outcomes forced to pass: its exclusive fault goes unseen."""
    original = conformance.ApiChecker._guarded

    def guarded(name, body):
        def mutated():
            for check, outcome in body():
                yield check, (Outcome(True, "mutant") if check.split("/")[0] == family else outcome)
        return original(name, mutated)

    monkeypatch.setattr(conformance.ApiChecker, "_guarded", staticmethod(guarded))
    original_calls = conformance.ApiChecker._call_checks

    def call_checks(self, dtype):
        for check, status, detail in original_calls(self, dtype):
            yield check, ("pass" if check.split("/")[0] == family else status), detail

    monkeypatch.setattr(conformance.ApiChecker, "_call_checks", call_checks)
    failed, _, _ = _run(getattr(plugins, EXCLUSIVE[family])())
    assert not failed, f"{EXCLUSIVE[family]} still fails {sorted(failed)} with {family} mutated to always pass"
