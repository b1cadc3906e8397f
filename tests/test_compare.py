"""`dropbench compare`: the Mann–Whitney U test against hand computation, and verdicts that can fail.

Every randomized test uses a fixed seed; where a verdict could in principle flip by chance, the
docstring bounds that probability (<= 1e-6) for the stated model.
"""
from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

from suite.report.compare import CannotTest, compare_runs, exact_u_distribution, exit_code, judge, mann_whitney_u, midranks
from tests.fixtures.synthetic_bench import bench_payload, benchmark, synthetic_run, write_run


def dropbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite.cli", *args], capture_output=True, text=True, timeout=120)


# ----------------------------------------------------------------------------- the U test by hand


def test_midranks_average_ties() -> None:
    ranks, ties = midranks(np.array([3.0, 1.0, 2.0, 2.0, 5.0]))
    assert ranks.tolist() == [4.0, 1.0, 2.5, 2.5, 5.0]
    assert sorted(ties.tolist()) == [1, 1, 1, 2]


def test_exact_small_example_by_hand() -> None:
    """x = 1,2,3 vs y = 4,5,6: every x is below every y, so U_x = 0 and U_y = 9.
    Of the C(6,3) = 20 equally likely splits only one gives U_x = 0 (and one U_x = 9), so the
    two-sided exact p = 2/20 = 0.1."""
    t = mann_whitney_u([1, 2, 3], [4, 5, 6])
    assert (t.u_x, t.u_y, t.method) == (0.0, 9.0, "exact")
    assert t.p_value == pytest.approx(0.1, abs=1e-12)


def test_exact_interleaved_example_by_hand() -> None:
    """x = 1,4,5 vs y = 2,3,6: pairs x>y: 4>2,4>3,5>2,5>3 -> U_x = 4. U counts for 3 vs 3
    (Gaussian binomial [6 choose 3]_q) are 1,1,2,3,3,3,3,2,1,1 for u = 0..9, so
    P(U <= 4) = 10/20 and P(U >= 4) = 13/20: p = min(1, 2*10/20) = 1."""
    t = mann_whitney_u([1, 4, 5], [2, 3, 6])
    assert t.u_x == 4.0
    assert t.p_value == pytest.approx(1.0)
    assert (exact_u_distribution(3, 3) * 20).round(9).tolist() == [1, 1, 2, 3, 3, 3, 3, 2, 1, 1]


def test_normal_approximation_by_hand() -> None:
    """x = 1..8 vs y = 9..16 (no ties): U_x = 0, mean = 8*8/2 = 32, var = 64*17/12 = 90.667,
    z = (32 - 0.5)/sqrt(90.667) = 3.3082, two-sided p = erfc(z/sqrt 2) = 9.391e-4."""
    t = mann_whitney_u(list(range(1, 9)), list(range(9, 17)))
    assert (t.u_x, t.u_y, t.method) == (0.0, 64.0, "normal")
    z = 31.5 / math.sqrt(64 * 17 / 12)
    assert t.p_value == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-12)
    assert t.p_value == pytest.approx(9.391e-4, rel=1e-3)


def test_normal_approximation_with_ties_by_hand() -> None:
    """x = 1,1,2,2,3,3,4,4 vs y = 3,3,4,4,5,5,6,6. Midranks: 1->1.5, 2->3.5, 3->6.5, 4->10.5, 5->13.5,
    6->15.5, so R_x = 2*(1.5+3.5+6.5+10.5) = 44 and U_x = 44 - 36 = 8. Tie groups 2,2,4,4,2,2:
    sum(t^3 - t) = 4*6 + 2*60 = 144; var = 64/12 * (17 - 144/(16*15)) = 87.4667;
    z = (|8 - 32| - 0.5)/sqrt(87.4667) = 2.5128; p = erfc(z/sqrt 2) = 0.01198."""
    t = mann_whitney_u([1, 1, 2, 2, 3, 3, 4, 4], [3, 3, 4, 4, 5, 5, 6, 6])
    assert t.u_x == 8.0
    assert t.p_value == pytest.approx(math.erfc(23.5 / math.sqrt(87.4667 * 2)), rel=1e-5)
    assert t.p_value == pytest.approx(0.01198, rel=2e-3)


