"""The page's top section (issue 27): conformance per API from verify files, the difference map from probe files,
the speed chart; built by `dropbench report` from any mix of files and by `dropbench run` from its own."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("pandas", reason="the report needs pandas")

from suite.commands.run import report_inputs  # noqa: E402
from suite.report import overview  # noqa: E402
from suite.report.build import build_report, load_inputs  # noqa: E402
from suite.runtime.jsonio import ResultFileError, atomic_write_json  # noqa: E402
from tests.fixtures.synthetic_bench import synthetic_run, write_run  # noqa: E402
from tests.fixtures.synthetic_checks import FAILING_CHECK, KNOWN_CHECK, PROBE_APIS, probe_payload, verify_payload  # noqa: E402


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    bench = write_run(tmp_path / "bench.json", synthetic_run(sizes=(4096, 65536), noise=0.0))
    return bench, atomic_write_json(tmp_path / "v.json", verify_payload()), atomic_write_json(tmp_path / "p.json", probe_payload())


def test_verdict_per_api_names_the_failing_check() -> None:
    verdicts = {v.api: v for v in overview.api_verdicts([verify_payload()])}
    assert verdicts["numpy:reference"].verdict == "certified" and verdicts["torch:F.dropout"].verdict == "certified"
    failed = verdicts["torch:nn.Dropout"]
    assert (failed.verdict, failed.check) == ("failed", FAILING_CHECK) and "median y/x = 1.5" in failed.detail
    known = verdicts["tensorflow:tf.nn.dropout"]
    assert (known.verdict, known.check, known.detail) == ("known divergence", KNOWN_CHECK, "rate=1 raises ValueError")
    assert verdicts[f"mxnet:{overview.ALL_APIS}"].verdict == "did not run"


def test_an_api_whose_training_family_never_ran_is_not_certified() -> None:
    payload = {"records": [{"backend": "x", "api": "x:a", "check": "identity/rate=0/float32", "status": "pass",
                            "detail": "ok"}]}
    (v,) = overview.api_verdicts([payload])
    assert v.verdict == "not certified" and "training" in v.detail


def test_grid_has_one_coloured_cell_per_api_and_case_with_its_text() -> None:
    payload = probe_payload()
    page = overview.grid_html(payload, Path("p.json"))
    cells = re.findall(r"<td class='(cell[^']*)' style='background:([^']+)' title='([^']*)'>([^<]*)</td>", page)
    assert len(cells) == len(PROBE_APIS) * len({r["case"] for r in payload["records"]})
    departing = [c for c in cells if "departs" in c[0]]
    assert len(departing) == 1 and "tensorflow:tf.nn.dropout · rate=1: error: ValueError (spec: zeros)" in departing[0][2]
    assert departing[0][1] == overview.OUTCOME_COLOURS["error"] and departing[0][3] == "B"  # not the common answer
    int32 = [c for c in cells if "numpy:reference · int32:" in c[2]]
    assert int32[0][3] == "B" and "inverted -&gt; float64" in int32[0][2]  # the spec is silent: a letter, no frame
    assert all(c[3] == "" for c in cells if " · rate=0.5:" in c[2])  # all agree: no letters


def test_load_inputs_sorts_any_mix_and_names_a_file_it_cannot_use(tmp_path) -> None:
    bench, verify, probe = _files(tmp_path)
    inputs = load_inputs([probe, bench, verify])
    assert [r.path for r in inputs.runs] == [bench] and [p for p, _ in inputs.verify] == [verify]
    assert [p for p, _ in inputs.probe] == [probe]
    odd = atomic_write_json(tmp_path / "odd.json", {"schema": 1, "kind": "experiment"})
    with pytest.raises(ResultFileError, match="odd.json: a 'experiment' file"):
        load_inputs([odd])


def test_page_answers_the_three_questions_first_and_folds_the_tables(tmp_path) -> None:
    bench, verify, probe = _files(tmp_path)
    files = build_report([bench, verify, probe], tmp_path / "out", plots=False)
    page = files.html.read_text(encoding="utf-8")
    heads = [page.index(h) for h in ("Does each dropout conform?", "Where do the frameworks differ?",
                                     "How fast is each?", "<h2>Details</h2>")]
    assert heads == sorted(heads)
    top = page[:heads[-1]]
    assert "class='conf'" in top and "class='grid'" in top and FAILING_CHECK in top
    assert "<table>" not in top  # the detailed tables come after, each in a <details>
    assert page.count("<details>") >= 6 and page.count("</details>") == page.count("<details>")
    assert len(re.findall(r">Machines<", page)) == 1  # one heading (it was an h2 and an h3)
    assert "Probe matrix (" in page and "Verify records that did not pass (" in page


def test_page_from_verify_and_probe_alone(tmp_path) -> None:
    _, verify, probe = _files(tmp_path)
    files = build_report([verify, probe], tmp_path / "out")
    page = files.html.read_text(encoding="utf-8")
    assert "class='grid'" in page and "No bench results among the inputs" in page and files.plots == []
    assert files.answers == ["conformance: 1 failed, 1 known divergence, 2 certified, 1 did not run",
                             f"difference map (test-machine): {len(PROBE_APIS)} APIs x 16 cases, 1 cells depart from the spec"]


def test_the_speed_chart_leads_the_page_when_plots_are_on(tmp_path) -> None:
    pytest.importorskip("matplotlib", reason="the chart needs matplotlib")
    bench, verify, _ = _files(tmp_path)
    files = build_report([bench, verify], tmp_path / "out")
    page = files.html.read_text(encoding="utf-8")
    top = page[:page.index("<h2>Details</h2>")]
    assert top.count("data:image/png") == 1 and "cpu-float32-speed.png" in top
    assert "No probe results among the inputs" in top


def test_run_builds_its_page_from_every_file_it_wrote(tmp_path) -> None:
    assert report_inputs(tmp_path) == []
    bench, verify, _ = _files(tmp_path)
    (tmp_path / "v.json").rename(tmp_path / "verify.json")
    assert report_inputs(tmp_path) == [bench, tmp_path / "verify.json"]
    atomic_write_json(tmp_path / "probe.json", probe_payload())
    assert report_inputs(tmp_path) == [bench, tmp_path / "verify.json", tmp_path / "probe.json"]
