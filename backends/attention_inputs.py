"""Inputs that make an attention layer's dropout visible: framework-neutral NumPy, shared by the adapters.

Attention dropout acts on the softmax weights, which the layers do not return (or return before
dropout). The probe makes them visible. With query and key projections of zero, every logit is
0, so every weight of a row is exactly 1/L. With the value of key j equal to L * e_j (one-hot
values), output[i, j] is the dropped, rescaled weight times L: 0 or 1/keep. The adapter returns
y = x * output, i.e. x times the weight's mask/keep, so every probe and verify check reads the
attention weights exactly as it reads a dropout output (x plays the undropped input).

The weights are laid out as (rows, L) with L the last axis of x, cut to 64 keys when the last axis
is a larger multiple of 64, so the cost of the value product (rows * L * L) stays small: 2**21
elements cost 2**27 multiply-adds. L is a power of two for every probe shape, so 1/L, the
rescaling and the product by L are exact.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from backends.base import Unsupported

MAX_KEYS = 64


def weights_layout(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, keys) of the attention weights that stand for an input of ``shape`` (same element order)."""
    if not shape:
        raise ValueError("attention dropout needs an input with at least one axis (the keys)")
    keys = int(shape[-1])
    if keys > MAX_KEYS and keys % MAX_KEYS == 0:
        keys = MAX_KEYS
    numel = int(np.prod(shape, dtype=np.int64))
    rows = numel // keys if keys else 0
    return rows, keys


def one_hot_values(keys: int, dtype: np.dtype) -> np.ndarray:
    """(keys, keys) value matrix L * I: output row i is L times the dropped weight row i."""
    return (np.eye(keys) * keys).astype(dtype)


def keras_attention(keras: Any, x: np.ndarray, spec: Any, *, seeded: bool) -> Callable[[bool], Any]:
    """``keras.layers.MultiHeadAttention`` (Keras 3 or tf_keras) set up so its output exposes the weights.

    ``MultiHeadAttention(num_heads=1, key_dim=1, value_dim=L, dropout=rate, use_bias=False,
    output_shape=L)``; query/key kernels zero, value/output kernels the identity. Returns
    ``call(x_tensor, training) -> y``. ``seeded``: pass ``seed=`` (Keras 3 has it; tf_keras seeds
    through tf.random.set_seed).
    """
    rows, keys = weights_layout(tuple(x.shape))
    dtype = np.dtype(x.dtype)
    kwargs: dict[str, Any] = {"seed": spec.seed} if seeded else {}
    layer = keras.layers.MultiHeadAttention(num_heads=1, key_dim=1, value_dim=keys, dropout=spec.rate, use_bias=False,
                                            output_shape=(keys,), dtype=dtype.name, **kwargs)
    query = np.zeros((1, rows, 1), dtype)
    values = one_hot_values(keys, dtype)[None]
    layer(query, values, training=False)  # builds every sublayer (tf_keras builds them on the first call); no RNG draw
    eye = np.eye(keys, dtype=dtype)
    layer._query_dense.kernel.assign(np.zeros((1, 1, 1), dtype))
    layer._key_dense.kernel.assign(np.zeros((keys, 1, 1), dtype))
    layer._value_dense.kernel.assign(eye.reshape(keys, 1, keys))
    layer._output_dense.kernel.assign(eye.reshape(1, keys, keys))

    def call(training: bool) -> Any:
        return layer(query, values, training=training)

    return call


def require_finite(name: str, x: np.ndarray) -> None:
    """Refuse a non-finite x: the adapter, not the framework, multiplies x by the weights' mask, so an
    inf or NaN in x would only show that multiplication (inf * 0 = NaN), never the attention layer."""
    if x.size and not np.isfinite(np.asarray(x, dtype=np.float64)).all():
        raise Unsupported(f"{name}: x only scales the dropped weights in this probe; a non-finite x would test the "
                          "adapter's own multiplication, not the attention layer")