def _brute_force_p(x: list[float], y: list[float]) -> float:
    """Two-sided permutation p of U_x counted pair by pair (independent of the rank code)."""
    def u(a, b):
        return sum(1.0 if ai > bj else 0.5 if ai == bj else 0.0 for ai in a for bj in b)
    pooled, n = x + y, len(x)
    observed = u(x, y)
    us = []
    for idx in itertools.combinations(range(len(pooled)), n):
        rest = [pooled[i] for i in range(len(pooled)) if i not in idx]
        us.append(u([pooled[i] for i in idx], rest))
    us = np.array(us)
    return min(1.0, 2 * min(np.mean(us <= observed + 1e-9), np.mean(us >= observed - 1e-9)))


@pytest.mark.parametrize("x, y", [
    ([1.0, 2.0, 2.0, 3.0], [2.0, 4.0, 5.0]),  # ties: enumeration
    ([5.0, 7.0, 1.0, 9.0, 3.0], [2.0, 8.0, 6.0, 4.0, 10.0, 11.0]),  # no ties: Gaussian binomial
    ([0.1, 0.4, 0.3], [0.9, 0.8, 0.7, 0.6, 0.5, 0.2, 0.05]),
    ([2.0, 2.0, 3.0, 1.0, 3.0, 2.0, 5.0, 1.0], [3.0, 3.0, 4.0, 2.0, 6.0]),  # ties, smaller sample second
])
def test_exact_p_matches_brute_force(x, y) -> None:
    assert mann_whitney_u(x, y).p_value == pytest.approx(_brute_force_p(x, y), abs=1e-12)


def test_exact_with_ties_handles_a_large_second_sample() -> None:
    """6 tied rounds against 400: too many splits to enumerate, still exact (subset-sum count).
    Cross-check: without ties the same routine must give the Gaussian-binomial p exactly."""
    from suite.report.compare import _exact_with_ties

    rng = np.random.default_rng(5)
    x, y = np.round(rng.normal(10, 1, 6), 1), np.round(rng.normal(10, 1, 400), 1)
    assert mann_whitney_u(x, y).method == "exact-ties" and 0.0 < mann_whitney_u(x, y).p_value <= 1.0
    assert mann_whitney_u(x, y).p_value == pytest.approx(mann_whitney_u(y, x).p_value, rel=1e-12)
    a, b = rng.normal(0, 1, 5), rng.normal(0.3, 1, 50)
    assert _exact_with_ties(a, b) == pytest.approx(mann_whitney_u(a, b).p_value, rel=1e-9)


def test_exact_distribution_large_second_sample_is_a_distribution() -> None:
    d = exact_u_distribution(5, 2000)
    assert d.shape == (10001,) and d.sum() == pytest.approx(1.0) and np.all(d >= 0)
    assert d == pytest.approx(d[::-1], abs=1e-15)  # symmetric about n_x n_y / 2
    assert d[0] == pytest.approx(1 / math.comb(2005, 5), rel=1e-9)


def test_too_few_rounds_are_refused() -> None:
    with pytest.raises(CannotTest, match="at least"):
        mann_whitney_u([1.0, 2.0], [3.0, 4.0, 5.0])


def test_identical_constant_samples_are_not_significant() -> None:
    assert mann_whitney_u([1.0] * 10, [1.0] * 12).p_value == 1.0


# ----------------------------------------------------------------------------- verdicts


def test_shift_of_20_percent_with_low_noise_is_a_regression() -> None:
    """20 rounds each, lognormal noise 1 %: a 20 % shift separates the samples completely unless some
    round is > 9 sigma off (probability < 1e-18), then U = 0 and p = 7e-8 < 0.01, ratio ~ 1.2 > 1.05."""
    rng = np.random.default_rng(11)
    old = list(1e-3 * np.exp(rng.normal(0, 0.01, 20)))
    new = list(1.2e-3 * np.exp(rng.normal(0, 0.01, 20)))
    ratio, test, verdict = judge(old, new, threshold=0.05, alpha=0.01)
    assert verdict == "regression" and test.p_value < 1e-6 and 1.15 < ratio < 1.25
    assert judge(new, old, threshold=0.05, alpha=0.01)[2] == "improvement"


