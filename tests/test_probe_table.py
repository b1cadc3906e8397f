"""The probe's terminal table shows the spec and marks departures (issue 16), like matrix.md does."""
from __future__ import annotations

from pathlib import Path

from suite.commands.probe import DEPARTS, summary_rows
from suite.probe.cases import BY_ID, cell_label, departs
from suite.runtime.jsonio import read_result

ROOT = Path(__file__).resolve().parents[1]


def test_terminal_table_marks_exactly_the_departing_cells_and_shows_the_spec() -> None:
    payload = read_result(ROOT / "results" / "probe" / "probe.json", kind="probe")
    rows = summary_rows(payload)
    marked, case, spec = set(), None, {}
    for row in rows:
        case = row[0] or case
        if row[0]:
            spec[case] = row[1]
        if row[3] == DEPARTS:
            marked.add((case, row[2]))
    departing = {(r["case"], cell_label(r)) for r in payload["records"] if departs(r)}
    assert departing and marked == departing
    for r in payload["records"]:  # a Gaussian or alpha API's record carries its own kind's label (Case.expected_for)
        own_kind = BY_ID[r["case"]].expected != r.get("expected")
        assert spec[r["case"]] == (r.get("expected") or "(silent)") or r.get("expected") is None or own_kind, r
    assert spec["rate=1"] == "zeros" and spec["int32"] == "(silent)"
