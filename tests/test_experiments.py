"""Experiments: dropout as an ensemble (exact enumeration) and the textbook MLP across frameworks.

Statistical assertions here use fixed seeds and bounds from a stated false-fail probability
(<= 1e-6 for each test); the rounding assertion uses a deterministic a-priori float64 bound.
"""
from __future__ import annotations

import copy
import dataclasses
import gzip
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.numpy_mlp import NumpyMLP
from suite.experiments import ensemble as ens
from suite.experiments.data import Dataset, DatasetError, load_digits_dataset, load_idx_dataset, parse_idx, read_idx
from suite.experiments.mlp_common import RunSpec, batches, train_run
from suite.experiments.parity import ALPHA, block_anova, f_critical, f_sf, min_seeds, power_one_off
from suite.experiments.train import LOSS_PARITY_RTOL, TrainSettings, load_problem, run_training, write_bundle
from suite.runtime.jsonio import read_result
from suite.verify.stats import hoeffding_halfwidth


# -- ensemble: the weight-scaling rule vs. the exact mean over every mask --------------------------
def _nets(act: str, width: int, count: int, seed: int = 0) -> list[ens.Net]:
    rng = np.random.default_rng([seed, width])
    return [ens.random_net(rng, act, width) for _ in range(count)]


@pytest.mark.parametrize("scheme", ens.SCHEMES)
@pytest.mark.parametrize("width", [1, 3, 8, 12, 16])
def test_linear_network_rule_equals_exact_ensemble_mean_to_rounding(width: int, scheme: str) -> None:
    """Deterministic: |rule - exact| <= the a-priori float64 forward-error bound (Higham, gamma_N)."""
    masks = ens.all_masks(width)
    for net in _nets("linear", width, 4):
        for rate in (0.1, 0.5, 0.9):
            e = ens.enumerate_net(net, rate, scheme, masks)
            bound = ens.linear_rounding_bound(net, rate, scheme, masks)
            assert abs(e.gap) <= bound, (width, rate, e.gap, bound)
            # the bound is a rounding bound, not a loose tolerance: tiny next to the output's scale
            assert bound <= 1e-9 * max(1.0, abs(e.exact) + e.sd)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
def test_nonlinear_gap_is_far_outside_the_rounding_bound(act: str) -> None:
    """The linear test can fail: the same assertion on a nonlinear net of the same weights is violated."""
    for net in _nets(act, 8, 4, seed=3):
        e = ens.enumerate_net(net, 0.5, "inverted")
        bound = ens.linear_rounding_bound(dataclasses.replace(net, act="linear"), 0.5, "inverted")
        assert abs(e.gap) > 1e3 * bound, (act, e.gap, bound)


def test_single_unit_by_hand() -> None:
    """n = 1: exact = keep*y(kept) + (1-keep)*y(dropped); rule = y(h scaled by keep) (vanilla)."""
    net = _nets("relu", 1, 1, seed=7)[0]
    keep = 0.7
    h = net.hidden()
    y = lambda v: float(net.head(np.array([[v]]))[0])  # noqa: E731
    e = ens.enumerate_net(net, 1 - keep, "vanilla")
    assert e.exact == pytest.approx(keep * y(h[0]) + (1 - keep) * y(0.0), rel=1e-14, abs=1e-15)
    assert e.rule == pytest.approx(y(keep * h[0]), rel=1e-14, abs=1e-15)
    assert e.sd == pytest.approx(math.sqrt(keep * (1 - keep)) * abs(y(h[0]) - y(0.0)), rel=1e-12, abs=1e-15)