def test_identical_distributions_are_unchanged() -> None:
    """Same distribution, 20 rounds, 1 % noise: a verdict other than unchanged needs the ratio of medians
    beyond 5 %, i.e. > 15 standard errors of a median (se ~ 1.25 * 1 % / sqrt 20); probability < 1e-6."""
    rng = np.random.default_rng(12)
    old = list(1e-3 * np.exp(rng.normal(0, 0.01, 20)))
    new = list(1e-3 * np.exp(rng.normal(0, 0.01, 20)))
    assert judge(old, new, threshold=0.05, alpha=0.01)[2] == "unchanged"


def test_small_shift_that_is_significant_but_below_threshold_is_unchanged() -> None:
    """2 % shift, 0.1 % noise, 30 rounds: the test alone would flag it; the 5 % threshold must not."""
    rng = np.random.default_rng(13)
    old = list(1e-3 * np.exp(rng.normal(0, 0.001, 30)))
    new = list(1.02e-3 * np.exp(rng.normal(0, 0.001, 30)))
    ratio, test, verdict = judge(old, new, threshold=0.05, alpha=0.01)
    assert test.p_value < 1e-6 and verdict == "unchanged"


def test_big_shift_with_huge_noise_and_5_rounds_is_not_significant() -> None:
    """+20 % with lognormal noise sigma = 1 (factor ~2.7) and 5 rounds each: the ratio of medians may
    well exceed 1.05, but the exact test cannot call it (the smallest possible two-sided p with 5 vs 5
    is 2/252 = 0.0079, reached only by complete separation)."""
    rng = np.random.default_rng(14)
    old = list(1e-3 * np.exp(rng.normal(0, 1.0, 5)))
    new = list(1.2e-3 * np.exp(rng.normal(0, 1.0, 5)))
    ratio, test, verdict = judge(old, new, threshold=0.05, alpha=0.01)
    assert test.method == "exact"
    assert test.p_value >= 0.01 and verdict == "unchanged"
    # the same shift with quiet rounds IS caught with 5 vs 5 at alpha 0.01 (complete separation)
    quiet_old = [1e-3 * (1 + 0.001 * i) for i in range(5)]
    assert judge(quiet_old, [1.2 * t for t in quiet_old], threshold=0.05, alpha=0.01)[2] == "regression"


# ----------------------------------------------------------------------------- whole runs and CLI


def _run_pair(tmp_path, *, slowdown=None, old_rounds=20, new_rounds=20, noise=0.01):
    old = synthetic_run(sizes=(4096, 65536), rounds=old_rounds, noise=noise, seed=1)
    new = synthetic_run(sizes=(4096, 65536), rounds=new_rounds, noise=noise, seed=2, slowdown=slowdown)
    return write_run(tmp_path / "old.json", old), write_run(tmp_path / "new.json", new)


def test_compare_runs_flags_only_the_slowed_api(tmp_path) -> None:
    old = synthetic_run(sizes=(4096, 65536), rounds=20, noise=0.01, seed=1)
    new = synthetic_run(sizes=(4096, 65536), rounds=20, noise=0.01, seed=2, slowdown={"torch:F.dropout": 1.3})
    results = compare_runs(old, new, threshold=0.05, alpha=0.01)
    flagged = {(r.key[0], r.key[1], r.key[4]) for r in results if r.verdict != "unchanged"}
    assert flagged == {("torch:F.dropout", d, n) for d in ("forward", "forward_backward") for n in (4096, 65536)}
    assert all(r.verdict == "regression" for r in results if r.key[0] == "torch:F.dropout")
    assert exit_code(results) == 1
    # the tf.function row is a separate benchmark from the eager one
    assert sum(1 for r in results if r.key[0] == "tensorflow:tf.nn.dropout") == 8


