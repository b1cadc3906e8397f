"""Report plots with matplotlib's object API on the Agg canvas (no pyplot, no display, no global backend).

Input is report.display_frame rows of one machine/device/dtype; each function writes one PNG.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

MARKERS = "osD^v<>pPhX*"
LOG_BARS_SPAN = 30.0
BASELINE_STYLE = {"baseline:copy": ("#222222", "--"), "baseline:rng32": ("#777777", ":")}


def _size_formatter() -> FuncFormatter:
    from suite.report.units import size_label

    return FuncFormatter(lambda x, _pos: size_label(int(round(x))) if x >= 1 else "")


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    FigureCanvasAgg(fig)
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)
    return path


def _api_styles(labels: list[str]) -> dict[str, tuple[object, str, str]]:
    """(color, marker, linestyle) per label: one color and marker per API, solid for eager and
    dash-dot for compiled modes ("api [mode]"), so an API's eager and graph lines pair up visually."""
    from matplotlib import colormaps

    bases = sorted({label.split(" [", 1)[0] for label in labels})
    cmap = colormaps["tab10" if len(bases) <= 10 else "tab20"]
    base_style = {b: (cmap(i % cmap.N), MARKERS[i % len(MARKERS)]) for i, b in enumerate(bases)}
    return {label: (*base_style[label.split(" [", 1)[0]], "-." if " [" in label else "-") for label in labels}


MAX_LINES = 8  # lines per panel, baselines included: beyond that colours repeat and lines cannot be told apart


def panels(apis: "pd.DataFrame", n_baselines: int) -> list[tuple[str, list[str]]]:
    """(panel title, API labels) per panel: one per backend; a backend with more lines than fit (TensorFlow's
    eager and tf.function modes: 12) is split into its eager and compiled modes, then into chunks."""
    room = max(1, MAX_LINES - n_baselines)
    out: list[tuple[str, list[str]]] = []
    for backend in sorted(apis["backend"].unique()):
        labels = sorted(apis[apis["backend"] == backend]["label"].unique())
        if len(labels) <= room:
            out.append((backend, labels))
            continue
        modes: dict[str, list[str]] = {}
        for label in labels:
            modes.setdefault(label.split(" [", 1)[1].rstrip("]") if " [" in label else "eager", []).append(label)
        for mode, members in sorted(modes.items(), key=lambda kv: (kv[0] != "eager", kv[0])):
            chunks = [members[i:i + room] for i in range(0, len(members), room)]
            for i, chunk in enumerate(chunks):
                out.append((f"{backend} · {mode}" + (f" ({i + 1}/{len(chunks)})" if len(chunks) > 1 else ""), chunk))
    return out


