"""`dropbench experiment ensemble|train`: dropout theory, measured (see results/experiments/README.md)."""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from suite.commands.options import DefaultsFormatter, positive_int
from suite.report import table
from suite.runtime.loader import UsageError

NAME = "experiment"
HELP = "measure dropout's theory: ensemble vs. weight scaling, and the textbook MLP in every framework"
COMMITTED_OUT = "results/experiments"  # the committed results; written only when named with --out
# (epochs, seeds): digits has 1348 training images (6 batches of 256 per epoch) and trains in ~1 minute
# for all four frameworks; Fashion-MNIST has 235 batches per epoch, so fewer epochs and seeds by default.
DIGITS_DEFAULTS = (30, 16)
IDX_DEFAULTS = (10, 7)  # 7 seeds: the fewest that give 4 frameworks a dropout-on verdict (parity.min_seeds)


# -- argument types (all checked before any work or framework import) ------------------------------
def _number_list(kind: Callable[[str], float], low: float, high: float, *, closed_high: bool = True,
                 count: int | None = None) -> Callable[[str], list]:
    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",")]
        if count is not None and len(items) != count:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated values, got {text!r}")
        values = []
        for item in items:
            try:
                v = kind(item)
            except ValueError:
                raise argparse.ArgumentTypeError(f"not a valid {kind.__name__}: {item!r}") from None
            if not (low <= v < high or (closed_high and v == high)):
                raise argparse.ArgumentTypeError(f"{item!r} outside [{low:g}, {high:g}{']' if closed_high else ')'}")
            values.append(v)
        return values
    return parse


def _out_dir(text: str) -> Path:
    path = Path(text)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot write into {text!r}: {exc.strerror or exc}") from None
    return path


def _data_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"not a directory: {text!r}")
    return path


def _activations(text: str) -> list[str]:
    from suite.experiments.ensemble import ACTIVATIONS

    names = [t.strip() for t in text.split(",")]
    for name in names:
        if name not in ACTIVATIONS:
            raise argparse.ArgumentTypeError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")
    return names


def _framework(text: str) -> str:
    from suite.experiments.train import frameworks

    FRAMEWORKS = frameworks()

    if text in FRAMEWORKS or ("." in text and all(part.isidentifier() for part in text.split("."))):
        return text
    raise argparse.ArgumentTypeError(f"unknown framework {text!r}; choose from {', '.join(FRAMEWORKS)} or give a module path")


OUT_HELP = ("output folder (default: a new results/<machine-id>/<timestamp>-{kind}/, so committed results are never "
            f"overwritten; give --out {COMMITTED_OUT} to rewrite the committed ones on purpose)")