def test_missing_benchmarks_and_absent_rounds_are_reported_not_crashes() -> None:
    a = benchmark("torch:F.dropout", "forward", 4096, 1e-5, worker="torch", rounds=10)
    b = benchmark("torch:F.dropout", "forward", 65536, 1e-4, worker="torch", rounds=10)
    c = benchmark("numpy:reference", "forward", 4096, 1e-5, worker="numpy", rounds=10)
    a_nodata = benchmark("torch:F.dropout", "forward", 4096, 1e-5, worker="torch", rounds=10, data=False)
    results = compare_runs(bench_payload([a, b]), bench_payload([a_nodata, c]), threshold=0.05, alpha=0.01)
    verdicts = {r.label: (r.verdict, r.detail) for r in results}
    assert verdicts["torch:F.dropout forward cpu float32 n=4096"][0] == "no-data"
    assert "stats.data" in verdicts["torch:F.dropout forward cpu float32 n=4096"][1]
    assert verdicts["torch:F.dropout forward cpu float32 n=65536"][0] == "missing-in-new"
    assert verdicts["numpy:reference forward cpu float32 n=4096"][0] == "missing-in-old"
    assert exit_code(results) == 0


def test_cli_exit_1_on_regression_and_0_when_unchanged(tmp_path) -> None:
    old, new = _run_pair(tmp_path, slowdown={"torch:nn.Dropout": 1.25})
    proc = dropbench("compare", str(old), str(new))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [l for l in proc.stdout.splitlines() if l.startswith("torch:nn.Dropout")]
    assert len(lines) == 4 and all(l.rstrip().endswith("regression") for l in lines)
    assert "4 regression" in proc.stdout
    same = dropbench("compare", str(old), str(old))
    assert same.returncode == 0 and "regression" not in same.stdout.split("compare:")[1].split("\n")[0]
    better = dropbench("compare", str(new), str(old))
    assert better.returncode == 0 and "4 improvement" in better.stdout


def test_cli_threshold_can_hide_a_real_shift(tmp_path) -> None:
    old, new = _run_pair(tmp_path, slowdown={"torch:nn.Dropout": 1.25})
    assert dropbench("compare", str(old), str(new), "--threshold", "0.5").returncode == 0


@pytest.mark.parametrize("args, named", [
    (["--threshold", "-1"], "-1"),
    (["--alpha", "0"], "0"),
    (["--alpha", "1.5"], "1.5"),
    (["--threshold", "abc"], "abc"),
])
def test_cli_misuse_exits_2(tmp_path, args, named) -> None:
    old, new = _run_pair(tmp_path)
    proc = dropbench("compare", str(old), str(new), *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0]


BROKEN_BENCH = ('{"schema": 1, "kind": "bench", "machine_id": "m", "benchmarks": '
                '[{"stats": {"median": 1.0}, "extra_info": {"direction": "forward"}}]}')


@pytest.mark.parametrize("content", ['{"schema": 1, "kind": "verify"}', '{"schema": 1, "kind": "bench", "benc',
                                     '{"hello": 1}', '{"schema": 99, "kind": "bench"}', None, BROKEN_BENCH])
def test_cli_bad_files_exit_2_naming_the_file(tmp_path, content) -> None:
    good, _ = _run_pair(tmp_path)
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    proc = dropbench("compare", str(good), str(bad))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0]


# ------------------------------------------------------------- schema 2: the test over processes
from suite.report.compare import DEFAULT_ALPHA, DEFAULT_THRESHOLD, judge_processes, student_t_sf, welch_log  # noqa: E402


def _row(api: str, numel: int, procs: list[tuple[float, float]], worker: str | None = None) -> dict:
    """A schema-2 row: per process (median seconds, ratio to its interleaved copy baseline)."""
    backend = api.split(":")[0]
    medians = [m for m, _ in procs]
    return {"name": f"{api}-{numel}", "stats": {"median": float(np.median(medians)), "data": medians},
            "extra_info": {"backend": backend, "api": api, "direction": "forward", "device": "cpu",
                           "dtype": "float32", "numel": numel, "mode": "eager", "worker": worker or backend,
                           "processes": [{"process": i, "median": m, "source": "interleaved", "ratio_copy": r,
                                          "ratio_rng32": None, "data": [m]} for i, (m, r) in enumerate(procs)]}}


def _payload(rows: list[dict]) -> dict:
    return {**bench_payload(rows), "schema": 2}