def throughput_plot(sub: "pd.DataFrame", path: Path, *, title: str) -> Path:
    """Throughput vs size, one line per API, log-log; one panel per backend (shared axes; split by mode
    where a backend has more than MAX_LINES lines with the baselines), the baselines drawn in every panel,
    ticks and markers only at the measured sizes. GB/s when bytes are known, else elements/s."""
    use_gbps = bool(sub["gbps"].notna().all())
    column, ylabel = ("gbps", "GB/s (useful traffic)") if use_gbps else ("elems_per_s", "elements / s")
    apis = sub[~sub["is_baseline"]]
    baselines = sub[sub["is_baseline"]]
    layout = panels(apis, baselines["label"].nunique())
    sizes = sorted(int(n) for n in sub["numel"].unique())
    fig = Figure(figsize=(11, 0.8 + 2.9 * len(layout)), layout="constrained")
    axes = fig.subplots(len(layout), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for ax, (panel, labels) in zip(axes, layout):
        mine = apis[apis["label"].isin(labels)]
        styles = _api_styles(labels)
        for label, (color, marker, style) in styles.items():
            line = mine[mine["label"] == label].sort_values("numel")
            ax.plot(line["numel"], line[column], style, marker=marker, color=color, label=label, linewidth=1.5,
                    markersize=5)
        for label in sorted(baselines["label"].unique()):
            line = baselines[baselines["label"] == label].sort_values("numel")
            color, style = BASELINE_STYLE.get(label.split(" ")[0], ("#999999", "--"))
            # the machine's copy and RNG limits in GB/s (their own traffic), the same lines on both directions' plots
            ax.plot(line["numel"], line[column], style, color=color, label=label, linewidth=1.4)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator(sizes))  # ticks only where something was measured
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(_size_formatter())
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel(f"{ylabel}, log", fontsize=9)
        ax.set_title(panel, fontsize=9, loc="left")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7.5, frameon=False)
    axes[-1].set_xlabel("elements per tensor (log)")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def bar_plot(sub: "pd.DataFrame", path: Path, *, title: str) -> Path:
    """Median time per step of every API at one size: forward and forward+backward bars side by side,
    with the baselines as vertical reference lines. Linear time axis (bar lengths stay honest) unless
    the times span more than LOG_BARS_SPAN, then log."""
    apis = sub[~sub["is_baseline"]]
    fwd = apis[apis["direction"] == "forward"].set_index("label")["median_s"]
    fb = apis[apis["direction"] == "forward_backward"].set_index("label")["median_s"]
    labels = sorted(set(fwd.index) | set(fb.index), key=lambda l: (fwd.get(l, math.inf), l), reverse=True)
    fig = Figure(figsize=(9, 1.2 + 0.42 * max(len(labels), 1)))
    ax = fig.add_subplot(1, 1, 1)
    h = 0.4
    ys = list(range(len(labels)))
    for offset, series, color, name in ((h / 2, fwd, "#4C72B0", "forward"), (-h / 2, fb, "#DD8452", "forward+backward")):
        values = [series.get(l, math.nan) * 1e3 for l in labels]
        bars = ax.barh([y + offset for y in ys], values, height=h, color=color, label=name)
        for bar, v in zip(bars, values):
            if math.isfinite(v):
                ax.annotate(f"{v:.3g}", (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(3, 0),
                            textcoords="offset points", va="center", fontsize=7)
    for r in sub[sub["is_baseline"]].itertuples():
        color, style = BASELINE_STYLE.get(r.label.split(" ")[0], ("#999999", "--"))
        ax.axvline(r.median_s * 1e3, color=color, linestyle=style, linewidth=1.3,
                   label=f"{r.label} {r.median_s * 1e3:.3g} ms")
    ax.set_yticks(ys, labels, fontsize=8)
    times = sub["median_s"].dropna()
    log = bool(len(times)) and times.max() / times.min() > LOG_BARS_SPAN
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("median time per step, ms" + (" (log)" if log else ""))
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", which="both", alpha=0.25)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _save(fig, path)


RATIO_NAMES = {"x_copy": "× copy (time ÷ time of a plain copy of the same array)",
               "x_best": "× best (time ÷ time of the fastest conforming API)"}


FLAG_COLOURS = {"failed": "#c0392b", "known divergence": "#b9770e", "not certified": "#777777"}
"""Tick-label colour of an API whose verify verdict is not "certified" (the chip colours' darker kin)."""


def ratio_plot(at: "pd.DataFrame", path: Path, *, title: str, column: str = "x_copy",
               verdicts: "dict[str, str] | None" = None) -> Path:
    """The page's speed chart: every API at one size, forward and forward+backward side by side, as a ratio
    (× copy: 1 = as fast as copying the array; × best: 1 = the fastest conforming API), fastest forward first.
    Vertical bars and a log ratio axis, so that 40 APIs fit the width of the page in one glance. ``verdicts``
    (API id -> verify verdict): the names of APIs that are not certified are coloured (fast is not right)."""
    apis = at[~at["is_baseline"]]
    fwd = apis[apis["direction"] == "forward"].set_index("label")[column]
    fb = apis[apis["direction"] == "forward_backward"].set_index("label")[column]
    labels = sorted(set(fwd.index) | set(fb.index), key=lambda l: (fwd.get(l, math.inf), l))
    fig = Figure(figsize=(max(7.0, 1.2 + 0.27 * len(labels)), 4.6), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    w = 0.4
    xs = list(range(len(labels)))
    for offset, series, color, name in ((-w / 2, fwd, "#4C72B0", "forward"), (w / 2, fb, "#DD8452", "forward+backward")):
        values = [float(series.get(l, math.nan)) for l in labels]
        ax.bar([x + offset for x in xs], values, width=w, color=color, label=name)
    ax.axhline(1.0, color="#222222", linestyle="--", linewidth=1.0,
               label="1 = copy of the array" if column == "x_copy" else "1 = fastest conforming")
    ax.set_xticks(xs, labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=7.5)
    shown = set()
    for tick, label in zip(ax.get_xticklabels(), labels):
        verdict = (verdicts or {}).get(label.split(" ")[0])
        if verdict in FLAG_COLOURS:
            tick.set_color(FLAG_COLOURS[verdict])
            shown.add(verdict)
    for verdict in sorted(shown):  # legend entries for the label colours in use
        ax.plot([], [], linestyle="none", marker="s", color=FLAG_COLOURS[verdict], label=f"name in this colour: {verdict}")
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y:g}×"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel(f"{RATIO_NAMES.get(column, column).split(' (')[0]}, log (lower is faster)", fontsize=9)
    ax.grid(True, axis="y", which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10, loc="left")
    return _save(fig, path)
