"""PNG plots of the experiments (matplotlib, imported lazily, headless Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

COLORS = {"linear": "tab:gray", "relu": "tab:red", "sigmoid": "tab:blue", "tanh": "tab:green"}
FRAMEWORK_PALETTE = ("tab:blue", "tab:red", "tab:orange", "tab:green", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def framework_color(name: str) -> str:
    """One colour per framework, by its place in the registry (stable across plots and runs)."""
    from suite.experiments.train import frameworks  # noqa: PLC0415

    names = list(frameworks())
    return FRAMEWORK_PALETTE[names.index(name) % len(FRAMEWORK_PALETTE)] if name in names else "tab:purple"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Write next to the target and rename, so a killed run never leaves half a PNG."""
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)
    return path


def plot_gap(rows: Iterable[dict[str, Any]], path: Path) -> Path:
    """|rule - exact| / sd vs rate, one panel per activation, one line per width (solid inverted, dashed vanilla)."""
    plt = _pyplot()
    rows = list(rows)
    acts = list(dict.fromkeys(r["activation"] for r in rows))
    widths = sorted({r["width"] for r in rows})
    # own y axis per panel: the linear network's gap is rounding (1e-16), the others' 1e-3..1, and one
    # shared axis over both flattens the nonlinear panels; constrained layout keeps the title off the panels
    fig, axes = plt.subplots(1, len(acts), figsize=(4.2 * len(acts), 3.9), sharey=False, squeeze=False,
                             layout="constrained")
    cmap = plt.get_cmap("viridis")
    for ax, act in zip(axes[0], acts):
        for i, width in enumerate(widths):
            color = cmap(i / max(1, len(widths) - 1))
            for scheme, style in (("inverted", "-"), ("vanilla", "--")):
                sel = sorted((r for r in rows if r["activation"] == act and r["width"] == width and r["scheme"] == scheme),
                             key=lambda r: r["rate"])
                ys = np.maximum([r["rel_gap_median"] for r in sel], 1e-17)
                ax.plot([r["rate"] for r in sel], ys, style, color=color, marker="o", ms=3,
                        label=f"n={width}" if scheme == "inverted" else None)
        ax.set_yscale("log")
        ax.set_title(act + (" (rounding only: exact)" if act == "linear" else ""))
        ax.set_xlabel("dropout rate")
        ax.set_xticks(sorted({r["rate"] for r in rows if r["activation"] == act}))  # the measured rates
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("median |rule − exact mean| / sd over masks")
    axes[0][0].legend(title="units dropped\n(solid inverted,\ndashed vanilla)", fontsize=7, title_fontsize=7)
    fig.suptitle("Weight-scaling rule vs. exact ensemble mean over all 2^n masks")
    return _save(fig, path)


