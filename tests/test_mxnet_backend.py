"""MXNet adapter: each test pins one behaviour MXNet really shows, so a wrong adapter fails it."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from backends.base import Unsupported
from backends.mxnet_backend import MxnetBackend
from suite.spec import DropoutSpec

APIS = MxnetBackend.apis
MASKABLE = ("nd.Dropout", "gluon.nn.Dropout")  # the APIs with axes and an inference mode


@pytest.fixture(scope="module")
def mxb() -> MxnetBackend:
    backend = MxnetBackend()
    if not backend.available():
        pytest.skip(backend.unavailable_reason() or "mxnet unavailable")
    return backend


def _x(shape: tuple[int, ...] = (64, 64), dtype: str = "float32") -> np.ndarray:
    """Strictly positive input, so y / x recovers the per-element multiplier."""
    return np.random.default_rng(0).uniform(0.5, 2.0, size=shape).astype(dtype)


def _multiplier(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return y.astype(np.float64) / x.astype(np.float64)


# -- laziness -----------------------------------------------------------------------
def _run_py(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_module_import_does_not_import_mxnet() -> None:
    code = "import sys, backends.mxnet_backend as m; m.MxnetBackend().apis; print('mxnet' in sys.modules)"
    assert _run_py(code) == "False"


def test_missing_mxnet_is_unavailable_not_an_import_error() -> None:
    code = (
        "import sys; sys.modules['mxnet'] = None\n"
        "from backends.mxnet_backend import MxnetBackend\n"
        "b = MxnetBackend(); print(b.available(), 'mxnet failed to import' in b.unavailable_reason())"
    )
    assert _run_py(code) == "False True"


# -- environment --------------------------------------------------------------------
def test_versions_and_devices(mxb: MxnetBackend) -> None:
    assert mxb.versions()["mxnet"][0].isdigit()
    devices = mxb.devices()
    assert devices[0] == "cpu" and all(d.startswith("cuda:") for d in devices[1:])


# -- training forward -------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_training_drops_and_scales_by_one_over_keep(mxb: MxnetBackend, api: str) -> None:
    x = _x((100, 100))
    y = mxb.forward(x, DropoutSpec(rate=0.3), api=api)
    m = _multiplier(x, y)
    kept = m != 0
    np.testing.assert_allclose(m[kept], 1 / 0.7, rtol=1e-6)
    # 10_000 Bernoulli(0.3) draws: the drop fraction is 0.3 +- 0.0046 (1 sd); allow 5 sd.
    assert abs((~kept).mean() - 0.3) < 0.025


@pytest.mark.parametrize("api", MASKABLE)
def test_scale_is_computed_from_a_float32_keep(mxb: MxnetBackend, api: str) -> None:
    """MXNet scales by 1 / (1 - float32(p)) in float32: 9.9999976 at p=0.9, not 10. Observed, kept."""
    x = _x()
    y = mxb.forward(x, DropoutSpec(rate=0.9, seed=0), api=api)
    kept = y != 0
    one = np.float32(1)
    np.testing.assert_array_equal(y[kept], x[kept] * (one / (one - np.float32(0.9))))
    assert (y[kept] != x[kept] * np.float32(10)).any()


@pytest.mark.parametrize("api", MASKABLE)
def test_rate_one_gives_nan_as_mxnet_does(mxb: MxnetBackend, api: str) -> None:
    """MXNet computes x * 0 * (1/0): NaN, not zeros. Recorded as is, not fixed."""
    x, g = _x((8, 8)), _x((8, 8))
    y, grad = mxb.forward_backward(x, g, DropoutSpec(rate=1.0), api=api)
    assert np.isnan(y).all() and np.isnan(grad).all()


def test_d2l_rate_one_is_zeros_by_its_special_case(mxb: MxnetBackend) -> None:
    x, g = _x((8, 8)), _x((8, 8))
    y, grad = mxb.forward_backward(x, g, DropoutSpec(rate=1.0), api="d2l-scratch")
    assert (y == 0).all() and (grad == 0).all()


@pytest.mark.parametrize("api", APIS)
def test_rate_zero_is_identity(mxb: MxnetBackend, api: str) -> None:
    x, g = _x((8, 8)), _x((8, 8))
    y, grad = mxb.forward_backward(x, g, DropoutSpec(rate=0.0), api=api)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(grad, g)


# -- eval -------------------------------------------------------------------------------
@pytest.mark.parametrize("api", MASKABLE)
def test_eval_is_identity_forward_and_backward(mxb: MxnetBackend, api: str) -> None:
    x, g = _x(), _x()
    spec = DropoutSpec(rate=0.5, training=False)
    np.testing.assert_array_equal(mxb.forward(x, spec, api=api), x)  # plain call: predict mode
    y, grad = mxb.forward_backward(x, g, spec, api=api)  # record(train_mode=False)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(grad, g)


def test_gluon_block_both_inference_paths_are_identity(mxb: MxnetBackend) -> None:
    """A Gluon user gets inference either by not recording or by record(train_mode=False)."""
    mx = mxb.framework()
    block = mx.gluon.nn.Dropout(0.5)
    block.initialize()
    x = mx.nd.array(_x())
    np.testing.assert_array_equal(block(x).asnumpy(), x.asnumpy())
    with mx.autograd.record(train_mode=False):
        np.testing.assert_array_equal(block(x).asnumpy(), x.asnumpy())
    with mx.autograd.record():
        assert (block(x).asnumpy() == 0).any()  # and training really drops


@pytest.mark.parametrize("api", APIS)
def test_unsupported_specs_raise(mxb: MxnetBackend, api: str) -> None:
    x = _x((4, 4))
    with pytest.raises(Unsupported):
        mxb.forward(x, DropoutSpec(scaling="vanilla"), api=api)
    if api == "d2l-scratch":
        with pytest.raises(Unsupported):
            mxb.forward(x, DropoutSpec(training=False), api=api)
        with pytest.raises(Unsupported):
            mxb.forward(x, DropoutSpec(broadcast_axes=(0,)), api=api)


# -- axes -------------------------------------------------------------------------------
@pytest.mark.parametrize("api", MASKABLE)
@pytest.mark.parametrize("axes", [(0,), (1,), (-1,), (0, 2)])
def test_axes_share_the_mask_along_those_axes(mxb: MxnetBackend, api: str, axes: tuple[int, ...]) -> None:
    x = _x((6, 7, 8))
    spec = DropoutSpec(rate=0.5, broadcast_axes=axes)
    kept = _multiplier(x, mxb.forward(x, spec, api=api)) != 0
    for axis in spec.normalized_axes(x.ndim):
        first = np.take(kept, [0], axis=axis)
        assert (kept == first).all(), f"mask varies along axis {axis}"
    assert kept.any() and not kept.all()
    other = tuple(sorted(set(range(x.ndim)) - set(spec.normalized_axes(x.ndim))))
    assert (kept != np.take(kept, [0], axis=other[0])).any(), "mask should vary along the other axes"


# -- seeds ------------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_same_seed_same_mask_unseeded_calls_differ(mxb: MxnetBackend, api: str) -> None:
    x = _x()
    a = mxb.forward(x, DropoutSpec(rate=0.5, seed=11), api=api)
    b = mxb.forward(x, DropoutSpec(rate=0.5, seed=11), api=api)
    c = mxb.forward(x, DropoutSpec(rate=0.5, seed=12), api=api)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    d = mxb.forward(x, DropoutSpec(rate=0.5), api=api)
    e = mxb.forward(x, DropoutSpec(rate=0.5), api=api)
    assert (d != e).any(), "an unseeded call must continue the stream, not reseed"


# -- backward / dtypes -------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_gradient_is_grad_out_times_mask_over_keep(mxb: MxnetBackend, api: str, dtype: str) -> None:
    if dtype not in mxb.api_info(api).dtypes:
        pytest.skip(f"{api} does not declare {dtype}")
    x = _x(dtype=dtype)
    g = np.random.default_rng(1).normal(size=x.shape).astype(dtype)
    y, grad = mxb.forward_backward(x, g, DropoutSpec(rate=0.25, dtype=dtype), api=api)
    assert y.dtype == np.dtype(dtype) and grad.dtype == np.dtype(dtype)  # no silent cast
    expected = g.astype(np.float64) * _multiplier(x, y)
    rtol = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(grad, expected, rtol=rtol, atol=rtol)
    assert (grad[y == 0] == 0).all() and (y == 0).any()


def test_d2l_scratch_float16_raises_like_the_book_code(mxb: MxnetBackend) -> None:
    """The book's float32 uniform mask cannot multiply a float16 NDArray; the error is MXNet's own."""
    mx = mxb.framework()
    with pytest.raises(mx.base.MXNetError, match="expected float32, got float16"):
        mxb.forward(_x(dtype="float16"), DropoutSpec(dtype="float16"), api="d2l-scratch")


# -- timing closures ----------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("direction", ["forward", "forward_backward"])
def test_prepare_closure_runs(mxb: MxnetBackend, api: str, direction: str) -> None:
    step = mxb.prepare((32, 16), DropoutSpec(rate=0.5, seed=3), api=api, direction=direction)
    assert step() is None
    step()


def test_prepare_compiled(mxb: MxnetBackend) -> None:
    for direction in ("forward", "forward_backward"):
        mxb.prepare((8, 8), DropoutSpec(), api="gluon.nn.Dropout", direction=direction, compiled=True)()
    for api in ("nd.Dropout", "d2l-scratch"):
        with pytest.raises(Unsupported):
            mxb.prepare((8, 8), DropoutSpec(), api=api, direction="forward", compiled=True)
    with pytest.raises(ValueError):
        mxb.prepare((8, 8), DropoutSpec(), api="nd.Dropout", direction="sideways")
