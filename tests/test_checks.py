"""Each check passes a correct array and fails the specific wrong one it exists for."""
import numpy as np

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
    assert not checks.different_masks(MASK, MASK.copy()).passed