def plot_mc(rows: Iterable[dict[str, Any]], path: Path) -> Path:
    """Monte Carlo RMS error vs K (per activation) with the rule's error as horizontal lines."""
    plt = _pyplot()
    rows = list(rows)
    schemes = list(dict.fromkeys(r["scheme"] for r in rows))
    fig, axes = plt.subplots(1, len(schemes), figsize=(5.5 * len(schemes), 4), sharey=True, squeeze=False)
    for ax, scheme in zip(axes[0], schemes):
        sel = [r for r in rows if r["scheme"] == scheme]
        ks = sorted({r["k"] for r in sel})
        ax.plot(ks, [1 / np.sqrt(k) for k in ks], ":", color="black", label="1/√K (theory)")
        for act in dict.fromkeys(r["activation"] for r in sel):
            mine = sorted((r for r in sel if r["activation"] == act), key=lambda r: r["k"])
            color = COLORS.get(act)
            ax.plot([r["k"] for r in mine], [r["mc_rms_rel"] for r in mine], "o-", ms=3, color=color, label=f"{act}: Monte Carlo")
            ax.axhline(mine[0]["rule_rel"], color=color, ls="--", label=f"{act}: weight scaling")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        r0 = sel[0]
        ax.set_title(f"{scheme}, n={r0['width']} units, rate {r0['rate']:g}")
        ax.set_xlabel("K sampled masks")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("RMS error of the estimate / sd over masks")
    axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def plot_training(report: dict[str, Any], path: Path) -> Path:
    """Train loss and test accuracy per epoch (dropout on: mean over seeds; off: dashed), loss parity, epoch time."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    (ax_loss, ax_acc), (ax_par, ax_time) = axes
    names, times = [], []
    for fw in report["frameworks"]:
        if fw["status"] != "ok":
            continue
        name, color = fw["framework"], framework_color(fw["framework"])
        on = [r for r in fw["runs"] if r["label"].startswith("on-") and r["epochs"]]
        off = [r for r in fw["runs"] if r["label"].startswith("off-") and r["epochs"]]
        if on:
            epochs = [e["epoch"] for e in on[0]["epochs"]]
            loss = np.mean([[e["train_loss"] for e in r["epochs"]] for r in on], axis=0)
            acc = np.array([[e["test_acc"] for e in r["epochs"]] for r in on])
            ax_loss.plot(epochs, loss, "-", color=color, label=f"{name}, dropout on (mean of {len(on)})")
            ax_acc.plot(epochs, acc.mean(axis=0), "-", color=color, label=f"{name}, dropout on")
            ax_acc.fill_between(epochs, acc.min(axis=0), acc.max(axis=0), color=color, alpha=0.12)
        if off:
            epochs = [e["epoch"] for e in off[0]["epochs"]]
            same = [r for r in off if len(r["epochs"]) == len(epochs)]
            ax_loss.plot(epochs, np.mean([[e["train_loss"] for e in r["epochs"]] for r in same], axis=0), "--", color=color,
                         label=f"{name}, dropout off")
            ax_acc.plot(epochs, np.mean([[e["test_acc"] for e in r["epochs"]] for r in same], axis=0), "--", color=color,
                        label=f"{name}, dropout off")
        epoch_times = [e["train_s"] for r in fw["runs"] for e in r["epochs"][1:]]
        if epoch_times:
            names.append(name)
            times.append(1e3 * float(np.median(epoch_times)))
    off_parity = report["parity"]["dropout_off"]
    if off_parity.get("checked"):
        for name, v in off_parity["frameworks"].items():
            rel = np.maximum(v["rel_diff_per_epoch"], 1e-12)
            ax_par.plot(range(1, len(rel) + 1), rel, "o-", ms=3, color=framework_color(name), label=f"{name} vs numpy float32 (seed 0)")
        env = report.get("rounding_envelope")
        if env:
            rel = np.maximum(env["rel_diff_float32_vs_float64"], 1e-12)
            ax_par.plot(range(1, len(rel) + 1), rel, "k:", label="numpy float32 vs float64 (rounding alone)")
        ax_par.axhline(off_parity["rtol"], color="gray", lw=0.8, label=f"rtol {off_parity['rtol']:g}")
        ax_par.set_yscale("log")
    ax_loss.set_ylabel("train loss (epoch mean, mean over seeds)")
    ax_acc.set_ylabel("test accuracy (eval; band = seeds' min–max)")
    ax_par.set_ylabel("dropout off: |loss − numpy| / numpy")
    for ax in (ax_loss, ax_acc, ax_par):
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    ax_time.bar(names, times, color=[framework_color(n) for n in names])
    ax_time.set_ylabel("ms per training epoch (median, excl. epoch 1)")
    ds, st = report["dataset"], report["settings"]
    fig.suptitle(f"{ds['name']}: {ds['n_features']}-{st['hidden'][0]}-{st['hidden'][1]}-{ds['n_classes']} MLP, "
                 f"dropout {st['rates'][0]:g}/{st['rates'][1]:g}, SGD lr {st['lr']:g}, batch {st['batch_size']}")
    return _save(fig, path)
