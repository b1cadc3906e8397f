"""The torch adapter: each test pins one observable fact about a torch dropout API."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from backends.base import Unsupported  # noqa: E402
from backends.torch_backend import TorchBackend  # noqa: E402
from suite.spec import DropoutSpec  # noqa: E402

# the attention APIs are dropout inside attention (no backward, no timing closure): tests/test_probes.py;
# the alpha-dropout APIs are another kind: tests/test_family.py
DROPOUT_APIS = tuple(a for a in TorchBackend.apis if "ttention" not in a and TorchBackend.infos[a].kind == "bernoulli")


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    return TorchBackend()


def ones(*shape: int, dtype: str = "float32") -> np.ndarray:
    return np.ones(shape, dtype=dtype)


def test_module_imports_without_torch() -> None:
    """Listing backends must not import torch; the adapter imports it lazily."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from backends.torch_backend import TorchBackend\n"
        "b = TorchBackend(); assert not b.available(); assert b.devices() == ['cpu']\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_versions_and_devices(backend: TorchBackend) -> None:
    assert backend.versions() == {"torch": torch.__version__}
    assert backend.devices()[0] == "cpu"
    assert len(backend.devices()) == 1 + torch.cuda.device_count()


@pytest.mark.parametrize("api", ["F.dropout", "nn.Dropout", "d2l-scratch"])
def test_elementwise_apis_zero_or_scale(backend: TorchBackend, api: str) -> None:
    y = backend.forward(ones(64, 64), DropoutSpec(rate=0.25, seed=0), api=api)
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert 0.15 < (y == 0).mean() < 0.35


def test_dropout2d_zeroes_whole_channels(backend: TorchBackend) -> None:
    spec = DropoutSpec(rate=0.5, broadcast_axes=(2, 3), seed=1)
    y = backend.forward(ones(4, 8, 3, 5), spec, api="nn.Dropout2d")
    per_channel = y.reshape(4, 8, -1)
    assert (per_channel == per_channel[:, :, :1]).all()  # one mask value per (N, C)
    assert set(np.unique(per_channel[:, :, 0])) == {0.0, 2.0}


def test_dropout1d_zeroes_whole_channels(backend: TorchBackend) -> None:
    spec = DropoutSpec(rate=0.5, broadcast_axes=(2,), seed=1)
    y = backend.forward(ones(4, 8, 7), spec, api="nn.Dropout1d")
    assert (y == y[:, :, :1]).all()
    assert set(np.unique(y)) == {0.0, 2.0}


def test_eval_is_identity_but_training_is_not(backend: TorchBackend) -> None:
    x = np.random.default_rng(0).standard_normal((32, 32)).astype(np.float32)
    np.testing.assert_array_equal(backend.forward(x, DropoutSpec(rate=0.5, training=False), api="nn.Dropout"), x)
    np.testing.assert_array_equal(backend.forward(x, DropoutSpec(rate=0.5, training=False), api="F.dropout"), x)
    assert not np.array_equal(backend.forward(x, DropoutSpec(rate=0.5, training=True), api="F.dropout"), x)


@pytest.mark.parametrize("api", DROPOUT_APIS)
def test_seed_reproduces_and_unseeded_calls_differ(backend: TorchBackend, api: str) -> None:
    x = ones(2, 16, 4, 4) if api == "nn.Dropout2d" else ones(4, 16, 16)
    layout = backend.api_info(api).layout
    spec = DropoutSpec(rate=0.5, seed=123, broadcast_axes=layout.broadcast_axes if layout else ())
    first = backend.forward(x, spec, api=api)
    np.testing.assert_array_equal(backend.forward(x, spec, api=api), first)
    assert not np.array_equal(backend.forward(x, spec.replace(seed=124), api=api), first)
    unseeded = spec.replace(seed=None)
    assert not np.array_equal(backend.forward(x, unseeded, api=api), backend.forward(x, unseeded, api=api))


def test_unseeded_stream_is_deterministic_after_a_seeded_call(backend: TorchBackend) -> None:
    def run() -> list[np.ndarray]:
        backend.forward(ones(8), DropoutSpec(seed=7), api="F.dropout")
        return [backend.forward(ones(64), DropoutSpec(), api="F.dropout") for _ in range(2)]

    np.testing.assert_array_equal(np.stack(run()), np.stack(run()))


def test_d2l_promotes_float16_to_float32(backend: TorchBackend) -> None:
    y, grad = backend.forward_backward(
        ones(16, dtype="float16"), ones(16, dtype="float16"), DropoutSpec(seed=0), api="d2l-scratch"
    )
    assert y.dtype == np.float32  # .float() on the mask promotes the product
    assert grad.dtype == np.float16  # the gradient keeps x's dtype


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_torch_apis_keep_dtype(backend: TorchBackend, dtype: str) -> None:
    y, grad = backend.forward_backward(ones(8, dtype=dtype), ones(8, dtype=dtype), DropoutSpec(), api="F.dropout")
    assert y.dtype == grad.dtype == np.dtype(dtype)