def _procs(rng: np.random.Generator, seconds: float, ratio: float, k: int, noise: float, shift: float = 1.0):
    """k processes: each shifted by a common machine factor (shift) and its own lognormal noise."""
    return [(seconds * shift * math.exp(rng.normal(0, noise)), ratio * math.exp(rng.normal(0, noise / 4)))
            for _ in range(k)]


def test_student_t_tail_by_hand() -> None:
    """t = 2.776 with 4 df is the two-sided 5 % point; t = 0 is the median; df = 1 is Cauchy: P(T > 1) = 1/4."""
    assert student_t_sf(2.7764451, 4) == pytest.approx(0.025, rel=1e-5)
    assert student_t_sf(0.0, 7.5) == pytest.approx(0.5)
    assert student_t_sf(1.0, 1) == pytest.approx(0.25, rel=1e-9)
    assert student_t_sf(-1.0, 1) == pytest.approx(0.75, rel=1e-9)


def test_welch_on_logs_by_hand() -> None:
    """logs 0, 0.1, 0.2 vs 0.3, 0.4, 0.5: difference 0.3, variances 0.01 each, se = sqrt(2 * 0.01 / 3),
    t = 3.674, df = 4: two-sided p = 0.02131."""
    p = welch_log(np.exp([0.0, 0.1, 0.2]), np.exp([0.3, 0.4, 0.5]))
    assert p == pytest.approx(0.021312, rel=1e-4)
    with pytest.raises(CannotTest):
        welch_log([1.0], [1.0, 2.0])


def test_process_verdicts_need_both_ratio_and_significance() -> None:
    assert judge_processes([1.0, 1.01, 0.99], [1.3, 1.31, 1.29], threshold=0.1, alpha=0.05)[2] == "regression"
    assert judge_processes([1.3, 1.31, 1.29], [1.0, 1.01, 0.99], threshold=0.1, alpha=0.05)[2] == "improvement"
    # 30 % slower in the medians, but one process of each side is far off: not significant
    assert judge_processes([1.0, 0.5, 2.0], [1.3, 0.6, 2.4], threshold=0.1, alpha=0.05)[2] == "unchanged"
    # significant but below the threshold
    assert judge_processes([1.0, 1.001, 0.999], [1.05, 1.051, 1.049], threshold=0.1, alpha=0.05)[2] == "unchanged"


def test_whole_run_shift_is_not_a_regression_when_normalized() -> None:
    """The new run's machine is 30 % slower for everything, baselines included (a busy neighbour): in raw
    seconds that is a regression, normalized by the same process's copy baseline it is unchanged. Catches
    normalize ignored, or the baseline rows normalized by themselves (they would always read 1)."""
    rng = np.random.default_rng(7)
    def run(shift):
        return _payload([_row("numpy:fast", 2**22, _procs(rng, 0.01, 3.0, 3, 0.01, shift)),
                         _row("baseline:copy", 2**22, _procs(rng, 0.003, 1.0, 3, 0.01, shift), worker="numpy")])
    old, new = run(1.0), run(1.3)
    raw = {r.key[0]: r.verdict for r in compare_runs(old, new, threshold=0.1, alpha=0.05, normalize="none")}
    norm = {r.key[0]: r for r in compare_runs(old, new, threshold=0.1, alpha=0.05, normalize="copy")}
    assert raw == {"numpy:fast": "regression", "baseline:copy": "regression"}
    assert norm["numpy:fast"].verdict == "unchanged" and norm["numpy:fast"].method == "welch-processes"
    assert norm["baseline:copy"].verdict == "regression"  # baselines are compared in seconds
    assert norm["numpy:fast"].processes == (3, 3)


