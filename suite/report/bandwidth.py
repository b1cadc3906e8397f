"""Bandwidth columns: effective GB/s of the bytes an API moves, as % of the same run's device copy and of
the device's published peak.

* bytes moved: ``extra_info.bytes_moved`` (the API's declared traffic model, suite/bench/cases.py);
  runs recorded before that field existed get it from the adapter's model now (``model: now``);
* % copy = (bytes_moved / time) / (bytes of baseline:copy / its time), the copy of the same machine,
  device, dtype, size and worker process (``x_copy``): how close the API gets to what this device's own
  copy reaches in the same run;
* % peak = (bytes_moved / time) / the device's peak memory bandwidth, where the device is a known GPU
  (backends/device_peaks.toml, each value cited); CPUs have no entry: their peak depends on DIMMs and
  channels, which the machine facts do not say.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import tomllib

from backends import DEVICE_PEAKS_FILE
from backends.base import api_info
from suite.bench.cases import ITEMSIZE

if TYPE_CHECKING:
    import pandas as pd

HEADERS = ["API", "direction", "bytes/elem", "GB/s", "% copy", "% peak", "mask", "model"]


@lru_cache(maxsize=1)
def device_peaks() -> dict[str, dict[str, Any]]:
    """name substring -> {"bytes_per_s", "memory", "source"} of the cited table."""
    with DEVICE_PEAKS_FILE.open("rb") as handle:
        return dict(tomllib.load(handle).get("device", {}))


def peak_for(device_name: str) -> tuple[float, str] | None:
    """(bytes/s, name) of the longest table name contained in ``device_name``; None for unknown devices."""
    hits = [(len(name), name) for name in device_peaks() if name.lower() in (device_name or "").lower()]
    if not hits:
        return None
    name = max(hits)[1]
    return float(device_peaks()[name]["bytes_per_s"]), name


@lru_cache(maxsize=None)
def _info_of(api: str) -> Any:
    """The ApiInfo of a built-in API id, or None (a plugin, or an API gone since the run)."""
    from suite.runtime.loader import known_backends, load  # noqa: PLC0415 - imports adapters only when needed

    for ref in known_backends().values():
        try:
            backend = load(ref)
        except Exception:
            continue
        if api.startswith(f"{backend.name}:") and api.split(":", 1)[1] in backend.apis:
            return api_info(backend, api.split(":", 1)[1])
    return None


def bytes_moved(info: dict[str, Any], direction: str, numel: int, dtype: str) -> tuple[float, str]:
    """(bytes moved, where the figure comes from: "run" | "now" | "none") of one benchmark row."""
    if isinstance(info.get("bytes_moved"), (int, float)):
        return float(info["bytes_moved"]), "run"
    api = str(info.get("api", ""))
    if api.startswith("baseline:"):
        return float(info.get("bytes") or math.nan), "run"
    declared = _info_of(api)
    if declared is None or dtype not in ITEMSIZE:
        return math.nan, "none"
    shape, layout = info.get("shape") or [], declared.layout
    mask_elements = None
    if layout is not None and len(shape) == layout.ndim:  # a mask shared along axes: one value per group
        mask_elements = math.prod(1 if axis in layout.broadcast_axes else int(n) for axis, n in enumerate(shape))
    return declared.traffic.bytes_moved(direction, numel, ITEMSIZE[dtype], mask_elements), "now"


def add_columns(disp: "pd.DataFrame") -> "pd.DataFrame":
    """moved_gbps, pct_copy and pct_peak on the display frame (which carries bytes_moved, x_copy, gpu)."""
    out = disp.copy()
    out["moved_gbps"] = out["bytes_moved"] / out["median_s"] / 1e9
    copy_bytes = 2 * out["numel"] * out["dtype"].map(ITEMSIZE)
    out["pct_copy"] = 100 * out["bytes_moved"] / copy_bytes / out["x_copy"]
    peaks = out["gpu"].map(lambda name: (peak_for(name) or (math.nan, ""))[0])
    out["pct_peak"] = (100 * out["moved_gbps"] * 1e9 / peaks).where(out["device"] != "cpu")
    return out


def _pct(value: float) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.1f} %"


def bandwidth_tables(disp: "pd.DataFrame", largest_common_size: Any, table_cls: Any) -> list[Any]:
    """Per machine x device x dtype at the largest common size: what each API moves and how fast."""
    frame = add_columns(disp)
    tables = []
    for (machine, device, dtype), sub in frame.groupby(["machine", "device", "dtype"], sort=True):
        if sub[~sub["is_baseline"]].empty:
            continue
        numel, _ = largest_common_size(sub)
        at = sub[sub["numel"] == numel].sort_values(["is_baseline", "label", "direction"], kind="stable")
        rows = [[r.label, r.direction, f"{r.bytes_moved / numel:.3g}", f"{r.moved_gbps:.3g}", _pct(r.pct_copy),
                 _pct(r.pct_peak), str(r.mask_kept), str(r.model)] for r in at.itertuples()]
        gpu = str(sub["gpu"].iloc[0] or "")
        peak = peak_for(gpu) if device != "cpu" else None
        caption = (f"n = {numel:,}; GB/s = bytes moved (x, y, grad_out, grad_x and the mask as the API keeps it) "
                   "/ median time; % copy = that ÷ the GB/s of baseline:copy of the same worker; "
                   + (f"% peak: {peak[1]} {peak[0] / 1e12:g} TB/s (backends/device_peaks.toml)" if peak else
                      "% peak: no known peak for this device" + (" (a CPU)" if device == "cpu" else f" ({gpu or 'unnamed'})"))
                   + "; model: run = recorded with the run, now = the adapter's model applied to an older run.")
        tables.append(table_cls(f"Bandwidth · {machine} · {device} · {dtype}", caption, HEADERS, rows))
    return tables


def row_fields(info: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """The frame columns of one benchmark row this module needs (build.py's _rows adds them)."""
    moved, model = bytes_moved(info, str(info.get("direction")), int(info.get("numel") or 0), str(info.get("dtype")))
    traffic = dict(info.get("traffic") or {})
    if model == "now":
        declared = _info_of(str(info.get("api"))).traffic
        traffic = {"mask": declared.mask, "declared": declared.declared}
    mask = str(traffic.get("mask") or "?")
    if str(info.get("api", "")).startswith("baseline:"):
        mask = "—"
    elif not traffic.get("declared", True):
        mask += " (assumed)"
    return {"bytes_moved": moved, "model": model, "mask_kept": mask, "gpu": str(facts.get("gpu") or "")}


AGGREGATES = {"bytes_moved": ("bytes_moved", "first"), "model": ("model", "first"), "mask_kept": ("mask_kept", "first"),
              "gpu": ("gpu", "first")}
"""What display_frame keeps of these columns."""
