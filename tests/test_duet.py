"""`dropbench compare --duet`: the paired tests by hand, verdicts on synthetic pairs with known truth, the CLI.

Randomized tests use fixed seeds; where a verdict could flip by chance the docstring bounds that
probability (<= 1e-6) for the stated model. No test asserts a wall-clock time: the one test that
runs real workers checks only what was run, in which order, with which settings.
"""
from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from suite.bench.duet import Side, pair_order, parse_env, read_duet
from suite.report.compare import compare_runs
from suite.report.paired import (
    CALIBRATION_FILE,
    DUET_DEFAULTS,
    DuetSettings,
    PairError,
    calibration,
    compare_duet,
    judge_pairs,
    log_ratios,
    paired_t,
    rates_line,
    sign_test,
    wilcoxon_exact,
)
from suite.runtime.loader import UsageError


def dropbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite.cli", *args], capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------------------ the tests by hand
def test_paired_t_by_hand() -> None:
    """d = 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t = 0.2 / (0.1 / sqrt 3) = 3.4641 with 2 df; two-sided
    p = 1 - t / sqrt(t^2 + 2) = 0.07418 (closed form of Student's t with 2 df)."""
    t = 0.2 / (0.1 / math.sqrt(3))
    assert paired_t([0.1, 0.2, 0.3]) == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-9)
    assert paired_t([0.1, 0.2, 0.3]) == pytest.approx(0.07418, rel=1e-3)
    assert paired_t([0.0, 0.0]) == 1.0
    assert paired_t([0.1, 0.1, 0.1]) < 1e-12  # a constant nonzero shift: (almost) no noise at all


def test_sign_test_by_hand() -> None:
    """6 of 6 positive: 2 * (1/2)^6 = 0.03125; 5 of 6: 2 * 7/64 = 0.21875; zeros are dropped."""
    assert sign_test([1, 2, 3, 4, 5, 6]) == pytest.approx(0.03125)
    assert sign_test([1, 2, 3, 4, 5, -6]) == pytest.approx(0.21875)
    assert sign_test([0, 1, 2, 3, 4, 5, 6]) == pytest.approx(0.03125)
    assert sign_test([0, 0]) == 1.0


def _wilcoxon_brute(d: list[float]) -> float:
    """Every one of the 2^n sign patterns of the |d| midranks, equally likely under H0."""
    a = np.asarray([v for v in d if v != 0], dtype=float)
    from suite.report.compare import midranks

    ranks, _ = midranks(np.abs(a))
    observed = ranks[a > 0].sum()
    sums = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product((0, 1), repeat=a.size)]
    low = sum(s <= observed + 1e-9 for s in sums) / len(sums)
    high = sum(s >= observed - 1e-9 for s in sums) / len(sums)
    return min(1.0, 2 * min(low, high))


@pytest.mark.parametrize("d", [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.1, -0.2, 0.3, 0.4, 0.5, 0.6, -0.05],
                               [0.1, 0.1, -0.1, 0.2, 0.3], [0.3, -0.1, 0.2, -0.2, 0.1, 0.0, 0.25, 0.15]])
def test_wilcoxon_matches_brute_force(d) -> None:
    assert wilcoxon_exact(d) == pytest.approx(_wilcoxon_brute(d), abs=1e-12)