def test_rows_timed_with_different_buffer_sets_are_refused_not_judged() -> None:
    """A harness change is not a code change: NEW's 2^22 row rotated 4 buffer sets (the harness since
    issue 26) and is 10 % slower for it, OLD's (an older file, no field: one set) did not. The verdict is
    no-data naming both counts, not "regression"; with the same count on both sides the same figures are
    judged. Catches the field ignored, or a missing field read as anything but one set."""
    old_procs, new_procs = [(1.0, 3.0), (1.01, 3.0), (0.99, 3.0)], [(1.1, 3.3), (1.11, 3.3), (1.09, 3.3)]
    old, new = _row("numpy:fast", 2**22, old_procs), _row("numpy:fast", 2**22, new_procs)
    new["extra_info"]["buffer_sets"] = 4
    [refused] = compare_runs(_payload([old]), _payload([new]), threshold=0.05, alpha=0.05)
    assert refused.verdict == "no-data" and refused.p_value is None
    assert "OLD rotated 1 buffer set(s), NEW 4" in refused.detail
    old["extra_info"]["buffer_sets"] = 4
    [judged] = compare_runs(_payload([old]), _payload([new]), threshold=0.05, alpha=0.05)
    assert judged.verdict == "regression" and judged.method == "welch-processes"


def test_synthetic_aa_false_alarms_and_power_at_the_defaults() -> None:
    """Model: 3 processes a side, each process off by lognormal noise of 4 % (sd), 40 rows, 50 A/A pairs
    (seed fixed). At the default threshold (0.05) and alpha (0.05) a flag needs |log ratio| > 0.049 AND
    Welch p < 0.05; the rate is at most alpha and, by simulation of this model (10 000 rows, other
    seeds), 2.4 %. Bounds: the A/A count over 2000 independent rows is Binomial(2000, p <= 0.03), so
    > 110 has probability < 1e-7; power: each 25 % row is missed with probability < 0.05, 200 rows,
    >= 150 hits fails < 1e-12."""
    rng = np.random.default_rng(11)
    flagged = hits = 0
    for _ in range(50):
        rows_old, rows_new, slow_old, slow_new = [], [], [], []
        for i in range(40):
            rows_old.append(_row(f"numpy:api{i}", 2**22, _procs(rng, 0.01, 3.0, 3, 0.04)))
            rows_new.append(_row(f"numpy:api{i}", 2**22, _procs(rng, 0.01, 3.0, 3, 0.04)))
        for i in range(4):
            slow_old.append(_row(f"calib:slow{i}", 2**22, _procs(rng, 0.01, 3.0, 3, 0.04)))
            slow_new.append(_row(f"calib:slow{i}", 2**22, _procs(rng, 0.0125, 3.75, 3, 0.04)))
        results = compare_runs(_payload(rows_old + slow_old), _payload(rows_new + slow_new),
                               threshold=DEFAULT_THRESHOLD, alpha=DEFAULT_ALPHA, normalize="none")
        flagged += sum(r.verdict != "unchanged" for r in results if r.key[0].startswith("numpy:"))
        hits += sum(r.verdict == "regression" for r in results if r.key[0].startswith("calib:"))
    assert flagged <= 110
    assert hits >= 150


def test_results_sorted_by_ratio_and_filtered_by_api() -> None:
    rng = np.random.default_rng(3)
    old = _payload([_row(f"numpy:a{i}", 64, _procs(rng, 1.0, 1.0, 3, 0.01)) for i in range(3)])
    new = _payload([_row(f"numpy:a{i}", 64, _procs(rng, f, 1.0, 3, 0.01)) for i, f in enumerate((1.0, 2.0, 0.5))])
    results = compare_runs(old, new, normalize="none")
    assert [r.key[0] for r in results] == ["numpy:a1", "numpy:a0", "numpy:a2"]
    assert [r.key[0] for r in compare_runs(old, new, apis=("numpy:a2",), normalize="none")] == ["numpy:a2"]
    with pytest.raises(ValueError, match="sideways"):
        compare_runs(old, new, normalize="sideways")