def test_inverted_is_vanilla_with_rescaled_weights() -> None:
    """Inverted dropout on W2 is vanilla dropout on W2/keep: same exact mean, rule and spread."""
    for net in _nets("tanh", 6, 3, seed=11):
        for rate in (0.2, 0.6):
            keep = 1 - rate
            inv = ens.enumerate_net(net, rate, "inverted")
            van = ens.enumerate_net(dataclasses.replace(net, w2=net.w2 / keep), rate, "vanilla")
            assert inv.exact == pytest.approx(van.exact, rel=1e-12, abs=1e-14)
            assert inv.rule == pytest.approx(van.rule, rel=1e-12, abs=1e-14)
            assert inv.sd == pytest.approx(van.sd, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("n", [1, 5, 16])
def test_masks_are_every_mask_once_with_probabilities_summing_to_one(n: int) -> None:
    masks = ens.all_masks(n)
    assert masks.shape == (2 ** n, n)
    assert len({row.tobytes() for row in masks}) == 2 ** n
    probs = ens.mask_probabilities(masks, 0.3)
    assert abs(probs.sum() - 1.0) <= (2 ** n + n + 2) * ens.UNIT_ROUNDOFF * 2


def test_all_masks_refuses_more_than_16_units() -> None:
    with pytest.raises(ValueError, match="17"):
        ens.all_masks(17)


def test_monte_carlo_estimates_converge_to_the_exact_mean() -> None:
    """Each MC mean of K masks lies within Hoeffding's bound of the exact mean.

    Outputs lie in [min y, max y] over all masks, so a K-sample mean deviates by >= t with probability
    <= 2 exp(-2 K t^2 / range^2). alpha = 1e-9 per estimate, 3 nets x 2 schemes x 20 estimates = 120
    estimates: false-fail probability <= 1.2e-7.
    """
    rng = np.random.default_rng(2024)
    k = 4000
    for net in _nets("relu", 10, 3, seed=5):
        for scheme in ens.SCHEMES:
            e = ens.enumerate_net(net, 0.5, scheme)
            spread = float(e.outputs.max() - e.outputs.min())
            t = hoeffding_halfwidth(np.full(k, spread), alpha=1e-9) / k
            estimates = ens.monte_carlo_means(e, rng, 10, 0.5, k, repeats=20)
            assert np.all(np.abs(estimates - e.exact) <= t), (np.abs(estimates - e.exact).max(), t)


def test_sampled_mask_indices_map_to_bernoulli_bits() -> None:
    """The index of a sampled mask decodes to the mask's bits; kept fraction inside an exact binomial region."""
    from suite.verify.stats import binomial_interval

    rng = np.random.default_rng(9)
    n, keep, draws = 12, 0.3, 5000
    idx = ens.sample_mask_indices(rng, n, keep, (draws,))
    bits = ens.all_masks(n)[idx]
    lo, hi = binomial_interval(draws * n, keep, alpha=1e-7)
    assert lo <= int(bits.sum()) <= hi


def test_gap_rows_small_sweep() -> None:
    rows = ens.gap_rows(ens.GapSettings(("linear", "relu"), (2, 6), (0.5,), nets=3))
    assert len(rows) == 2 * 2 * 1 * 2
    for r in rows:
        if r["activation"] == "linear":
            assert r["abs_gap_max"] <= r["rounding_bound_max"]
        else:
            assert r["rel_gap_median"] > 1e-6 and math.isfinite(r["k_break_even"])


# -- data: the IDX reader on tiny files written here ---------------------------------------------
def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_fashion_like(folder: Path, n_train: int = 5, n_test: int = 3, gz: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8)}
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        raw = _idx_bytes(arr, 0x08)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("dtype, code", [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C),
                                         (np.float32, 0x0D), (np.float64, 0x0E)])
