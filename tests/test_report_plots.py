"""Report plots a reader can use (issue 16): at most MAX_LINES lines per panel, ticks only at measured
sizes, no 'forward' baseline label on a forward+backward plot."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib")
pytest.importorskip("pandas", reason="the report frame needs pandas")

from suite.report import plots  # noqa: E402
from suite.report.build import display_frame, load_run, results_frame  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "amd-epyc-2c-93a595f8" / "20261126T001051Z" / "bench.json"


@pytest.fixture(scope="module")
def disp():
    df, _ = results_frame([load_run(COMMITTED)])
    return display_frame(df)


def test_no_panel_holds_more_than_max_lines_and_every_api_is_drawn(disp) -> None:
    apis = disp[~disp["is_baseline"]]
    layout = plots.panels(apis, n_baselines=2)
    assert all(len(labels) + 2 <= plots.MAX_LINES for _, labels in layout), layout
    drawn = [label for _, labels in layout for label in labels]
    assert sorted(drawn) == sorted(apis["label"].unique())  # each API once
    titles = [title for title, _ in layout]
    assert "tensorflow · eager" in titles and "tensorflow · tf.function" in titles and "numpy" in titles


def test_ticks_only_at_measured_sizes_and_plain_baseline_labels(disp, tmp_path, monkeypatch) -> None:
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    part = disp[(disp["direction"] == "forward_backward") | disp["is_baseline"]]
    plots.throughput_plot(part, tmp_path / "p.png", title="t")
    (fig,) = figures
    measured = sorted(int(n) for n in part["numel"].unique())
    for ax in fig.axes:
        assert sorted(int(t) for t in ax.get_xticks()) == measured
        assert len(ax.get_xticks(minor=True)) == 0
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "baseline:copy" in legend and not any("(forward)" in t for t in legend), legend


def test_ensemble_gap_panels_keep_their_own_y_range(tmp_path, monkeypatch) -> None:
    """The linear panel sits at rounding level (1e-16): a shared y axis flattened the nonlinear ones."""
    from suite.experiments import plots as exp_plots  # noqa: PLC0415 - only this test draws the experiments
    from suite.experiments.ensemble import GapSettings, gap_rows  # noqa: PLC0415

    figures = []
    monkeypatch.setattr(exp_plots, "_save", lambda fig, path: figures.append(fig) or path)
    rows = gap_rows(GapSettings(("linear", "relu"), (2, 4), (0.2, 0.5), 3, 0))
    exp_plots.plot_gap(rows, tmp_path / "gap.png")
    (fig,) = figures
    linear, relu = fig.axes[:2]
    assert linear.get_ylim()[1] < 1e-10 and relu.get_ylim()[0] > 1e-6, (linear.get_ylim(), relu.get_ylim())
    assert fig.get_layout_engine() is not None  # constrained layout: the suptitle is placed above the panel titles


def test_speed_chart_draws_every_api_in_both_directions_and_colours_the_uncertified(disp, tmp_path, monkeypatch) -> None:
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    at = disp[(disp["numel"] == disp["numel"].max()) & (disp["dtype"] == "float32")]
    failing = at[~at["is_baseline"]]["label"].iloc[0].split(" ")[0]
    plots.ratio_plot(at, tmp_path / "s.png", title="t", verdicts={failing: "failed"})
    (fig,) = figures
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    apis = at[~at["is_baseline"]]
    assert sorted(labels) == sorted(apis["label"].unique())  # baselines are the 1x line, not bars
    heights = [bar.get_height() for bar in ax.patches]
    assert len(heights) == 2 * len(labels)  # forward and forward+backward per API (NaN where not timed)
    forward = heights[:len(labels)]
    assert forward == sorted(forward)  # fastest forward first
    red = {t.get_text() for t in ax.get_xticklabels() if t.get_color() == plots.FLAG_COLOURS["failed"]}
    assert red == {label for label in labels if label.split(" ")[0] == failing} and red
