"""Result files of the experiments: JSON (schema 1), CSV, markdown tables; all written atomically."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable, Sequence

from suite.runtime.jsonio import atomic_write_json, atomic_write_text


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


# -- ensemble ------------------------------------------------------------------------------------
def _break_even(k: float) -> str:
    """K beyond ~1e12 only says the gap is rounding noise (linear nets)."""
    return "∞" if k > 1e12 else f"{k:.3g}"


def ensemble_markdown(payload: dict[str, Any]) -> str:
    from suite.experiments.ensemble import gap_table

    gap, mc = payload["gap_rows"], payload["mc_rows"]
    widths = sorted({r["width"] for r in gap})
    mid = 8 if 8 in widths else widths[len(widths) // 2]
    out = ["# Dropout as an ensemble: weight scaling vs. the exact mean over all masks\n",
           f"Machine `{payload['machine_id']}`; {payload['settings']['gap']['nets']} random networks per cell; "
           "gap = median over networks of |rule − exact| / sd, where sd is the spread of the output over masks "
           "(so a Monte Carlo average of K masks has error ≈ sd/√K).\n"]
    for scheme in ("inverted", "vanilla"):
        headers, body = gap_table(gap, mid, scheme)
        out += [f"\n## {scheme}: median |gap| / sd at n = {mid} dropped units\n\n", markdown_table(headers, body)]
    rates = sorted({r["rate"] for r in gap})
    rate = 0.5 if 0.5 in rates else rates[len(rates) // 2]
    acts = list(dict.fromkeys(r["activation"] for r in gap))
    cell = {(r["activation"], r["width"], r["scheme"]): r for r in gap if r["rate"] == rate}
    out += [f"\n## inverted, rate {rate:g}: gap vs width (median |gap|/sd; median break-even K in brackets)\n\n",
            markdown_table(["activation \\ n"] + [str(w) for w in widths],
                           [[a] + [f"{cell[(a, w, 'inverted')]['rel_gap_median']:.2g} "
                                   f"[{_break_even(cell[(a, w, 'inverted')]['k_break_even'])}]" for w in widths] for a in acts])]
    lin = [r for r in gap if r["activation"] == "linear"]
    if lin:
        worst = max(lin, key=lambda r: r["abs_gap_max"] / r["rounding_bound_max"])
        out.append(f"\nLinear networks: largest |rule − exact| = {max(r['abs_gap_max'] for r in lin):.3g} over all cells; "
                   f"worst ratio to the float64 rounding bound = {worst['abs_gap_max'] / worst['rounding_bound_max']:.2g} "
                   "(the rule is the ensemble mean to rounding).\n")
    if mc:
        ks = sorted({r["k"] for r in mc})
        shown = [k for k in ks if k in (1, 4, 16, 64, 256, 1024, 4096)] or ks
        keyed = {(r["activation"], r["scheme"], r["k"]): r for r in mc}
        pairs = list(dict.fromkeys((r["activation"], r["scheme"]) for r in mc))
        r0 = mc[0]
        out += [f"\n## Monte Carlo RMS error / sd vs K (n = {r0['width']}, rate {r0['rate']:g}, "
                f"{r0['nets']} networks x {r0['repeats']} repeats) and the rule's RMS error / sd\n\n",
                markdown_table(["activation", "scheme"] + [f"K={k}" for k in shown] + ["rule"],
                               [[a, s] + [f"{keyed[(a, s, k)]['mc_rms_rel']:.3g}" for k in shown]
                                + [f"{keyed[(a, s, shown[0])]['rule_rel']:.3g}"] for a, s in pairs])]
    return "".join(out)


def write_ensemble(out: Path, payload: dict[str, Any], plot: bool = True) -> list[Path]:
    written = [atomic_write_json(out / "ensemble.json", payload),
               write_csv(out / "ensemble_gap.csv", payload["gap_rows"]),
               write_csv(out / "ensemble_mc.csv", payload["mc_rows"]),
               atomic_write_text(out / "ensemble.md", ensemble_markdown(payload))]
    if plot:
        from suite.experiments.plots import plot_gap, plot_mc

        written += [plot_gap(payload["gap_rows"], out / "ensemble_gap.png")]
        if payload["mc_rows"]:
            written += [plot_mc(payload["mc_rows"], out / "ensemble_mc.png")]
    return written


# -- training ------------------------------------------------------------------------------------
def epoch_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for fw in report["frameworks"]:
        for run in fw.get("runs", []):
            for e in run["epochs"]:
                rows.append({"framework": fw["framework"], "run": run["label"], "seed": run["seed"],
                             "rate1": run["rates"][0], "rate2": run["rates"][1], **e})
    return rows


def train_markdown(report: dict[str, Any], summary_headers: list[str], summary: list[list[str]]) -> str:
    ds, st = report["dataset"], report["settings"]
    par_off, par_on = report["parity"]["dropout_off"], report["parity"]["dropout_on"]
    out = ["# Textbook dropout MLP across frameworks\n\n",
           f"Machine `{report['machine_id']}`. Data: {ds['name']} ({ds['source']}; {ds['n_train']} train / {ds['n_test']} test). "
           f"MLP {ds['n_features']}-{st['hidden'][0]}-{st['hidden'][1]}-{ds['n_classes']}, ReLU, dropout "
           f"{st['rates'][0]:g} and {st['rates'][1]:g} after the hidden layers, softmax cross-entropy (batch mean), "
           f"plain SGD lr {st['lr']:g}, batch {st['batch_size']}, {st['epochs']} epochs; {st['seeds']} seeds, each a dropout-off "
           "and a dropout-on run from the seed's initial weights and batch order (shared by all frameworks; the seed also "
           "seeds each framework's dropout RNG). Accuracies are final-epoch test accuracies in eval mode; "
           "times exclude epoch 1 (graph tracing, warm-up).\n\n",
           markdown_table(summary_headers, summary)]
    versions = [f"{fw['framework']}: " + ", ".join(f"{k} {v}" for k, v in fw.get("versions", {}).items())
                for fw in report["frameworks"] if fw["status"] == "ok"]
    out.append("\nVersions: " + "; ".join(versions) + ".\n")
    if par_off.get("checked"):
        epochs = len(par_off["spread_per_epoch"])
        env = report.get("rounding_envelope") or {}
        rows = [[name] + [f"{v:.1e}" for v in d["rel_diff_per_epoch"]] for name, d in par_off["frameworks"].items()]
        if env:
            rows.append(["numpy f32 vs f64"] + [f"{v:.1e}" for v in env["rel_diff_float32_vs_float64"]])
        out += [f"\n## Dropout off, seed 0: |train loss − numpy float32| / numpy float32, per epoch (rtol {par_off['rtol']:g})\n\n",
                markdown_table(["framework"] + [str(i + 1) for i in range(epochs)], rows)]
        for name, d in par_off["frameworks"].items():
            verdict = "within rtol at every epoch" if d["passed"] else f"above rtol from epoch {d['first_epoch_above_rtol']}"
            out.append(f"- {name}: {verdict} (max {d['max_rel_diff']:.2g})\n")
        if env:
            first = par_off.get("rounding_first_epoch_above_rtol")
            out.append("- rounding alone (the NumPy MLP in float32 vs float64): "
                       + (f"above rtol from epoch {first}" if first else "within rtol at every epoch")
                       + f" (max {max(env['rel_diff_float32_vs_float64']):.2g})\n")
    else:
        out.append(f"\nDropout-off parity not checked: {par_off.get('reason')}\n")
    if par_on.get("checked"):
        out += [f"\n## Dropout on: final test accuracy, randomized-block ANOVA over {st['seeds']} seeds\n\n",
                markdown_table(["framework", "mean", "sd"],
                               [[n, f"{m:.4f}", f"{s:.4f}"] for n, m, s in zip(par_on["frameworks"], par_on["means"], par_on["sds"])]),
                f"\nF = {par_on['f']:.3g} on ({par_on['df_frameworks']}, {par_on['df_residual']}) df, p = {par_on['p_value']:.3g}; "
                f"critical F at false-fail probability {par_on['alpha']:g} = {par_on['f_critical']:.3g}; residual sd "
                f"{par_on['residual_sd']:.4f}, so one framework's mean may differ from the others' by up to "
                f"{par_on['band']:.4f} before the check fails: {'PASS' if par_on['passed'] else 'FAIL'}."
                + (f" Power {par_on['power']:.3g} to catch one framework off by {par_on['effect_sd']:g} residual sds"
                   f" (a verdict needs >= {par_on['min_seeds']} seeds).\n" if "power" in par_on else "\n")]
    else:
        out.append(f"\nDropout-on parity not checked: {par_on.get('reason')}\n")
    return "".join(out)


def write_train(out: Path, report: dict[str, Any], summary_headers: list[str], summary: list[list[str]],
                plot: bool = True) -> list[Path]:
    written = [atomic_write_json(out / "train.json", report),
               write_csv(out / "train_epochs.csv", epoch_rows(report)),
               atomic_write_text(out / "train.md", train_markdown(report, summary_headers, summary))]
    if plot:
        from suite.experiments.plots import plot_training

        written.append(plot_training(report, out / "train.png"))
    return written