def test_cli_api_filter_normalize_and_verdict_line(tmp_path) -> None:
    rng = np.random.default_rng(4)
    old = write_run(tmp_path / "o.json", _payload([_row("numpy:fast", 64, _procs(rng, 1.0, 2.0, 3, 0.01)),
                                                   _row("numpy:reference", 64, _procs(rng, 1.0, 2.0, 3, 0.01))]))
    new = write_run(tmp_path / "n.json", _payload([_row("numpy:fast", 64, _procs(rng, 1.5, 3.0, 3, 0.01)),
                                                   _row("numpy:reference", 64, _procs(rng, 1.0, 2.0, 3, 0.01))]))
    proc = dropbench("compare", str(old), str(new), "--api", "numpy:reference")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "numpy:fast" not in proc.stdout and "numpy:reference" in proc.stdout
    assert "verdict: 'regression' means the median over processes of new/old times as ratios to the same process" in proc.stdout
    slow = dropbench("compare", str(old), str(new), "--normalize", "copy")
    assert slow.returncode == 1 and "welch-processes" in slow.stdout
    bad = dropbench("compare", str(old), str(new), "--api", "numpy:nope")
    assert bad.returncode == 2 and "numpy:nope" in bad.stderr and "Traceback" not in bad.stderr
    bad_norm = dropbench("compare", str(old), str(new), "--normalize", "sideways")
    assert bad_norm.returncode == 2 and "sideways" in bad_norm.stderr


# ---------------------------------------------------------------------------- scaling fit a + b·n
from suite.report.fit import fit_line, fit_rows  # noqa: E402


def test_fit_recovers_overhead_and_per_element_cost() -> None:
    """t = 3 µs + 0.7 ns·n at four sizes: a and b come back; the line is judged ok."""
    sizes = [2**12, 2**16, 2**20, 2**24]
    fit = fit_line(sizes, [3e-6 + 0.7e-9 * n for n in sizes])
    assert fit.a == pytest.approx(3e-6, rel=1e-6) and fit.b == pytest.approx(0.7e-9, rel=1e-6)
    assert fit.verdict == "ok" and fit.max_residual < 1e-9


def test_fit_flags_a_size_off_the_line_and_two_sizes_are_exact() -> None:
    """One size 60 % slower (a cache step): some size lies > 25 % off any line through the rest -> bad.
    With two sizes the line is exact and not judged. Catches a fit that never says bad."""
    sizes = [2**12, 2**16, 2**20, 2**24]
    times = [3e-6 + 0.7e-9 * n for n in sizes]
    times[2] *= 1.6
    assert fit_line(sizes, times).verdict.startswith("bad")
    assert fit_line(sizes[:2], times[:2]).verdict == "2 sizes: exact"
    # per-element cost 3x higher at the large size (out of cache): the line's overhead goes negative
    assert fit_line([2**16, 2**22], [1e-9 * 2**16, 3e-9 * 2**22]).verdict.startswith("bad: negative")
    assert fit_line([64, 64], [1.0, 1.0]).verdict == "too few sizes"


def test_fit_rows_report_b_as_a_multiple_of_copy() -> None:
    """numpy:reference costs 6x copy per element in the synthetic model (tests/fixtures/synthetic_bench.py)."""
    payload = synthetic_run(sizes=(4096, 65536, 1 << 20), noise=0.0)
    rows = {(r[0], r[2]): r for r in fit_rows(payload["benchmarks"])}
    ref = rows[("numpy:reference", "forward")]
    assert float(ref[8]) == pytest.approx(6.0, rel=0.01)
    assert float(ref[6]) == pytest.approx(2.0, rel=0.01)  # the model's 2 µs overhead, in µs
    assert ref[10] == "ok"


def test_cpu_clock_ignores_time_spent_waiting_for_a_core() -> None:
    """The new run waited for a core (wall 40 % slower) but used the same CPU time: --clock cpu says
    unchanged, wall says regression. Catches the clock option being ignored."""
    def row(wall: float, cpu: float) -> dict:
        r = _row("numpy:fast", 2**22, [(wall * f, 1.0) for f in (1.0, 1.01, 0.99)])
        for p, f in zip(r["extra_info"]["processes"], (1.0, 1.01, 0.99)):
            p["cpu_median"] = cpu * f
        return r
    old, new = _payload([row(1.0, 0.5)]), _payload([row(1.4, 0.5)])
    assert compare_runs(old, new, clock="wall")[0].verdict == "regression"
    assert compare_runs(old, new, clock="cpu")[0].verdict == "unchanged"
    with pytest.raises(ValueError, match="sundial"):
        compare_runs(old, new, clock="sundial")
