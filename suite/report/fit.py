"""Scaling fit per API and direction: time = a + b·n over the measured sizes.

Users choosing a framework for small tensors care about the per-call overhead ``a`` (µs); for
large ones about the per-element cost ``b`` (ns per element, and as a multiple of the same worker's
``baseline:copy`` b). The fit is least squares weighted by 1/t² (relative residuals: sizes span
orders of magnitude, and an absolute fit would ignore the small ones). It is *bad* when a measured
size lies more than :data:`BAD_RESIDUAL` off the line, or the overhead comes out clearly negative
(the cost is not linear in n, e.g. a cache step between sizes: --quick's 2^16 is cache resident,
2^22 is not); otherwise with two sizes the line passes through both points exactly and cannot be
judged further ("2 sizes: exact").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

BAD_RESIDUAL = 0.25  # relative
NEGATIVE_A = -0.05  # a below -5 % of the smallest measured time is not overhead but a bad model
FIT_HEADERS = ("api", "mode", "direction", "dtype", "device", "sizes", "a µs", "b ns/elem", "b x copy", "max resid %",
               "fit")


@dataclass(frozen=True)
class Fit:
    a: float  # seconds per call
    b: float  # seconds per element
    max_residual: float  # max |t_fit/t - 1| over the sizes
    sizes: int
    verdict: str  # ok | bad: ... | 2 sizes: exact | too few sizes


def fit_line(numel: Sequence[float], seconds: Sequence[float]) -> Fit:
    n = np.asarray(numel, dtype=np.float64)
    t = np.asarray(seconds, dtype=np.float64)
    if n.size < 2 or np.unique(n).size < 2:
        return Fit(math.nan, math.nan, math.nan, int(n.size), "too few sizes")
    w = 1.0 / t  # rows scaled by 1/t: minimizes the sum of squared relative residuals
    design = np.stack([np.ones_like(n), n], axis=1) * w[:, None]
    (a, b), *_ = np.linalg.lstsq(design, t * w, rcond=None)
    resid = np.abs((a + b * n) / t - 1.0)
    worst = float(resid.max())
    if a < NEGATIVE_A * float(t.min()):
        verdict = "bad: negative overhead (per-element cost grows with n: a cache step?)"
    elif n.size == 2:
        verdict = "2 sizes: exact"
    elif worst > BAD_RESIDUAL:
        verdict = f"bad: a size is {worst:.0%} off the line"
    else:
        verdict = "ok"
    return Fit(float(a), float(b), worst, int(n.size), verdict)


def scaling_fits(benchmarks: Sequence[Mapping[str, Any]]) -> dict[tuple, Fit]:
    """Fit per (api, mode, direction, dtype, device, worker) over the median times of the rows."""
    groups: dict[tuple, dict[int, float]] = {}
    for bench in benchmarks:
        info = bench["extra_info"]
        key = (info["api"], info.get("mode") or "eager", info["direction"], info["dtype"], info["device"],
               info.get("worker"))
        median = (bench.get("stats") or {}).get("median")
        if isinstance(median, (int, float)) and median > 0:
            groups.setdefault(key, {})[int(info["numel"])] = float(median)
    return {key: fit_line(list(points), list(points.values())) for key, points in groups.items()}


def fit_rows(benchmarks: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Table rows (FIT_HEADERS) for every API, with b also as a multiple of its worker's copy baseline."""
    fits = scaling_fits(benchmarks)
    copy_b = {(k[3], k[4], k[5]): f.b for k, f in fits.items() if k[0] == "baseline:copy" and math.isfinite(f.b)}
    rows = []
    for key, fit in sorted(fits.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        api, mode, direction, dtype, device, worker = key
        if api.startswith("baseline:") or fit.verdict == "too few sizes":
            continue
        cb = copy_b.get((dtype, device, worker))
        rows.append([api, mode, direction, dtype, device, str(fit.sizes), f"{fit.a * 1e6:.2f}", f"{fit.b * 1e9:.3f}",
                     f"{fit.b / cb:.1f}" if cb and cb > 0 else "—", f"{fit.max_residual * 100:.1f}", fit.verdict])
    return rows