def fresh_out_dir(kind: str) -> Path:
    """A new folder for one experiment run, like `dropbench run`'s: results/<machine-id>/<timestamp>-<kind>/."""
    from suite.runtime.machine import machine_id  # noqa: PLC0415 - reads /proc, only when no --out is given

    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = Path("results") / machine_id()
    for n in range(1, 1000):  # two runs within one second get -2, -3, ...: never into an existing folder
        target = base / (f"{stamp}-{kind}" if n == 1 else f"{stamp}-{kind}-{n}")
        try:
            target.mkdir(parents=True, exist_ok=False)
            return target
        except FileExistsError:
            continue
    raise UsageError(f"cannot find a fresh folder under {base}; give --out")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="experiment", required=True, metavar="{ensemble,train}")
    ens = sub.add_parser("ensemble", formatter_class=DefaultsFormatter,
                         help="exact mean over all 2^n masks vs. Monte Carlo vs. the weight-scaling rule",
                         description="exact mean over all 2^n masks vs. Monte Carlo vs. the weight-scaling rule")
    ens.add_argument("--activations", type=_activations, default="linear,relu,sigmoid,tanh", metavar="LIST",
                     help="activations of the small networks (comma-separated)")
    ens.add_argument("--widths", type=_number_list(int, 1, 16), default="2,4,8,12,16", metavar="LIST",
                     help="units in the dropped layer (all 2^n masks are enumerated; n <= 16)")
    ens.add_argument("--rates", type=_number_list(float, 0.0, 1.0, closed_high=False), default="0.1,0.2,0.3,0.5,0.7,0.8,0.9",
                     metavar="LIST", help="dropout rates of the weight-scaling gap table, each in [0, 1)")
    ens.add_argument("--nets", type=positive_int, default=30, help="random networks per (activation, width, rate)")
    ens.add_argument("--mc-width", type=_number_list(int, 1, 16, count=1), default="12", metavar="N",
                     help="dropped units of the Monte Carlo comparison's networks")
    ens.add_argument("--mc-rate", type=_number_list(float, 0.0, 1.0, closed_high=False, count=1), default="0.5", metavar="P",
                     help="dropout rate of the Monte Carlo comparison, in (0, 1)")
    ens.add_argument("--ks", type=_number_list(int, 1, 1 << 20), default="1,2,4,8,16,32,64,128,256,512,1024,2048,4096",
                     metavar="LIST", help="Monte Carlo sample sizes (masks averaged)")
    ens.add_argument("--mc-nets", type=positive_int, default=10, help="random networks of the Monte Carlo comparison")
    ens.add_argument("--repeats", type=positive_int, default=200, help="Monte Carlo repeats per K and network")
    ens.add_argument("--seed", type=int, default=0, help="seed of the random networks (the Monte Carlo part uses seed+1)")
    ens.add_argument("--out", type=_out_dir, default=None, metavar="DIR", help=OUT_HELP.format(kind="ensemble"))
    ens.add_argument("--no-plot", action="store_true", help="write tables and JSON only, no PNG")

    tr = sub.add_parser("train", formatter_class=DefaultsFormatter,
                        help="the textbook dropout MLP in every framework, same weights and batches",
                        description="the textbook dropout MLP in every framework, same weights and batches")
    tr.add_argument("--framework", type=_framework, action="append", default=[], metavar="NAME",
                    help="a built-in backend that declares mlp_module, or a module path (repeatable; default: all)")
    tr.add_argument("--data-dir", type=_data_dir, default=None, metavar="DIR",
                    help="folder with the four Fashion-MNIST IDX files (.gz or not); default: scikit-learn's 8x8 digits")
    tr.add_argument("--epochs", type=positive_int, default=None,
                    help=f"default {DIGITS_DEFAULTS[0]} on digits (6 SGD steps per epoch), {IDX_DEFAULTS[0]} with --data-dir")
    tr.add_argument("--seeds", type=positive_int, default=None,
                    help=f"dropout-on runs per framework; default {DIGITS_DEFAULTS[1]} on digits, {IDX_DEFAULTS[1]} with --data-dir")
    tr.add_argument("--rates", type=_number_list(float, 0.0, 1.0, closed_high=False, count=2), default="0.2,0.5",
                    metavar="P1,P2", help="dropout after hidden layer 1 and 2")
    tr.add_argument("--hidden", type=_number_list(int, 1, 1 << 16, count=2), default="256,256", metavar="H1,H2",
                    help="units of the two hidden layers")
    tr.add_argument("--lr", type=_number_list(float, 0.0, 100.0, count=1), default="0.5", metavar="LR",
                    help="SGD learning rate")
    tr.add_argument("--batch-size", type=positive_int, default=256, help="SGD minibatch size")
    tr.add_argument("--timeout", type=_number_list(float, 1.0, 1e6, count=1), default="1800", metavar="S",
                    help="per-framework worker timeout")
    tr.add_argument("--parallel", type=positive_int, default=1, help="frameworks trained at once (timings assume 1)")
    tr.add_argument("--check", action="store_true", help="exit 1 when a parity check fails")
    tr.add_argument("--out", type=_out_dir, default=None, metavar="DIR", help=OUT_HELP.format(kind="train"))
    tr.add_argument("--no-plot", action="store_true", help="write tables and JSON only, no PNG")