@pytest.mark.parametrize("compressed", [False, True])
def test_idx_roundtrip(tmp_path: Path, dtype: type, code: int, compressed: bool) -> None:
    arr = (np.arange(2 * 3 * 4) * 37 - 100).reshape(2, 3, 4).astype(dtype)
    raw = _idx_bytes(arr, code)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(raw) if compressed else raw)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("raw, message", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "first two bytes"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code 0x07"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated IDX header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05", "needs 11"),
    (b"\x1f\x8bnot gzip at all", "corrupt gzip"),
])
def test_idx_rejects_malformed_files(raw: bytes, message: str) -> None:
    with pytest.raises(DatasetError, match=message) as info:
        parse_idx(raw, "bad.idx")
    assert "bad.idx" in str(info.value)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_loader_reads_the_four_files(tmp_path: Path, gz: bool) -> None:
    arrays = _write_fashion_like(tmp_path, gz=gz)
    ds = load_idx_dataset(tmp_path)
    assert ds.x_train.shape == (5, 784) and ds.x_test.shape == (3, 784) and ds.x_train.dtype == np.float32
    np.testing.assert_array_equal(ds.x_train * 255, arrays["train-images-idx3-ubyte"].reshape(5, -1).astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


def test_fashion_loader_names_the_missing_file(tmp_path: Path) -> None:
    _write_fashion_like(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte"):
        load_idx_dataset(tmp_path)


def test_fashion_loader_rejects_mismatched_counts(tmp_path: Path) -> None:
    _write_fashion_like(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(4, np.uint8), 0x08)))
    with pytest.raises(DatasetError, match="5 images but"):
        load_idx_dataset(tmp_path)


def test_digits_split_is_fixed_and_disjoint() -> None:
    pytest.importorskip("sklearn", reason="the default digits dataset ships with scikit-learn")
    a, b = load_digits_dataset(), load_digits_dataset()
    assert a.n_features == 64 and len(a.y_train) + len(a.y_test) == 1797
    np.testing.assert_array_equal(a.x_test, b.x_test)
    train_rows = {row.tobytes() for row in a.x_train}
    assert sum(row.tobytes() in train_rows for row in a.x_test) < 10  # a few digits images are exact duplicates
    assert set(np.unique(a.y_train)) == set(range(10)) and 0 <= a.x_train.min() and a.x_train.max() <= 1


