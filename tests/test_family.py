"""The dropout family beyond Bernoulli: the spec's kind and formulas, the per-kind checks, their faults and power."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backends.base import Unsupported
from backends.numpy_backend import NumpyBackend
from suite.spec import ALPHA_PRIME, DropoutSpec, alpha_affine, gaussian_std
from suite.verify import family
from suite.verify.conformance import check_api
from suite.verify.coverage import coverage

README = Path(__file__).resolve().parents[1] / "README.md"


# -- the spec ---------------------------------------------------------------------------------
def test_kind_is_validated_and_has_no_vanilla_scheme() -> None:
    assert DropoutSpec().kind == "bernoulli"
    with pytest.raises(ValueError, match="'poisson'"):
        DropoutSpec(kind="poisson")
    with pytest.raises(ValueError, match="vanilla"):
        DropoutSpec(kind="alpha", scaling="vanilla")


@pytest.mark.parametrize("rate", [0.05, 0.3, 0.5, 0.8, 0.95])
def test_alpha_affine_keeps_mean_zero_and_variance_one_of_any_standardized_sample(rate: float) -> None:
    """Exactly, over a standardized sample: E_mask[mean y] = 0 and E_mask[mean y^2] = 1 (Klambauer et al.)."""
    z = np.random.default_rng(1).standard_normal(1000)
    z = (z - z.mean()) / z.std()
    a, b, dropped = alpha_affine(rate)
    keep = 1 - rate
    assert dropped == pytest.approx(a * ALPHA_PRIME * keep)
    assert np.mean(keep * (a * z + b) + rate * dropped) == pytest.approx(0, abs=1e-12)
    assert np.mean(keep * (a * z + b) ** 2 + rate * dropped**2) == pytest.approx(1, abs=1e-12)
    assert alpha_affine(0.0)[:2] == (1.0, 0.0)  # identity


def test_gaussian_variance_matches_inverted_bernoulli() -> None:
    for rate in (0.1, 0.5, 0.9):
        keep = 1 - rate
        bernoulli_var = keep * (1 / keep - 1) ** 2 + rate * 1.0  # m/keep - 1 over Bernoulli(keep)
        assert gaussian_std(rate) ** 2 == pytest.approx(bernoulli_var)
    with pytest.raises(ValueError, match="rate 1.0"):
        gaussian_std(1.0)


def test_a_spec_of_another_kind_is_unsupported() -> None:
    backend = NumpyBackend(threads=1)
    x = np.ones((4, 4), np.float32)
    with pytest.raises(Unsupported, match="gaussian dropout; the spec asks for bernoulli"):
        backend.forward(x, DropoutSpec(), api="gaussian")
    with pytest.raises(Unsupported, match="bernoulli dropout; the spec asks for alpha"):
        backend.forward(x, DropoutSpec(kind="alpha"), api="reference")


# -- the references pass, faults are caught by the check meant for them ------------------------------
def _failed(backend: Any, api: str) -> set[str]:
    return {r.check.split("/")[0] for r in check_api(backend, api) if r.status in ("fail", "error")}


@pytest.mark.parametrize("api", ["gaussian", "alpha", "stochastic-depth"])
def test_references_pass_and_are_certified(api: str) -> None:
    records = [r.to_dict() for r in check_api(NumpyBackend(threads=1), api)]
    assert not [r for r in records if r["status"] in ("fail", "error")]
    (cov,) = coverage(records)
    assert cov.certified, cov.line()
    own = {"gaussian": "gaussian training", "alpha": "alpha training", "stochastic-depth": "training"}[api]
    assert own in cov.ran and "vanilla" not in (cov.skipped if api != "stochastic-depth" else {})


class _Faulty(NumpyBackend):
    """The numpy references with one deliberate fault each (``fault``)."""

    def __init__(self, fault: str) -> None:
        super().__init__(threads=1)
        self.fault = fault

    def _gaussian(self, x: np.ndarray, grad_out: np.ndarray | None, spec: Any):
        if self.fault == "gaussian-eval-noisy" and not spec.training:
            spec = spec.replace(training=True)
        if self.fault == "gaussian-sd-wrong" and spec.rate not in (0.0, 1.0):
            spec = spec.replace(rate=spec.rate / (1 + spec.rate))  # sd^2 = rate instead of rate/keep
        y, grad = super()._gaussian(x, grad_out, spec)
        if self.fault == "gaussian-grad-fresh" and grad is not None and spec.training and spec.rate > 0:
            grad = super()._gaussian(grad_out, None, spec.replace(seed=None))[0]
        return y, grad

    def _alpha(self, x: np.ndarray, grad_out: np.ndarray | None, spec: Any):
        if self.fault == "alpha-no-affine" and spec.training and 0 < spec.rate < 1:
            kept = self._rng.random(spec.mask_shape(x.shape)) < spec.keep_prob
            y = np.where(kept, x, np.asarray(ALPHA_PRIME, x.dtype)).astype(x.dtype)
            return y, (None if grad_out is None else grad_out * kept.astype(x.dtype))
        if self.fault == "alpha-not-shared":
            spec = spec.replace(broadcast_axes=())
        y, grad = super()._alpha(x, grad_out, spec)
        if self.fault == "alpha-grad-unmasked" and grad is not None and spec.training and 0 < spec.rate < 1:
            grad = grad_out * np.asarray(alpha_affine(spec.rate)[0], x.dtype)
        return y, grad


FAULTS = {
    ("gaussian", "gaussian-sd-wrong"): {"gaussian-noise"},
    ("gaussian", "gaussian-eval-noisy"): {"eval", "eval-grad"},
    ("gaussian", "gaussian-grad-fresh"): {"gradient"},
    ("alpha", "alpha-no-affine"): {"alpha-values", "alpha-moments"},
    ("alpha", "alpha-grad-unmasked"): {"gradient"},
    ("alpha", "alpha-not-shared"): {"broadcast-shared"},
}


@pytest.mark.parametrize("api, fault", sorted(FAULTS))
def test_fault_is_caught_by_its_check(api: str, fault: str) -> None:
    failed = _failed(_Faulty(fault), api)
    missing = FAULTS[(api, fault)] - failed
    assert not missing, f"{fault} escaped {sorted(missing)}; failed: {sorted(failed)}"


def test_bernoulli_apis_run_exactly_the_bernoulli_plan() -> None:
    """The family's plan never reaches a Bernoulli API: numpy:reference runs no family check id."""
    checks = {r.check.split("/")[0] for r in check_api(NumpyBackend(threads=1), "reference")}
    assert not checks & {"gaussian-noise", "alpha-moments", "alpha-values", "gaussian-values", "alpha-mask-shared"}
    assert {"values", "kept-fraction", "mean", "vanilla-train"} <= checks