@pytest.mark.parametrize("api", DROPOUT_APIS)
def test_gradient_is_grad_out_times_mask_over_keep(backend: TorchBackend, api: str) -> None:
    shape = (3, 4, 5, 6) if api == "nn.Dropout2d" else (3, 4, 5)
    layout = backend.api_info(api).layout
    spec = DropoutSpec(rate=0.3, seed=5, broadcast_axes=layout.broadcast_axes if layout else ())
    rng = np.random.default_rng(1)
    x = rng.uniform(1, 2, shape).astype(np.float32)  # nonzero, so y != 0 exactly where kept
    grad_out = rng.standard_normal(shape).astype(np.float32)
    y, grad = backend.forward_backward(x, grad_out, spec, api=api)
    mask = y != 0
    assert mask.any() and not mask.all()
    np.testing.assert_allclose(y, x * mask / 0.7, rtol=1e-6)
    np.testing.assert_allclose(grad, grad_out * mask / 0.7, rtol=1e-6)


def test_input_array_is_not_aliased(backend: TorchBackend) -> None:
    """Rate 0 / eval return torch's input tensor itself; that must not be the caller's array."""
    x = ones(5)
    y = backend.forward(x, DropoutSpec(rate=0.0), api="F.dropout")
    y[:] = 0
    assert (x == 1).all()


def test_rate_one_zeroes_output_and_gradient(backend: TorchBackend) -> None:
    for api in ("F.dropout", "d2l-scratch"):
        y, grad = backend.forward_backward(ones(6), ones(6), DropoutSpec(rate=1.0), api=api)
        assert (y == 0).all() and (grad == 0).all()


def test_rate_one_is_x_times_zero_so_inf_becomes_nan(backend: TorchBackend) -> None:
    """Recorded, not fixed: torch multiplies by a zero mask, d2l returns zeros_like."""
    x = np.array([np.inf, np.nan, 1.0], dtype=np.float32)
    assert np.isnan(backend.forward(x, DropoutSpec(rate=1.0), api="F.dropout")[:2]).all()
    np.testing.assert_array_equal(backend.forward(x, DropoutSpec(rate=1.0), api="d2l-scratch"), 0)


@pytest.mark.parametrize(
    "api, spec",
    [
        ("F.dropout", DropoutSpec(scaling="vanilla")),
        ("nn.Dropout", DropoutSpec(scaling="vanilla")),
        ("F.dropout", DropoutSpec(broadcast_axes=(1,))),
        ("nn.Dropout2d", DropoutSpec(broadcast_axes=(1,))),
        ("d2l-scratch", DropoutSpec(training=False)),
    ],
)
def test_inexpressible_specs_raise_unsupported(backend: TorchBackend, api: str, spec: DropoutSpec) -> None:
    with pytest.raises(Unsupported):
        backend.forward(ones(2, 3, 4, 5), spec, api=api)


def test_channel_dropout_needs_its_layout(backend: TorchBackend) -> None:
    """torch itself would run Dropout2d on 3-d/5-d input (with a warning); the suite never feeds it."""
    with pytest.raises(Unsupported):
        backend.forward(ones(2, 3, 4, 5, 6), DropoutSpec(broadcast_axes=(2, 3)), api="nn.Dropout2d")
    with pytest.raises(Unsupported):
        backend.forward(ones(2, 3, 4, 5), DropoutSpec(broadcast_axes=(2,)), api="nn.Dropout1d")


def test_unknown_api_is_a_value_error(backend: TorchBackend) -> None:
    with pytest.raises(ValueError):
        backend.forward(ones(3), DropoutSpec(), api="nn.NoSuchDropout")


@pytest.mark.parametrize("direction", ["forward", "forward_backward"])
@pytest.mark.parametrize("api", DROPOUT_APIS)
def test_prepare_closures_run(backend: TorchBackend, api: str, direction: str) -> None:
    layout = backend.api_info(api).layout
    shape = (2, 3, 4, 5) if api == "nn.Dropout2d" else (2, 3, 4)
    spec = DropoutSpec(broadcast_axes=layout.broadcast_axes if layout else (), seed=0)
    step = backend.prepare(shape, spec, api=api, direction=direction)
    assert step() is None
    step()


def test_prepare_rejects_compiled_and_bad_direction(backend: TorchBackend) -> None:
    with pytest.raises(Unsupported):
        backend.prepare((4,), DropoutSpec(), api="F.dropout", direction="forward", compiled=True)
    with pytest.raises(ValueError):
        backend.prepare((4,), DropoutSpec(), api="F.dropout", direction="sideways")
    with pytest.raises(Unsupported):
        backend.prepare((4,), DropoutSpec(scaling="vanilla"), api="F.dropout", direction="forward")
