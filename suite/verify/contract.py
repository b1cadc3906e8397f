"""What a backend call must return (README, "Adding a backend"), checked before any check reads it.

A plugin that returns a list, a tuple of the wrong length or an array of another shape gets one
line naming the broken rule, instead of a traceback from deep inside a check.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class ContractViolation(TypeError):
    """A backend call returned something the contract does not allow; the message names the rule."""


def checked_array(value: Any, x: np.ndarray, what: str) -> np.ndarray:
    """``value`` as an ndarray of ``x.shape`` or ContractViolation naming ``what`` (e.g. "forward()")."""
    if not isinstance(value, np.ndarray):
        try:
            value = np.asarray(value) if hasattr(value, "__array__") else value
        except Exception:  # a device tensor that refuses conversion falls through to the message below
            pass
    if not isinstance(value, np.ndarray):
        raise ContractViolation(f"contract: {what} must return a numpy.ndarray of shape {x.shape}, "
                                f"got {type(value).__name__}")
    if value.shape != x.shape:
        raise ContractViolation(f"contract: {what} must return an array of the input's shape {x.shape}, "
                                f"got shape {value.shape}")
    return value


def checked_pair(value: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """forward_backward()'s (y, grad) pair, each checked like forward()'s y."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ContractViolation(f"contract: forward_backward() must return a (y, grad) pair, got {type(value).__name__}"
                                + (f" of length {len(value)}" if isinstance(value, (tuple, list)) else ""))
    return checked_array(value[0], x, "forward_backward() y"), checked_array(value[1], x, "forward_backward() grad")