# -- measured false alarms and power, as the README states them --------------------------------------
@pytest.fixture(scope="module")
def rates() -> list[tuple[str, float, str, int, int]]:
    return family.measured_rates(reps=100)


def test_no_false_alarm_and_power_against_each_fault(rates) -> None:
    for kind, rate, fault, failed, reps in rates:
        if fault == "correct":
            assert failed == 0, (kind, rate)
        else:
            assert failed >= 0.9 * reps, (kind, rate, fault, failed)


def test_readme_states_the_measured_rates(rates) -> None:
    text = README.read_text(encoding="utf-8")
    for kind, rate, fault, failed, reps in rates:
        if fault != "correct":
            row = f"| {kind} | {rate} | {fault} | {failed}/{reps} |"
            assert row in text, row
    correct = [r for r in rates if r[2] == "correct"]
    assert f"no false alarm in {sum(r[3] for r in correct)}/{sum(r[4] for r in correct)} correct runs" in text


# -- probe: the family's cases, and the Bernoulli conventions n/a for other kinds ------------------------
def _probe(api: str, case_id: str, backend: Any = None) -> dict:
    from suite.probe import cases as probes
    from suite.probe.runner import run_case

    return run_case(backend or NumpyBackend(threads=1), api, probes.BY_ID[case_id], 20260101)


@pytest.mark.parametrize("api", ["gaussian", "alpha"])
def test_probe_labels_the_family_by_kind(api: str) -> None:
    from suite.probe import cases as probes

    for case_id, label in (("rate=0.5", api), ("family:rate=0.999", api), ("eval", "identity"), ("rate=0", "identity"),
                           ("family:seed-twice", probes.SAME_OUTPUT), ("family:grad", probes.FORWARD_MULTIPLIER)):
        record = _probe(api, case_id)
        assert probes.cell_label(record) == label, (case_id, record)
        assert probes.departs(record) is False, record
    conv = _probe(api, "keep-vs-rate")
    assert conv["outcome"] == "n/a" and "0/1 mask" in conv["message"]
    assert _probe(api, "rate=1")["expected"] == ("zeros" if api == "alpha" else None)


def test_probe_tells_a_faulty_family_api_apart() -> None:
    from suite.probe import cases as probes

    assert probes.cell_label(_probe("alpha", "rate=0.5", _Faulty("alpha-no-affine"))) == "other"
    assert probes.cell_label(_probe("gaussian", "rate=0.5", _Faulty("gaussian-sd-wrong"))) == "other"
    assert probes.cell_label(_probe("gaussian", "family:grad", _Faulty("gaussian-grad-fresh"))).endswith(probes.OTHER_MULTIPLIER)
