"""results/calibration/duet_calibration.py: how duets are cut to the budget and how compare's defaults are chosen.

The calibration's numbers are measurements (results/calibration/); what is tested here is the bookkeeping
that turns them into modes.json: a cut duet holds exactly the processes it should, and the choice rule
picks what its docstring says on grids whose answer is known.
"""
from __future__ import annotations

import gzip
import json

import pytest

from results.calibration.duet_calibration import (
    BIG,
    DUET_TARGETS,
    SMALL,
    choose,
    duet_windows,
    load_duets,
    target_score,
)


def _side(figures: list[float]) -> dict:
    procs = [{"process": i, "median": f, "cpu_median": f} for i, f in enumerate(figures)]
    return {"schema": 2, "benchmarks": [{"stats": {"median": sorted(figures)[len(figures) // 2]},
                                         "extra_info": {"api": "calibaa:fast", "processes": procs}}]}


def _duet(pairs: int) -> dict:
    return {"kind": "duet", "pairs": pairs, "old": _side([float(i) for i in range(1, pairs + 1)]),
            "new": _side([float(10 + i) for i in range(1, pairs + 1)])}


def _figures(payload: dict, side: str) -> list[float]:
    return [p["cpu_median"] for p in payload[side]["benchmarks"][0]["extra_info"]["processes"]]


def test_a_duet_of_six_pairs_is_two_duets_of_three_with_their_own_medians() -> None:
    first, second = duet_windows(_duet(6), 3)
    assert (_figures(first, "old"), _figures(second, "old")) == ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert (_figures(first, "new"), _figures(second, "new")) == ([11.0, 12.0, 13.0], [14.0, 15.0, 16.0])
    assert first["pairs"] == second["pairs"] == 3
    assert second["old"]["benchmarks"][0]["stats"]["median"] == 5.0
    assert duet_windows(_duet(7), 3)[-1]["old"]["benchmarks"][0]["extra_info"]["processes"][0]["median"] == 4.0
    assert len(duet_windows(_duet(7), 3)) == 2  # the 7th pair alone is no duet of 3
    assert duet_windows(_duet(3), 3) == [_duet(3)] and duet_windows(_duet(6), None) == [_duet(6)]


def test_runs_are_read_gzipped_or_not_and_keyed_by_run_and_window(tmp_path) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "00-alternate.json").write_text(json.dumps(_duet(6)))
    with gzip.open(tmp_path / "runs" / "01-alternate.json.gz", "wt") as f:
        json.dump(_duet(6), f)
    by_layout, log = load_duets(tmp_path, 3)
    assert sorted(by_layout["alternate"]) == [(0, 0), (0, 1), (1, 0), (1, 1)] and log == []


def _rates(aa: float, c25_small: float, c25_big: float, c10_big: float) -> dict:
    return {"aa_rate": aa, "detect": {"calib25": {SMALL: c25_small, BIG: c25_big}, "calib10": {BIG: c10_big}}}


def test_the_score_is_the_worst_met_target_first_and_met_is_met() -> None:
    # 0.71/0.95 is the worst-met target of the first; 0.90/0.90 = 1 and 1.0/0.95 capped at 1
    assert target_score(_rates(0.01, 0.71, 1.0, 0.90), DUET_TARGETS) == pytest.approx((0.71 / 0.95, 1.0, 1.0, -0.01))
    better_worst = _rates(0.04, 0.80, 0.96, 0.80)  # worst 0.80/0.90 = 0.89 beats 0.75 although its 2^22 is lower
    assert target_score(better_worst, DUET_TARGETS) > target_score(_rates(0.0, 0.71, 1.0, 1.0), DUET_TARGETS)


def test_choose_skips_false_alarms_and_breaks_ties_with_the_other_calibration() -> None:
    grid = [{"name": "noisy", "r": _rates(0.06, 1.0, 1.0, 1.0), "loaded": _rates(0.2, 1.0, 1.0, 1.0)},
            {"name": "a", "r": _rates(0.02, 0.7, 1.0, 0.9), "loaded": _rates(0.07, 0.5, 0.6, 0.2)},
            {"name": "b", "r": _rates(0.02, 0.7, 1.0, 0.9), "loaded": _rates(0.07, 0.6, 0.8, 0.2)},
            {"name": "c", "r": _rates(0.01, 0.6, 1.0, 1.0), "loaded": _rates(0.0, 1.0, 1.0, 1.0)}]
    rates, loaded = (lambda g: g["r"]), (lambda g: [g["loaded"]])
    assert choose(grid, rates, DUET_TARGETS)["name"] in ("a", "b")  # tied here; "noisy" flags 6 % of A/A rows
    assert choose(grid, rates, DUET_TARGETS, loaded)["name"] == "b"
    assert choose(grid[:1], rates, DUET_TARGETS)["name"] == "noisy"  # nothing passes: the best of all, not a crash