# -- NumPy MLP: the manual backward pass is the gradient -----------------------------------------
def _tiny_problem_net(rates: tuple[float, float]) -> tuple[NumpyMLP, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    sizes = [5, 7, 6, 3]
    weights = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        weights[f"w{i}"], weights[f"b{i}"] = rng.normal(0, 0.7, (a, b)), rng.normal(0, 0.3, b)
    x, y = rng.normal(size=(9, 5)), rng.integers(0, 3, 9)
    return NumpyMLP(weights, rates, lr=1.0, seed=4, dtype=np.float64), x, y


@pytest.mark.parametrize("rates", [(0.0, 0.0), (0.3, 0.5)])
def test_numpy_manual_backward_matches_finite_differences(rates: tuple[float, float]) -> None:
    """With lr = 1 one step subtracts the gradient; central differences use the same masks (copied RNG)."""
    net, x, y = _tiny_problem_net(rates)

    def loss_at(candidate: NumpyMLP) -> float:
        probe = copy.deepcopy(candidate)
        probe.lr = 0.0
        return probe.step(x, y)

    before = copy.deepcopy(net)
    after = copy.deepcopy(net)
    after.step(x, y)
    eps = 1e-6
    for key in ("w1", "b1", "w2", "b2", "w3", "b3"):
        grad = before.p[key] - after.p[key]
        for flat in range(0, before.p[key].size, 3):
            idx = np.unravel_index(flat, before.p[key].shape)
            plus, minus = copy.deepcopy(before), copy.deepcopy(before)
            plus.p[key][idx] += eps
            minus.p[key][idx] -= eps
            numeric = (loss_at(plus) - loss_at(minus)) / (2 * eps)
            assert grad[idx] == pytest.approx(numeric, rel=1e-5, abs=1e-8), (key, idx)


# -- training across frameworks ------------------------------------------------------------------
# Small configuration: digits, 8 seeds, 15 epochs with dropout and 3 epochs without. The
# dropout-off run stops at 3 epochs (18 SGD steps) because at lr 0.5 later loss spikes amplify any
# rounding difference, NumPy float32 vs float64 included (see results/experiments/README.md).
SMALL = TrainSettings(epochs=15, seeds=8, off_epochs=3)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    pytest.importorskip("sklearn", reason="the default digits dataset ships with scikit-learn")
    return load_digits_dataset()


@pytest.fixture(scope="module")
def cross_framework(digits: Dataset):
    return run_training(digits, SMALL, ["numpy", "torch", "tensorflow", "mxnet"], timeout=300, parallel=2)


def test_every_framework_ran_or_says_why(cross_framework) -> None:
    for fw in cross_framework.frameworks:
        assert fw["status"] in ("ok", "unavailable"), fw
        if fw["status"] == "unavailable":
            assert fw["reason"], fw
        else:
            assert not [r for r in fw["runs"] if r.get("error")], fw["runs"]
            assert len(fw["runs"]) == 2 * SMALL.seeds
    assert cross_framework.frameworks[0]["status"] == "ok"  # NumPy needs nothing


def test_each_framework_draws_fresh_masks_and_eval_mode_is_the_identity(cross_framework) -> None:
    """Learning rate 0: repeated steps on one batch differ (fresh masks); eval logits = the no-dropout model's."""
    for fw in cross_framework.ok():
        probe = fw["dropout_probe"]
        assert probe.get("fresh_mask_each_step"), (fw["framework"], probe)
        assert probe.get("eval_is_identity"), (fw["framework"], probe)


def test_dropout_off_losses_match_at_every_epoch(cross_framework) -> None:
    parity = cross_framework.off_parity()
    if not parity["checked"]:
        pytest.skip(parity["reason"])
    for name, v in parity["frameworks"].items():
        assert len(v["rel_diff_per_epoch"]) == SMALL.off_epochs
        assert v["passed"], (name, v["rel_diff_per_epoch"])
    # same weights, same batches, no randomness: eval-mode predictions agree too
    accs = {f["framework"]: cross_framework.run(f, "off-s0")["epochs"][-1]["test_acc"] for f in cross_framework.ok()}
    n_test = cross_framework.dataset["n_test"]
    assert max(accs.values()) - min(accs.values()) <= 2 / n_test, accs


def test_dropout_on_final_accuracies_agree_within_the_seed_band(cross_framework) -> None:
    parity = cross_framework.on_parity()
    if not parity["checked"]:
        pytest.skip(parity["reason"])
    assert parity["alpha"] == ALPHA <= 1e-6
    assert parity["passed"], parity
    # dropout really was on: no framework's runs are all identical to each other
    names, acc = cross_framework.final_accuracies()
    assert all(len(set(row)) > 1 for row in acc), dict(zip(names, acc.tolist()))


def _numpy_problem(digits: Dataset, settings: TrainSettings, tmp_path: Path, lr: float = 0.5):
    write_bundle(tmp_path / "b.npz", digits, settings)
    return load_problem({"bundle": str(tmp_path / "b.npz"), "n_classes": 10, "lr": lr, "batch_size": 256,
                         "epochs": settings.epochs})


def _numpy_build(problem, spec):
    return NumpyMLP(problem.weights(spec.seed), spec.rates, problem.lr, spec.seed)


@pytest.mark.parametrize("fault", ["lr+1%", "two batches swapped", "sum instead of mean"])
def test_dropout_off_check_catches_a_real_difference(digits: Dataset, tmp_path: Path, fault: str) -> None:
    """What the rtol separates: identical computations (rounding) pass; a changed computation does not."""
    settings = TrainSettings(epochs=3, seeds=1)
    problem = _numpy_problem(digits, settings, tmp_path)
    spec = RunSpec("off", 0, (0.0, 0.0))
    ref = [e["train_loss"] for e in train_run(problem, spec, _numpy_build)["epochs"]]

    def build(p, s):
        net = _SummedLoss(p.weights(s.seed), s.rates, p.lr, s.seed) if fault == "sum instead of mean" else _numpy_build(p, s)
        if fault == "lr+1%":
            net.lr = np.float32(p.lr * 1.01)
        return net

    if fault == "two batches swapped":
        order = problem.arrays["perm0"][0]
        b = batches(order, 256)
        problem.arrays["perm0"][0] = np.concatenate([b[1], b[0], *b[2:]])
    got = [e["train_loss"] for e in train_run(problem, spec, build)["epochs"]]
    rel = np.abs(np.array(got) - ref) / np.array(ref)
    assert not np.all(rel <= LOSS_PARITY_RTOL), (fault, rel)


class _SummedLoss(NumpyMLP):
    """SGD on the batch's summed loss (the gradient of the mean, times the batch size)."""

    def step(self, x, y):
        base = self.lr
        self.lr = np.float32(base * len(y))
        try:
            return super().step(x, y) * len(y)
        finally:
            self.lr = base


class _VanillaWithoutInferenceScaling(NumpyMLP):
    """A classic bug: vanilla dropout in training (y = h*m) but inference not scaled by keep."""

    def _dropout(self, h, rate):
        if rate == 0.0:
            return h, None
        mask = (self.rng.random(h.shape, dtype=np.float32) < 1.0 - rate).astype(self.dtype)
        return h * mask, mask


def test_dropout_on_band_catches_a_broken_dropout(cross_framework, digits: Dataset, tmp_path: Path) -> None:
    """Swap one framework's accuracies for those of a broken dropout: the block ANOVA must fail."""
    names, acc = cross_framework.final_accuracies()
    if len(names) < 2:
        pytest.skip("needs two frameworks with dropout-on runs")
    problem = _numpy_problem(digits, SMALL, tmp_path)
    broken = [train_run(problem, RunSpec(f"on-s{s}", s, SMALL.rates),
                        lambda p, sp: _VanillaWithoutInferenceScaling(p.weights(sp.seed), sp.rates, p.lr, sp.seed)
                        )["epochs"][-1]["test_acc"] for s in range(SMALL.seeds)]
    acc = acc.copy()
    acc[-1] = broken
    result = block_anova(acc, names)
    assert not result.passed, result


# -- the F test itself ---------------------------------------------------------------------------
def test_f_distribution_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for d1, d2 in [(1, 4), (3, 21), (3, 12), (7, 40)]:
        for f in (0.3, 1.0, 4.0, 25.0, 300.0):
            assert f_sf(f, d1, d2) == pytest.approx(stats.f.sf(f, d1, d2), rel=1e-9, abs=1e-300)
        assert f_critical(1e-6, d1, d2) == pytest.approx(stats.f.isf(1e-6, d1, d2), rel=1e-8)


def test_block_anova_false_fail_rate_is_as_stated() -> None:
    """Under H0 (framework means equal, seed effects present) the test fails at rate alpha.

    Checked at alpha = 0.01 (1e-6 is unobservable) over 4000 simulated 4 x 8 tables: the observed
    rate must lie within 5.3 binomial standard errors of 0.01 (two-sided normal tail 1.2e-7).
    """
    rng = np.random.default_rng(17)
    sims, alpha = 4000, 0.01
    fails = 0
    for _ in range(sims):
        acc = 0.9 + rng.normal(0, 0.05, size=(1, 8)) + rng.normal(0, 0.02, size=(4, 8))
        fails += not block_anova(acc, ["a", "b", "c", "d"], alpha=alpha).passed
    se = math.sqrt(alpha * (1 - alpha) / sims)
    assert abs(fails / sims - alpha) <= 5.3 * se, fails / sims


def test_block_anova_band_is_where_it_starts_failing() -> None:
    rng = np.random.default_rng(3)
    base = 0.9 + rng.normal(0, 0.01, size=(4, 8))
    base -= base.mean(axis=1, keepdims=True) - 0.9  # equal framework means: F = 0
    res = block_anova(base, list("abcd"))
    assert res.passed and res.f == pytest.approx(0.0, abs=1e-9)
    shifted = base.copy()
    shifted[0] += 1.01 * res.band
    assert not block_anova(shifted, list("abcd")).passed
    shifted[0] -= 0.02 * res.band
    assert block_anova(shifted, list("abcd")).passed


# -- isolation: a crashing or missing framework costs only itself ---------------------------------
def import_framework() -> None:
    """This test module doubles as a "framework" whose training aborts the worker (see below)."""


def versions() -> dict[str, str]:
    return {"crash": "0"}


def runtime_info() -> dict[str, str]:
    return {}


def build(problem, spec):
    os.abort()


def test_a_crashing_or_missing_framework_costs_only_itself(digits: Dataset) -> None:
    settings = TrainSettings(epochs=2, seeds=2)
    report = run_training(digits, settings, ["tests.test_experiments", "tests.no_such_framework", "numpy"], timeout=120)
    status = {f["framework"]: f for f in report.frameworks}
    assert status["tests.test_experiments"]["status"] == "crash"
    assert "SIGABRT" in status["tests.test_experiments"]["reason"]
    assert status["tests.no_such_framework"]["status"] == "unavailable"
    assert "No module named" in status["tests.no_such_framework"]["reason"]
    assert status["numpy"]["status"] == "ok" and len(status["numpy"]["runs"]) == 4


# -- CLI -----------------------------------------------------------------------------------------
def dropbench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})


