"""TensorFlow adapter: each API does what its docs say, with the spec passed through as is.

Edge behaviour (rate 1 raising, Keras 3 returning zeros) is pinned as observed, so a
TF/Keras upgrade that changes it shows up here and in the recorded results.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from backends.base import Unsupported  # noqa: E402
from backends.tensorflow_backend import TensorflowBackend  # noqa: E402
from suite.spec import DropoutSpec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BACKEND = TensorflowBackend()
APIS = tuple(a for a in BACKEND.apis  # attention: tests/test_probes.py; Gaussian and alpha dropout: tests/test_family.py
             if "MultiHeadAttention" not in a and BACKEND.infos[a].kind == "bernoulli")
SEEDED = [a for a in APIS if "seed" in BACKEND.api_info(a).capabilities]
AXES_APIS = [a for a in APIS if "broadcast_axes" in BACKEND.api_info(a).capabilities]
LAYERS = ["keras.layers.Dropout", "tf_keras.layers.Dropout"]


def inputs(shape: tuple[int, ...] = (256, 256), dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """x never 0, so y != 0 is the kept mask."""
    rng = np.random.default_rng(0)
    return rng.uniform(0.5, 2.0, shape).astype(dtype), rng.normal(size=shape).astype(dtype)


def test_module_imports_without_importing_tensorflow() -> None:
    code = "import sys, backends.tensorflow_backend as m; m.TensorflowBackend(); assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_versions_and_devices() -> None:
    versions = BACKEND.versions()
    assert set(versions) == {"tensorflow", "keras", "tf_keras"}
    assert versions["tensorflow"] == tf.__version__ and versions["keras"].startswith("3.")
    assert versions["tf_keras"].startswith("2.")
    assert BACKEND.devices()[0] == "cpu"
    assert len(BACKEND.devices()) == 1 + len(tf.config.list_physical_devices("GPU"))
    assert [BACKEND._tf_device(d) for d in ("cpu", "cuda", "cuda:1")] == ["/CPU:0", "/GPU:0", "/GPU:1"]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("rate", [0.5, 0.1])
def test_values_kept_fraction_and_gradient(api: str, rate: float) -> None:
    """Kept values are x/keep, about keep of them survive, dL/dx = grad_out * mask / keep."""
    x, g = inputs()
    y, grad = BACKEND.forward_backward(x, g, DropoutSpec(rate, seed=5), api=api)
    keep = 1 - rate
    mask = y != 0
    assert abs(mask.mean() - keep) < 0.01  # 65536 draws: sd 0.002
    np.testing.assert_allclose(y, x * mask / np.float32(keep), rtol=1e-6)
    np.testing.assert_allclose(grad, g * mask / np.float32(keep), rtol=1e-6, atol=1e-7)


def test_compat_v1_takes_keep_prob() -> None:
    """rate 0.1 means keep_prob 0.9: few zeros, scale 1/0.9 (not keep_prob=0.1's 90% zeros, scale 10)."""
    x, _ = inputs()
    y = BACKEND.forward(x, DropoutSpec(0.1, seed=1), api="compat.v1.nn.dropout")
    assert 0.09 < (y == 0).mean() < 0.11
    np.testing.assert_allclose(y[y != 0], x[y != 0] / np.float32(0.9), rtol=1e-6)


@pytest.mark.parametrize("api", AXES_APIS)
def test_broadcast_axes_share_the_mask(api: str) -> None:
    x, _ = inputs((16, 32, 8))
    mask = BACKEND.forward(x, DropoutSpec(0.5, broadcast_axes=(1,)), api=api) != 0
    assert (mask == mask[:, :1, :]).all()  # constant along axis 1
    assert 0.3 < mask[:, 0, :].mean() < 0.7  # but drawn over the other axes


@pytest.mark.parametrize("api", LAYERS)
def test_keras_eval_is_identity(api: str) -> None:
    x, g = inputs()
    y, grad = BACKEND.forward_backward(x, g, DropoutSpec(0.5, training=False), api=api)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(grad, g)


@pytest.mark.parametrize("api", sorted(set(APIS) - set(LAYERS)))
def test_ops_have_no_inference_mode(api: str) -> None:
    with pytest.raises(Unsupported):
        BACKEND.forward(inputs()[0], DropoutSpec(0.5, training=False), api=api)


@pytest.mark.parametrize("api", APIS)
def test_vanilla_is_unsupported(api: str) -> None:
    with pytest.raises(Unsupported):
        BACKEND.forward(inputs()[0], DropoutSpec(0.5, scaling="vanilla"), api=api)


def test_dropout_wrapper_has_no_noise_shape_and_needs_2d() -> None:
    with pytest.raises(Unsupported):
        BACKEND.forward(inputs()[0], DropoutSpec(0.5, broadcast_axes=(0,)), api="DropoutWrapper")
    with pytest.raises(Unsupported):
        BACKEND.forward(inputs((4, 4, 4))[0], DropoutSpec(0.5), api="DropoutWrapper")


@pytest.mark.parametrize("api", SEEDED)
def test_seed_reproduces_and_unseeded_calls_differ(api: str) -> None:
    x, _ = inputs()
    first = BACKEND.forward(x, DropoutSpec(0.5, seed=7), api=api)
    other = BACKEND.forward(x, DropoutSpec(0.5, seed=8), api=api)
    again = BACKEND.forward(x, DropoutSpec(0.5, seed=7), api=api)
    np.testing.assert_array_equal(first, again)
    assert ((first != 0) != (other != 0)).mean() > 0.3
    a = BACKEND.forward(x, DropoutSpec(0.5), api=api)
    b = BACKEND.forward(x, DropoutSpec(0.5), api=api)
    assert ((a != 0) != (b != 0)).mean() > 0.3
    assert ((a != 0) != (first != 0)).mean() > 0.3


@pytest.mark.parametrize("api", ["tf.nn.dropout", "stateless_dropout"])
def test_unseeded_stream_is_deterministic_after_a_seeded_call(api: str) -> None:
    x, _ = inputs((64, 64))

    def run() -> np.ndarray:
        BACKEND.forward(x, DropoutSpec(0.5, seed=3), api=api)
        return BACKEND.forward(x, DropoutSpec(0.5), api=api)

    np.testing.assert_array_equal(run(), run())


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_output_keeps_the_input_dtype(api: str, dtype: str) -> None:
    x, g = inputs((64, 64), dtype)
    y, grad = BACKEND.forward_backward(x, g, DropoutSpec(0.5, dtype=dtype), api=api)
    assert y.dtype == grad.dtype == np.dtype(dtype)


# Observed at rate 1 (TF 2.21, Keras 3.15, tf_keras 2.21): recorded, not fixed by the adapter.
RATE_ONE_RAISES = ["tf.nn.dropout", "compat.v1.nn.dropout", "tf_keras.layers.Dropout", "DropoutWrapper", "stateless_dropout"]


@pytest.mark.parametrize("api", RATE_ONE_RAISES)
def test_rate_one_raises_value_error(api: str) -> None:
    with pytest.raises(ValueError, match=r"range \[0, 1\)"):
        BACKEND.forward(inputs()[0], DropoutSpec(1.0), api=api)


def test_keras3_rate_one_gives_zeros_and_zero_gradient() -> None:
    x, g = inputs()
    y, grad = BACKEND.forward_backward(x, g, DropoutSpec(1.0), api="keras.layers.Dropout")
    assert not y.any() and not grad.any()


@pytest.mark.parametrize("api", APIS)
def test_rate_zero_is_identity(api: str) -> None:
    x, g = inputs()
    y, grad = BACKEND.forward_backward(x, g, DropoutSpec(0.0), api=api)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(grad, g)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("direction", ["forward", "forward_backward"])
@pytest.mark.parametrize("compiled", [False, True])
def test_prepare_runs(api: str, direction: str, compiled: bool) -> None:
    step = BACKEND.prepare((32, 16), DropoutSpec(0.5, seed=1), api=api, direction=direction, compiled=compiled)
    assert step() is None
    step()


def test_prepare_checks_the_spec() -> None:
    with pytest.raises(Unsupported):
        BACKEND.prepare((8, 8), DropoutSpec(0.5, scaling="vanilla"), api="tf.nn.dropout", direction="forward")
    with pytest.raises(ValueError):
        BACKEND.prepare((8, 8), DropoutSpec(0.5), api="tf.nn.dropout", direction="sideways")


@pytest.mark.parametrize("compiled", [False, True])
def test_prepared_step_really_runs_each_call(compiled: bool) -> None:
    """Unseeded stateless steps draw their seed from the adapter's generator: each call advances it."""
    step = BACKEND.prepare((8, 8), DropoutSpec(0.5), api="stateless_dropout", direction="forward", compiled=compiled)
    before = BACKEND._generator().state.numpy().copy()
    step()
    middle = BACKEND._generator().state.numpy().copy()
    step()
    assert not np.array_equal(before, middle)
    assert not np.array_equal(middle, BACKEND._generator().state.numpy())