def test_wilcoxon_by_hand() -> None:
    """All 6 positive: only 1 of 64 sign patterns has rank sum 21, so p = 2/64."""
    assert wilcoxon_exact([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) == pytest.approx(2 / 64)


def test_log_ratios_refuse_what_cannot_pair() -> None:
    assert log_ratios([1.0, 2.0, 3.0], [2.0, 2.0]).tolist() == pytest.approx([math.log(2), 0.0])
    with pytest.raises(PairError, match="1 pair"):
        log_ratios([1.0], [1.0])
    with pytest.raises(PairError, match="positive"):
        log_ratios([1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="sideways"):
        judge_pairs([1.0, 1.0], [1.0, 1.0], threshold=0.0, alpha=0.05, test="sideways")


def test_verdict_needs_both_significance_and_threshold() -> None:
    old = [1.0, 1.0, 1.0, 1.0]
    assert judge_pairs(old, [1.10, 1.11, 1.09, 1.10], threshold=0.05, alpha=0.05)[2] == "regression"
    assert judge_pairs(old, [1.03, 1.031, 1.029, 1.03], threshold=0.05, alpha=0.05)[2] == "unchanged"  # below x1.05
    assert judge_pairs(old, [1.5, 0.8, 1.3, 0.9], threshold=0.05, alpha=0.05)[2] == "unchanged"  # not significant
    assert judge_pairs([1.10, 1.11, 1.09, 1.10], old, threshold=0.05, alpha=0.05)[2] == "improvement"


# ------------------------------------------------------------- synthetic duets with known truth
def _row(api: str, numel: int, figures: list[float], worker: str) -> dict:
    return {"name": f"{api}-{numel}", "stats": {"median": float(np.median(figures))},
            "extra_info": {"backend": api.split(":")[0], "api": api, "direction": "forward", "device": "cpu",
                           "dtype": "float32", "numel": numel, "mode": "eager", "worker": worker,
                           "processes": [{"process": i, "median": f, "cpu_median": f, "ratio_copy": f, "cpu_ratio_copy": f}
                                         for i, f in enumerate(figures)]}}


def _side(api: str, figures: dict[int, list[float]]) -> dict:
    worker = api.split(":")[0]
    return {"schema": 2, "kind": "bench", "benchmarks": [_row(api, n, f, worker) for n, f in figures.items()]}


def _duet(rng: np.random.Generator, factor: float, pairs: int, drift: float, noise: float) -> tuple[list, list]:
    """Per pair a machine factor shared by both sides (lognormal, sd ``drift``) and per process noise."""
    shared = np.exp(rng.normal(0, drift, pairs))
    old = shared * np.exp(rng.normal(0, noise, pairs))
    new = factor * shared * np.exp(rng.normal(0, noise, pairs))
    return old.tolist(), new.tolist()


SETTINGS = DuetSettings(threshold=0.05, alpha=0.05, normalize="copy", clock="cpu", test="t")


def test_pairing_cancels_drift_that_hides_a_10_percent_slowdown_from_files() -> None:
    """Between-process drift of 20 % (sd of logs) shared within a pair, 1 % own noise, 6 pairs, 10 %
    slower. Paired: the d_i have sd 0.014, so t = 0.095 / (0.014 / sqrt 6) ~ 17 against a 5 % point
    of 2.57 with 5 df; missing it needs a 7-sigma noise excursion in the mean of 6 d_i (p < 1e-6).
    The same figures as two files (Welch over processes) see a 20 % spread: it must not call it a
    regression at alpha 0.05 with this seed (checked, not bounded: it documents why pairing matters)."""
    rng = np.random.default_rng(26)
    old, new = _duet(rng, 1.10, pairs=6, drift=0.20, noise=0.01)
    a, b = _side("numpy:fast", {2**22: old}), _side("numpy:fast", {2**22: new})
    paired = compare_duet(a, b, SETTINGS)
    assert [r.verdict for r in paired] == ["regression"] and paired[0].method == "paired-t"
    assert paired[0].ratio == pytest.approx(1.10, abs=0.03)
    files = compare_runs(a, b, threshold=0.05, alpha=0.05, normalize="copy", clock="cpu")
    assert files[0].verdict == "unchanged"


def test_duet_aa_false_alarms_and_10_percent_power_synthetic() -> None:
    """2000 synthetic A/A duets and 2000 10 %-slower ones (3 pairs, paired t, alpha 0.05, threshold 0.05;
    the default threshold), drift 20 % shared within pairs, own noise 2 %. A/A: the flag rate is at most
    alpha = 5 %, so over 2000 independent duets it exceeds 10 % with probability < 1e-6 (Chernoff bound,
    Binomial(2000, 0.05)). 10 %: t ~ 0.095 / (0.028 / sqrt 3) = 5.9 against the 4.30 point; the power
    of this model is about 0.8; a rate below 65 % has probability < 1e-6 if the power is >= 0.75."""
    rng = np.random.default_rng(2026)
    flagged_aa = flagged_10 = 0
    for _ in range(2000):
        o, n = _duet(rng, 1.0, 3, 0.20, 0.02)
        flagged_aa += judge_pairs(o, n, threshold=0.05, alpha=0.05)[2] != "unchanged"
        o, n = _duet(rng, 1.10, 3, 0.20, 0.02)
        flagged_10 += judge_pairs(o, n, threshold=0.05, alpha=0.05)[2] == "regression"
    assert flagged_aa / 2000 <= 0.10
    assert flagged_10 / 2000 >= 0.65


def test_two_backends_pair_by_api_name_and_baselines_stay_apart() -> None:
    old = _side("numpy:fast", {2**16: [1.0, 1.0, 1.0]})
    new = _side("calib25:fast", {2**16: [1.25, 1.26, 1.24]})
    old["benchmarks"].append(_row("baseline:copy", 2**16, [1.0, 1.0, 1.0], "numpy"))
    new["benchmarks"].append(_row("baseline:copy", 2**16, [1.0, 1.01, 0.99], "calib25"))
    rows = {r.key[0]: r for r in compare_duet(old, new, SETTINGS)}
    assert rows["fast"].verdict == "regression" and rows["baseline:copy"].verdict == "unchanged"
    only = compare_duet(_side("numpy:fast", {2**16: [1.0, 1.0]}), _side("calib25:other", {2**16: [1.0, 1.0]}), SETTINGS)
    assert sorted(r.verdict for r in only) == ["missing-in-new", "missing-in-old"]
    short = compare_duet(old, new, SETTINGS, pairs=1)
    assert short[0].verdict == "no-data" and "pair" in short[0].detail


# --------------------------------------------------------------------------------- orchestration
def test_pair_order_alternates_abba() -> None:
    assert pair_order(3) == [(0, "old"), (0, "new"), (1, "new"), (1, "old"), (2, "old"), (2, "new")]


def test_parse_env_names_a_bad_setting() -> None:
    assert parse_env(["A=1", "B_2=x=y"]) == {"A": "1", "B_2": "x=y"}
    with pytest.raises(UsageError, match="'nope'"):
        parse_env(["nope"])
    assert Side("numpy", env={"A": "1"}, threads=2).describe() == "numpy [A=1, threads=2]"
    assert Side("a:B", ("c:D",)).refs == ("a:B", "c:D")


def test_read_duet_refuses_other_files() -> None:
    with pytest.raises(ValueError, match="not a duet"):
        read_duet({"kind": "bench", "schema": 2}, "x.json")
    with pytest.raises(ValueError, match="'new'"):
        read_duet({"kind": "duet", "schema": 1, "old": {"benchmarks": []}}, "x.json")


# ----------------------------------------------------------------------------------- calibration
def test_defaults_are_the_calibrated_ones_and_the_line_states_their_rates() -> None:
    entry = calibration("duet")
    if entry is None:
        pytest.skip(f"no calibration stored in {CALIBRATION_FILE}")
    d = entry["defaults"]
    assert DuetSettings(d["threshold"], d["alpha"], d["normalize"], d["clock"], d["test"]) == DUET_DEFAULTS
    line = rates_line(entry, d)
    assert f"{entry['aa_rate']:.1%}" in line and "10 % slowdown caught in" in line
    files = calibration("files")
    assert files is not None and "25 % slowdown" in rates_line(files, files["defaults"])
    assert "(not these)" in rates_line(entry, {**d, "alpha": 0.2})
    from suite.report.compare import DEFAULT_ALPHA, DEFAULT_CLOCK, DEFAULT_NORMALIZE, DEFAULT_THRESHOLD

    assert files["defaults"] == {"threshold": DEFAULT_THRESHOLD, "alpha": DEFAULT_ALPHA,
                                 "normalize": DEFAULT_NORMALIZE, "clock": DEFAULT_CLOCK}


def _entry(**extra) -> dict:
    """A stored calibration entry as calibration() returns it; its figures are all different numbers, so the
    line shows which ones it quoted."""
    figures = lambda aa, caught: {"aa_rate": aa, "aa_rows": 96, "aa_runs": 24, "aa_unit": "duets",  # noqa: E731
                                  "detect": {"25": {"65536": caught, "4194304": 1.0}}, "trials_per_cell": 48}
    return {"defaults": {"threshold": 0.05}, "pairs": 3, **figures(0.011, 0.61), "machine": "m", "source": "modes.json",
            "note": "quiet", "by_pairs": {"6": figures(0.022, 0.92)},
            "elsewhere": [{**figures(0.133, 0.44), "pairs": 3, "note": "loaded: load average 3-10"}], **extra}


def test_rates_line_quotes_the_figures_of_the_pairs_and_load_the_duet_had() -> None:
    e, s = _entry(), {"threshold": 0.05}
    three = rates_line(e, s, pairs=3, load=1.0)
    assert three.index("1.1%") < three.index("13.3%") and "61% at 2^16" in three and "92%" not in three
    assert "2.2%" not in three and "3 pairs" in three
    six = rates_line(e, s, pairs=6, load=1.0)
    assert "2.2%" in six and "92% at 2^16" in six and "6 pairs" in six
    assert "calibrated with 3 and 6 pairs, not 4" in rates_line(e, s, pairs=4)
    loaded = rates_line(e, s, pairs=3, load=7.5)
    assert loaded.startswith("this duet ran on a loaded machine (1-minute load average up to 7.5)")
    assert loaded.index("13.3%") < loaded.index("1.1%")
    alone = rates_line(_entry(elsewhere=[]), s, pairs=3, load=7.5)
    assert "no loaded calibration is stored" in alone and "13.3%" not in alone


def test_rates_line_without_a_calibration_says_so(tmp_path) -> None:
    assert calibration("duet", tmp_path / "none.json") is None
    assert "no calibration" in rates_line(None, {})


# ----------------------------------------------------------------------------------------- CLI
def test_cli_judges_a_duet_file_and_exits_1_on_regression(tmp_path) -> None:
    rng = np.random.default_rng(7)
    old, new = _duet(rng, 1.25, pairs=3, drift=0.1, noise=0.005)
    path = tmp_path / "duet.json"
    path.write_text(json.dumps({"schema": 1, "kind": "duet", "pairs": 3, "order": [],
                                "sides": {"old": {"ref": "numpy", "env": {}}, "new": {"ref": "numpy", "env": {"X": "1"}}},
                                "old": _side("numpy:fast", {2**22: old}), "new": _side("numpy:fast", {2**22: new})}))
    proc = dropbench("compare", str(path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "regression" in proc.stdout and "paired-t" in proc.stdout and "duet mode, " in proc.stdout
    same = dropbench("compare", str(path), "--threshold", "0.5")
    assert same.returncode == 0 and "at the default settings (not these)" in same.stdout


@pytest.mark.parametrize("args, named", [
    (["--pairs", "3"], "--pairs"),
    (["--new-env", "A=1"], "--new-env"),
    (["--duet", "numpy"], "two backends"),
    (["--duet", "numpy", "numpy", "--pairs", "1"], "pairs"),
    (["--duet", "numpy", "numpy", "--new-env", "oops"], "'oops'"),
    (["--duet", "numpy", "nosuchbackend"], "nosuchbackend"),
    (["--duet", "numpy", "numpy", "--test", "z"], "'z'"),
    (["--duet", "numpy", "numpy", "--same-process"], "both are named 'numpy'"),
    (["--duet", "numpy", "numpy", "--same-process", "--side-by-side"], "exclude each other"),
])
def test_cli_duet_misuse_exits_2(tmp_path, args, named) -> None:
    if args[0] != "--duet":
        args = [str(tmp_path / "a.json"), str(tmp_path / "b.json"), *args]
    proc = dropbench("compare", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert named in proc.stderr


def test_cli_duet_runs_both_sides_alternating_with_their_settings(tmp_path) -> None:
    """Real workers, tiny size: what ran where (the NEW side's plugin saw its environment), not how fast."""
    out = tmp_path / "duet.json"
    proc = dropbench("compare", "--duet", "results.calibration.slow_plugin:Slow25", "results.calibration.slow_plugin:Slow25",
                     "--new-env", "DROPBENCH_CALIB25=1.25", "--pairs", "2", "--sizes", "2^10", "--json", str(out))
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    payload = json.loads(out.read_text())
    assert payload["order"] == [[0, "old"], [0, "new"], [1, "new"], [1, "old"]]
    assert len(payload["loadavg_1min"]) == 5 and all(x >= 0 for x in payload["loadavg_1min"])  # before, after each
    factors = {side: {e["versions"].get("work_factor") for e in payload[side]["backends"]} for side in ("old", "new")}
    assert factors == {"old": {"1.0"}, "new": {"1.25"}}
    rows = [b for b in payload["new"]["benchmarks"] if b["extra_info"]["api"] == "calib25:fast"]
    assert rows and all(len(b["extra_info"]["processes"]) == 2 for b in rows)
    assert "duet mode, " in proc.stdout and "paired-t" in proc.stdout


def test_same_process_rows_split_by_backend_with_the_baselines_on_both_sides() -> None:
    from suite.bench.duet import _only
    from suite.bench.runner import WorkerRun

    rows = [{"extra_info": {"backend": b, "api": f"{b}:fast"}} for b in ("calibaa", "calib25", "baseline")]
    run = WorkerRun("results.calibration.slow_plugin:SlowAA", "x", benchmarks=rows)
    assert [b["extra_info"]["backend"] for b in _only(run, {"calib25"}).benchmarks] == ["calib25", "baseline"]
    assert [b["extra_info"]["backend"] for b in _only(run, {"calibaa"}).benchmarks] == ["calibaa", "baseline"]
    # the shared baseline rows are one measurement: compare_duet does not test them against themselves
    same = _row("baseline:copy", 2**16, [1.0, 1.2, 0.9], "w")
    old, new = _side("calibaa:fast", {2**16: [1.0, 1.0, 1.0]}), _side("calib25:fast", {2**16: [1.3, 1.3, 1.31]})
    old["benchmarks"].append(same)
    new["benchmarks"].append(same)
    assert [r.key[0] for r in compare_duet(old, new, SETTINGS)] == ["fast"]


def _fake_process(calls: list):
    """A run_process stand-in: records (side refs, pair, env) and returns one row per backend it was given."""
    from suite.bench.runner import WorkerRun

    def fake(ref, options, parts, process, progress=None, env=None, also=()):
        from suite.bench.duet import backend_name

        names = [backend_name(r.ref) for r in (ref, *also)]
        calls.append((tuple(names), process, dict(env or {})))
        rows = [{"name": n, "stats": {"median": 1.0}, "extra_info": {
            "backend": n, "api": f"{n}:fast", "direction": "forward", "device": "cpu", "dtype": "float32",
            "numel": 64, "mode": "eager", "worker": names[0],
            "interleaved": {"data": [1.0], "cpu_median": 1.0, "cpu_ratio_copy": 1.0}}} for n in names]
        return WorkerRun(names[0], ref.ref, benchmarks=rows, reported=True)
    return fake


def test_run_duet_orders_pairs_and_splits_a_shared_process(monkeypatch) -> None:
    """No worker starts: the layouts' bookkeeping. Alternate: OLD, NEW, NEW, OLD with each side's
    environment; same-process: one process per pair holding both, its rows split by backend."""
    from suite.bench import duet as duet_module
    from suite.bench.runner import BenchOptions

    calls: list = []
    monkeypatch.setattr(duet_module, "run_process", _fake_process(calls))
    plugin = "results.calibration.slow_plugin"
    old, new = Side(f"{plugin}:SlowAA"), Side(f"{plugin}:Slow25", env={"DROPBENCH_CALIB25": "1.25"})
    payload = duet_module.run_duet(old, new, BenchOptions(quick=True, sizes=(64,)), 2)
    assert [(c[0], c[1]) for c in calls] == [(("calibaa",), 0), (("calib25",), 0), (("calib25",), 1), (("calibaa",), 1)]
    assert [c[2] for c in calls if c[0] == ("calib25",)] == [{"DROPBENCH_CALIB25": "1.25"}] * 2
    assert [len(b["extra_info"]["processes"]) for b in payload["new"]["benchmarks"]] == [2]
    calls.clear()
    shared = duet_module.run_duet(old, new, BenchOptions(quick=True, sizes=(64,)), 3, layout="same-process")
    assert [c[0] for c in calls] == [("calibaa", "calib25")] * 3 and calls[0][2] == {"DROPBENCH_CALIB25": "1.25"}
    assert shared["layout"] == "same-process"
    assert [b["extra_info"]["api"] for b in shared["old"]["benchmarks"]] == ["calibaa:fast"]
    assert [b["extra_info"]["api"] for b in shared["new"]["benchmarks"]] == ["calib25:fast"]
    calls.clear()
    side = duet_module.run_duet(old, new, BenchOptions(quick=True, sizes=(64,)), 2, layout="side-by-side")
    assert sorted((c[0], c[1]) for c in calls) == [(("calib25",), 0), (("calib25",), 1), (("calibaa",), 0), (("calibaa",), 1)]
    assert side["order"] == [[0, "old+new"], [1, "old+new"]]
    with pytest.raises(UsageError, match="sideways"):
        duet_module.run_duet(old, new, BenchOptions(quick=True), 2, layout="sideways")


@pytest.mark.parametrize(("flags", "pairs"), [((), 3), (("--same-process",), 3), (("--side-by-side",), 6),
                                              (("--side-by-side", "--pairs", "4"), 4)])
def test_cli_default_pairs_fit_the_budget_of_two_quick_files(monkeypatch, flags, pairs) -> None:
    """3 pairs one after another, 6 side by side (two at a time): the wall time of two `bench --quick` files."""
    from suite import cli
    from suite.bench import duet as duet_module

    seen: dict = {}

    def fake_run_duet(old, new, options, k, **kw):
        seen.update(pairs=k, layout=kw["layout"])
        raise duet_module.DuetFailed("not run here")

    monkeypatch.setattr(duet_module, "run_duet", fake_run_duet)
    assert cli.main(["compare", "--duet", "numpy", "numpy", *flags]) == 1
    assert seen["pairs"] == pairs
