"""Thread pinning, the framework-neutral half: the environment every worker starts with, and the
call into the backend's own ``pin_threads(n)`` (backends/base.py), which knows its framework's pools."""
from __future__ import annotations

import os
from typing import Any

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
"""Read by the BLAS/OpenMP runtimes when they load, i.e. before the worker imports NumPy: so the
parent sets them. A framework's own variables are set by its backend's pin_threads(), before the
framework is imported."""


def thread_env(threads: int) -> dict[str, str]:
    """Environment that pins BLAS/OpenMP pools; must be in place before the worker starts."""
    return {name: str(threads) for name in THREAD_ENV_VARS}


def pin_threads(backend: Any, threads: int) -> dict[str, Any]:
    """Worker side: pin ``backend``'s pools to ``threads``; returns what the framework reports back.

    Called right after the adapter is loaded and before its framework is imported, so a backend
    may still set the variables its framework reads at import.
    """
    record: dict[str, Any] = {"requested": threads,
                              "env": {name: os.environ.get(name) for name in THREAD_ENV_VARS}}
    pinner = getattr(backend, "pin_threads", None)
    if not callable(pinner):
        record["note"] = f"{getattr(backend, 'name', backend)!r} has no pin_threads(): pinned through the environment only"
        return record
    try:
        record.update(pinner(threads) or {})
    except Exception as exc:  # a missing framework is reported by the backend itself
        record["error"] = f"{type(exc).__name__}: {exc}"
    return record