def _load() -> float | None:
    """1-minute load average: timings taken while other work ran on the machine are flagged by it."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _run_ensemble(args: argparse.Namespace) -> int:
    from suite.experiments.ensemble import GapSettings, McSettings, gap_rows, mc_rows
    from suite.experiments.outputs import write_ensemble
    from suite.runtime.machine import machine_facts, machine_id

    gap = GapSettings(tuple(args.activations), tuple(args.widths), tuple(args.rates), args.nets, args.seed)
    nonlinear = tuple(a for a in args.activations if a != "linear")
    mc = McSettings(nonlinear, args.mc_width[0], args.mc_rate[0], tuple(args.ks), args.mc_nets, args.repeats, args.seed + 1)
    if args.mc_rate[0] == 0.0:
        raise UsageError("--mc-rate 0 has no mask noise to average; give a rate in (0, 1)")
    print(f"ensemble: {len(gap.activations)} activations x {len(gap.widths)} widths x {len(gap.rates)} rates x 2 schemes, "
          f"{gap.nets} networks each (exact enumeration up to 2^{max(gap.widths)} masks)", flush=True)
    t0, load_before = time.perf_counter(), _load()
    gaps = gap_rows(gap)
    mcs = mc_rows(mc) if nonlinear else []
    facts = machine_facts()
    payload = {"schema": 1, "kind": "experiment-ensemble", "machine_id": machine_id(facts), "machine_facts": facts,
               "settings": {"gap": gap.__dict__, "mc": mc.__dict__}, "elapsed_s": time.perf_counter() - t0,
               "load_average_1m": {"before": load_before, "after": _load()},
               "gap_rows": gaps, "mc_rows": mcs}
    mid = 8 if 8 in gap.widths else gap.widths[len(gap.widths) // 2]
    from suite.experiments.ensemble import gap_table

    for scheme in ("inverted", "vanilla"):
        headers, body = gap_table(gaps, mid, scheme)
        print(f"\n{scheme}: median |rule - exact| / sd at n={mid}")
        print(table.render(headers, body))
    for path in write_ensemble(args.out or fresh_out_dir("ensemble"), payload, plot=not args.no_plot):
        print(f"wrote {path}")
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from suite.experiments.data import DatasetError, load_dataset
    from suite.experiments.outputs import write_train
    from suite.experiments.parity import min_seeds
    from suite.experiments.train import SUMMARY_HEADERS, TrainSettings, frameworks, run_training, summary_rows, underpowered_reason
    from suite.runtime.machine import machine_facts, machine_id

    try:
        dataset = load_dataset(args.data_dir)
    except DatasetError as exc:
        raise UsageError(str(exc)) from None
    default_epochs, default_seeds = IDX_DEFAULTS if args.data_dir else DIGITS_DEFAULTS
    settings = TrainSettings(args.epochs or default_epochs, args.seeds or default_seeds, tuple(args.rates), args.lr[0],
                             args.batch_size, tuple(args.hidden))
    frameworks = list(dict.fromkeys(args.framework)) or list(frameworks())
    d = dataset.describe()
    print(f"train: {d['name']} ({d['n_train']} train / {d['n_test']} test), {', '.join(frameworks)}; "
          f"{settings.epochs} epochs, {settings.seeds} seeds x (dropout off, dropout on)", flush=True)
    if len(frameworks) >= 2 and settings.seeds < min_seeds(len(frameworks)):
        reason = underpowered_reason(len(frameworks), settings.seeds, min_seeds(len(frameworks)))
        print(f"note: no dropout-on verdict will be given: {reason}",
              flush=True)
    t0, load_before = time.perf_counter(), _load()
    report = run_training(dataset, settings, frameworks, timeout=args.timeout[0], parallel=args.parallel)
    facts = machine_facts()
    payload = {**report.to_json(), "machine_id": machine_id(facts), "machine_facts": facts,
               "elapsed_s": time.perf_counter() - t0, "load_average_1m": {"before": load_before, "after": _load()}}
    summary = summary_rows(report)
    print(table.render(SUMMARY_HEADERS, summary, max_width=70))
    off, on = payload["parity"]["dropout_off"], payload["parity"]["dropout_on"]
    failed = False
    if off.get("checked"):
        for name, v in off["frameworks"].items():
            ok = v["passed"]
            failed |= not ok
            print(f"dropout off, {name} vs numpy: max |Δloss|/loss {v['max_rel_diff']:.2g} "
                  + ("(within rtol {:g})".format(off["rtol"]) if ok
                     else f"(above rtol {off['rtol']:g} from epoch {v['first_epoch_above_rtol']})"))
        env = payload.get("rounding_envelope")
        if env:
            print(f"rounding alone (numpy float32 vs float64): max {max(env['rel_diff_float32_vs_float64']):.2g}")
    else:
        print(f"dropout off: not checked ({off.get('reason')})")
    if on.get("checked"):
        failed |= not on["passed"]
        print(f"dropout on: F={on['f']:.3g} (critical {on['f_critical']:.3g} at alpha {on['alpha']:g}), "
              f"band ±{on['band']:.4f} (power {on['power']:.3g} for one framework off by {on['effect_sd']:g} residual sds): "
              f"{'PASS' if on['passed'] else 'FAIL'}")
    else:
        print(f"dropout on: not checked ({on.get('reason')})")
    for path in write_train(args.out or fresh_out_dir("train"), payload, SUMMARY_HEADERS, summary, plot=not args.no_plot):
        print(f"wrote {path}")
    return 1 if (failed and args.check) else 0


def run(args: argparse.Namespace) -> int:
    return _run_ensemble(args) if args.experiment == "ensemble" else _run_train(args)
