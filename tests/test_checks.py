"""Each check passes a correct array and fails the specific wrong one it exists for."""
import numpy as np
import pytest

from suite.verify import checks

RNG = np.random.default_rng(0)
X = RNG.uniform(0.5, 2, size=(128, 128)).astype(np.float32)
MASK = RNG.random(X.shape) < 0.8


def test_scaled_values_accepts_inverted_and_rejects_wrong_scale() -> None:
    assert checks.scaled_values(X, X * MASK / np.float32(0.8), 1 / 0.8).passed
    assert not checks.scaled_values(X, X * MASK / np.float32(0.2), 1 / 0.8).passed
    assert not checks.scaled_values(X, np.full_like(X, np.nan), 1 / 0.8).passed


def test_scaled_values_float16_rounding_is_tolerated_but_not_more() -> None:
    x16 = X.astype(np.float16)
    y = (x16 * MASK * np.float16(1 / 0.9)).astype(np.float16)
    assert checks.scaled_values(x16, y, 1 / 0.9).passed
    assert not checks.scaled_values(x16, (y * np.float16(1.01)).astype(np.float16), 1 / 0.9).passed


def test_identity_and_zeros() -> None:
    assert checks.identity(X, X.copy()).passed
    assert not checks.identity(X, X * MASK).passed
    assert checks.zeros(np.zeros(4)).passed
    assert not checks.zeros(np.array([0, np.nan])).passed


def test_gradient_matches_only_the_same_mask() -> None:
    g = RNG.normal(size=X.shape).astype(np.float32)
    y = X * MASK / np.float32(0.8)
    assert checks.gradient_matches(X, y, g, g * MASK / np.float32(0.8)).passed
    other = RNG.random(X.shape) < 0.8
    assert not checks.gradient_matches(X, y, g, g * other / np.float32(0.8)).passed


def test_mask_shared_along_axes() -> None:
    shared = np.broadcast_to(RNG.random((8, 4, 1)) < 0.5, (8, 4, 6))
    assert checks.mask_shared(shared, (2,)).passed
    assert not checks.mask_shared(RNG.random((8, 4, 6)) < 0.5, (2,)).passed


def test_kept_fraction_rejects_swapped_rate() -> None:
    assert checks.kept_fraction(MASK, 0.8).passed
    assert not checks.kept_fraction(MASK, 0.2).passed


def test_mean_preserved_rejects_unscaled() -> None:
    assert checks.mean_preserved(X, X * MASK / np.float32(0.8), 0.8).passed
    assert not checks.mean_preserved(X, X * MASK, 0.8).passed


def test_independent_masks_rejects_reuse_and_correlation() -> None:
    second = RNG.random(X.shape) < 0.8
    assert checks.independent_masks(MASK, second, 0.8).passed
    assert not checks.independent_masks(MASK, MASK, 0.8).passed
    flip = RNG.random(X.shape) < 0.05  # 95% copies of the first mask: correlated
    assert not checks.independent_masks(MASK, np.where(flip, second, MASK), 0.8).passed


def test_seed_checks() -> None:
    assert checks.same_output(X, X.copy()).passed
    assert not checks.same_output(X, X * MASK).passed


def test_gradient_checks_speak_of_the_gradient() -> None:
    g = RNG.normal(size=X.shape).astype(np.float32)
    assert "gradient" in checks.identity(g, g * MASK, out="gradient", ref="grad_out").detail
    assert "gradient" in checks.zeros(g, out="gradient").detail
    assert "y ==" not in checks.identity(g, g.copy(), out="gradient", ref="grad_out").detail


def test_mean_preserved_with_mixed_signs() -> None:
    signed = X * np.where(RNG.random(X.shape) < 0.5, 1, -1).astype(np.float32)
    assert checks.mean_preserved(signed, signed * MASK / np.float32(0.8), 0.8).passed
    assert not checks.mean_preserved(signed, np.where(signed > 0, signed * MASK / np.float32(0.8), 0), 0.8).passed


def test_dtype_kept_rejects_promotion() -> None:
    assert checks.dtype_kept("float16", ["float16", "float16"]).passed
    outcome = checks.dtype_kept("float16", ["float16", "float32"])
    assert not outcome.passed and "float32" in outcome.detail and "1/2" in outcome.detail
    assert not checks.dtype_kept("float16", []).passed


def test_input_unchanged_passes_only_when_declared() -> None:
    assert checks.input_unchanged(5, 0, False).passed
    assert not checks.input_unchanged(5, 2, False).passed
    assert checks.input_unchanged(5, 2, True).passed


FAIR = RNG.random((256, 256)) < 0.5


def test_lag_agreement_catches_shared_draws_and_periods() -> None:
    assert checks.lag_agreement(FAIR, 0.5).passed
    paired = np.repeat(FAIR[:, ::2], 2, axis=1)
    assert "lag 1" in checks.lag_agreement(paired, 0.5).detail and not checks.lag_agreement(paired, 0.5).passed
    periodic = np.resize(FAIR.ravel()[:3000], FAIR.size).reshape(FAIR.shape)
    outcome = checks.lag_agreement(periodic, 0.5)
    assert not outcome.passed and "offset 3000" in outcome.detail
    rows_repeat = np.repeat(FAIR[::2], 2, axis=0)  # along axis 0 only
    assert not checks.lag_agreement(rows_repeat, 0.5).passed


def test_lag_agreement_is_exact_only_for_fair_bits() -> None:
    with pytest.raises(ValueError, match="keep=0.5"):
        checks.lag_agreement(FAIR, 0.8)


def test_position_uniform_catches_drift_and_one_row() -> None:
    assert checks.position_uniform(FAIR, 0.5).passed
    drift = RNG.random(FAIR.shape) < np.linspace(0.4, 0.6, FAIR.shape[1])  # along the columns
    assert not checks.position_uniform(drift, 0.5).passed
    row = FAIR.copy()
    row[17] = RNG.random(256) < 0.95
    outcome = checks.position_uniform(row, 0.5)
    assert not outcome.passed and "axis 0 index 17" in outcome.detail


def test_magnitude_uniform_catches_keep_that_looks_at_x() -> None:
    x = RNG.normal(size=FAIR.shape)
    assert checks.magnitude_uniform(x, FAIR, 0.5).passed
    biased = RNG.random(x.shape) < np.where(np.abs(x) > np.median(np.abs(x)), 0.56, 0.44)
    assert not checks.magnitude_uniform(x, biased, 0.5).passed


def test_independence_checks_on_a_single_group_say_so() -> None:
    one = np.array(True)
    assert "no pairs" in checks.lag_agreement(one, 0.5).detail
    assert "single element" in checks.position_uniform(one, 0.5).detail


def test_scaled_values_all_dropped_fails_unless_likely() -> None:
    dropped = np.zeros_like(X)
    assert not checks.scaled_values(X, dropped, 2.0).passed  # 65536 groups: 0.5**16384 is 0
    assert checks.scaled_values(X, dropped, 2.0, p_all_dropped=0.5).passed  # one group at rate 0.5