@pytest.mark.parametrize("args, named", [
    (["experiment", "train", "--rates", "0.2"], "0.2"),
    (["experiment", "train", "--rates", "0.2,1.5"], "1.5"),
    (["experiment", "train", "--data-dir", "/no/such/dir"], "/no/such/dir"),
    (["experiment", "train", "--framework", "caffe"], "caffe"),
    (["experiment", "train", "--epochs", "0"], "0"),
    (["experiment", "ensemble", "--widths", "4,17"], "17"),
    (["experiment", "ensemble", "--activations", "relu,swish"], "swish"),
    (["experiment", "frobnicate"], "frobnicate"),
])
def test_misuse_exits_2_with_one_line(args: list[str], named: str) -> None:
    proc = dropbench(*args)
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], proc.stderr


def test_train_on_a_folder_without_idx_files_exits_2(tmp_path: Path) -> None:
    proc = dropbench("experiment", "train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "train-images-idx3-ubyte" in proc.stderr and "Traceback" not in proc.stderr


def test_ensemble_cli_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = dropbench("experiment", "ensemble", "--widths", "2,4", "--rates", "0.3,0.5", "--nets", "3",
                     "--mc-width", "4", "--ks", "1,8", "--repeats", "20", "--mc-nets", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    payload = read_result(out / "ensemble.json", kind="experiment-ensemble")
    assert len(payload["gap_rows"]) == 4 * 2 * 2 * 2 and len(payload["mc_rows"]) == 3 * 2 * 2
    for name in ("ensemble_gap.csv", "ensemble_mc.csv", "ensemble.md", "ensemble_gap.png", "ensemble_mc.png"):
        assert (out / name).stat().st_size > 0, name
    assert "| relu |" in (out / "ensemble.md").read_text()


def test_train_cli_on_idx_files_with_numpy(tmp_path: Path) -> None:
    """The Fashion-MNIST path end to end (tiny IDX files), NumPy only so it needs no framework."""
    _write_fashion_like(tmp_path / "data", n_train=40, n_test=10)
    out = tmp_path / "out"
    proc = dropbench("experiment", "train", "--framework", "numpy", "--data-dir", str(tmp_path / "data"),
                     "--epochs", "2", "--seeds", "2", "--batch-size", "16", "--hidden", "8,8", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = read_result(out / "train.json", kind="experiment-train")
    assert report["dataset"]["n_features"] == 784 and report["dataset"]["name"] == "fashion-mnist"
    numpy_fw = report["frameworks"][0]
    assert numpy_fw["status"] == "ok" and [len(r["epochs"]) for r in numpy_fw["runs"]] == [2, 2, 2, 2]
    assert (out / "train.png").stat().st_size > 0 and (out / "train_epochs.csv").read_text().count("\n") == 1 + 8
    assert "dropout on" in (out / "train.md").read_text()


# -- issue 16: no verdict without power, no default writes over committed results -----------------
def test_power_matches_scipy_noncentral_f() -> None:
    stats = pytest.importorskip("scipy.stats")
    for k, s, effect in [(2, 8, 3.0), (4, 7, 5.0), (4, 16, 2.0), (3, 5, 6.0)]:
        d1, d2 = k - 1, (k - 1) * (s - 1)
        expected = stats.ncf.sf(f_critical(ALPHA, d1, d2), d1, d2, s * effect ** 2 * (k - 1) / k)
        assert power_one_off(k, s, effect) == pytest.approx(expected, rel=1e-7, abs=1e-12)


def test_power_matches_simulated_block_anova() -> None:
    """The power formula is block_anova's real failure rate with one framework off by 2 sds (alpha 0.01).

    3000 simulated 4 x 6 tables; the observed rate must lie within 5.3 binomial sds of the formula
    (two-sided normal tail 1.2e-7).
    """
    rng = np.random.default_rng(5)
    sims, alpha, k, s, effect = 3000, 0.01, 4, 6, 2.0
    fails = 0
    for _ in range(sims):
        acc = rng.normal(0, 0.05, size=(1, s)) + rng.normal(0, 0.01, size=(k, s))
        acc[0] += effect * 0.01
        fails += not block_anova(acc, list("abcd"), alpha=alpha).passed
    p = power_one_off(k, s, effect, alpha)
    assert 0.2 < p < 0.9  # a rate the simulation can tell apart from 0 and 1
    assert abs(fails / sims - p) <= 5.3 * math.sqrt(p * (1 - p) / sims), (fails / sims, p)


def test_min_seeds_is_the_first_count_with_the_stated_power() -> None:
    for k in (2, 4):
        n = min_seeds(k)
        assert power_one_off(k, n) >= 0.9 > power_one_off(k, n - 1)


def test_train_gives_no_dropout_on_verdict_with_too_few_seeds(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="a second framework for the parity check")
    _write_fashion_like(tmp_path / "data", n_train=40, n_test=10)
    proc = dropbench("experiment", "train", "--framework", "numpy", "--framework", "torch", "--data-dir",
                     str(tmp_path / "data"), "--epochs", "1", "--seeds", "2", "--batch-size", "16", "--hidden", "8,8",
                     "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" not in proc.stdout and "FAIL" not in proc.stdout, proc.stdout
    assert f"--seeds {min_seeds(2)}" in proc.stdout and "dropout on: not checked" in proc.stdout, proc.stdout
    on = read_result(tmp_path / "out" / "train.json", kind="experiment-train")["parity"]["dropout_on"]
    assert on["checked"] is False and on["min_seeds"] == min_seeds(2)


def test_experiments_default_to_a_fresh_folder_not_the_committed_one(tmp_path: Path) -> None:
    args = ("experiment", "ensemble", "--widths", "2", "--rates", "0.5", "--nets", "2", "--mc-width", "2",
            "--ks", "1,2", "--repeats", "5", "--mc-nets", "1", "--no-plot")
    first = dropbench(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    written = sorted(tmp_path.glob("results/*/*-ensemble/ensemble.json"))
    assert len(written) == 1 and not (tmp_path / "results" / "experiments").exists(), written
    second = dropbench(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert len(list(tmp_path.glob("results/*/*-ensemble*/ensemble.json"))) == 2  # a second run: a second folder
