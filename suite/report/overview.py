"""The top of report.html: conformance per API (from verify files) and the difference map (from probe files).

Why a module of its own: these two answers need no pandas and no plots, only the records verify and probe
wrote; build.py places them above the speed chart and the detailed tables.
"""
from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from suite.probe import cases as probes
from suite.verify.coverage import coverage

FAILED = ("fail", "error", "crash", "timeout")
ALL_APIS = "(every API)"  # the API part of a backend that did not run
VERDICTS = ("failed", "not certified", "known divergence", "certified")
VERDICT_CLASS = {"failed": "v-failed", "not certified": "v-uncert", "known divergence": "v-known", "certified": "v-ok",
                 "did not run": "v-uncert"}
OUTCOME_COLOURS = {
    "inverted": "#a1d99b", "identity": "#c6dbef", "zeros": "#d9d9d9", "vanilla": "#fdd0a2", "nan": "#fb6a4a",
    "empty": "#f2f2f2", "other": "#ffe066", "error": "#b4a7d6", "crash": "#5b3a8c", "timeout": "#5b3a8c",
    "n/a": "#ffffff",
}
"""One colour per outcome of the probe vocabulary (suite.probe.cases.OUTCOMES): the classes of probe-matrix.md."""
CSS = (
    ".chips{display:flex;flex-wrap:wrap;gap:4px}.chip{border-radius:3px;padding:1px 6px;font-size:13px;white-space:nowrap}"
    ".v-ok{background:#d8f0d2}.v-known{background:#ffe8a8}.v-failed{background:#f8c4c0}.v-uncert{background:#e4e4e4}"
    ".conf td{vertical-align:top;white-space:normal;text-align:left}.conf td:first-child{white-space:nowrap;font-weight:600}"
    ".why{font-size:13px;color:#333;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:1080px;margin-top:2px}"
    ".why .chip{font-size:12px}"
    "table.grid{border-collapse:separate;border-spacing:1px;margin:.3em 0 .5em}"
    "table.grid td,table.grid th{border:none;padding:0;background:none}"
    "table.grid th.case{height:118px;width:26px;vertical-align:bottom;font-weight:normal;font-size:11px;background:none}"
    "table.grid th.case div{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;margin:0 auto}"
    "table.grid th.api{text-align:right;font-weight:normal;font-size:12px;padding-right:6px;background:none;white-space:nowrap}"
    "table.grid td.cell{width:26px;height:17px;text-align:center;font-size:10px;line-height:17px;color:#222;"
    "box-shadow:inset 0 0 0 1px rgba(0,0,0,.08)}"
    "table.grid td.departs{box-shadow:inset 0 0 0 2px #c0392b;font-weight:700}"
    ".legend{display:flex;flex-wrap:wrap;gap:10px;font-size:12px;align-items:center;margin:.2em 0 .6em}"
    ".legend span.sw{display:inline-block;width:14px;height:12px;margin-right:3px;vertical-align:middle;"
    "box-shadow:inset 0 0 0 1px rgba(0,0,0,.2)}"
)


# ------------------------------------------------------------------------------------ conformance


@dataclass(frozen=True)
class Verdict:
    """One API's answer to "does it conform": the verdict and, unless certified, the check and why."""

    api: str
    verdict: str  # one of VERDICTS, or "did not run"
    check: str = ""
    detail: str = ""

    @property
    def backend(self) -> str:
        return self.api.split(":", 1)[0]


def api_verdicts(payloads: Sequence[dict[str, Any]]) -> list[Verdict]:
    """Per API (first-seen order) from verify payloads: failed (a check failed, errored or its worker died) before
    not certified (a family of the scaling(s) it declares never ran) before known divergence before certified, as
    `dropbench verify` decides; a backend that did not run is listed with its reason."""
    records = [r for p in payloads for r in p.get("records") or []]
    out: list[Verdict] = []
    certified = {c.api: c for c in coverage(records)}
    by_api: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_api.setdefault(str(r.get("api")), []).append(r)
    for api, rs in by_api.items():
        failed = [r for r in rs if r.get("status") in FAILED]
        known = [r for r in rs if r.get("status") == "known"]
        cov = certified.get(api)
        if failed:
            out.append(Verdict(api, "failed", str(failed[0]["check"]), f"{failed[0]['status']}: {failed[0].get('detail', '')}"
                               + (f" (+{len(failed) - 1} more checks)" if len(failed) > 1 else "")))
        elif cov is None or not cov.certified:
            out.append(Verdict(api, "not certified", "", cov.reason if cov else "no check ran"))
        elif known:
            detail = str(known[0].get("detail", ""))
            reason = detail.rsplit("[known: ", 1)[-1].rstrip("]") if "[known: " in detail else detail
            out.append(Verdict(api, "known divergence", str(known[0]["check"]), reason
                               + (f" (+{len(known) - 1} more checks)" if len(known) > 1 else "")))
        else:
            out.append(Verdict(api, "certified"))
    seen = {v.backend for v in out}
    for p in payloads:
        for b in p.get("backends") or []:
            if isinstance(b, dict) and b.get("status") != "ok" and b.get("backend") not in seen:
                seen.add(str(b.get("backend")))
                out.append(Verdict(f"{b.get('backend')}:{ALL_APIS}", "did not run", "", f"{b.get('status')}: {b.get('reason')}"))
    return out


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def conformance_html(verdicts: Sequence[Verdict], sources: Sequence[Path]) -> str:
    """Counts, then one row per backend: its APIs as chips coloured by verdict; below each backend the
    check and reason of every API that is not simply certified (the full detail on hover)."""
    counts = Counter(v.verdict for v in verdicts)
    line = " ".join(f"<span class='chip {VERDICT_CLASS[k]}'>{counts[k]} {html.escape(k)}</span>"
                    for k in (*VERDICTS, "did not run") if counts[k])
    rows = []
    backends: dict[str, list[Verdict]] = {}
    for v in verdicts:
        backends.setdefault(v.backend, []).append(v)
    for backend, vs in backends.items():
        chips = "".join(
            f"<span class='chip {VERDICT_CLASS[v.verdict]}' title='{html.escape(f'{v.api}: {v.verdict} {v.check} {v.detail}'.strip())}'>"
            f"{html.escape(v.api.split(':', 1)[1])}</span>" for v in vs)
        why = "".join(f"<div class='why' title='{html.escape(v.detail)}'><span class='chip {VERDICT_CLASS[v.verdict]}'>"
                      f"{html.escape(v.api.split(':', 1)[1])}</span> {html.escape(v.verdict)}"
                      + (f" <code>{html.escape(v.check)}</code>" if v.check else "")
                      + f" — {html.escape(_short(v.detail, 400))}</div>"
                      for v in vs if v.verdict != "certified")
        rows.append(f"<tr><td>{html.escape(backend)}</td><td><div class='chips'>{chips}</div>{why}</td></tr>")
    names = ", ".join(html.escape(str(s)) for s in sources)
    return (f"<p class='caption'>{line} — from {names}. Certified: every check that ran passed and every family of the "
            "scaling(s) it declares ran; known divergence: a failure documented in backends/known_divergences.toml (with its upstream "
            "link); failed: a check failed or errored (the first failing check is named, every record is in the "
            "details below).</p>\n"
            f"<table class='conf'><tbody>{''.join(rows)}</tbody></table>\n")


# ------------------------------------------------------------------------------------ the difference map


def _order(payload: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(case ids, api ids) in the order of the run; cases with no record left out."""
    present = {r["case"] for r in payload["records"]}
    cases = [c["id"] for c in payload.get("cases") or [] if c["id"] in present]
    cases += sorted(present - set(cases))
    apis: list[str] = []
    for r in payload["records"]:
        if r["api"] not in apis:
            apis.append(r["api"])
    return cases, apis


def variants(records: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Cell label -> letter within one case: "" for the most common answer, B the next, C ...; one answer: no letters.

    So the map shows where an API answers differently from most, whatever the colour (a convention case's
    answers are findings of one outcome class, e.g. "same mask" vs "fresh mask", both "inverted")."""
    counts = Counter(probes.cell_label(r) for r in records if r["outcome"] != "n/a")
    ranked = sorted(counts, key=lambda label: (-counts[label], label))
    return {label: "" if i == 0 else chr(ord("A") + i) if i < 26 else "*" for i, label in enumerate(ranked)}


def grid_html(payload: dict[str, Any], source: Path) -> str:
    """The probe matrix as a coloured grid, APIs x cases: colour = outcome class, letter = which of the case's
    answers (A the most common), red frame = departs from the spec; the cell's text on hover."""
    cases, apis = _order(payload)
    by_cell = {(r["api"], r["case"]): r for r in payload["records"]}
    letters = {c: variants(r for r in payload["records"] if r["case"] == c) for c in cases}
    why = {c["id"]: c.get("why", "") for c in payload.get("cases") or []}
    head = "".join(f"<th class='case' title='{html.escape(c + ': ' + why.get(c, ''))}'><div>{html.escape(c)}</div></th>"
                   for c in cases)
    body = []
    for api in apis:
        cells = []
        for case in cases:
            r = by_cell.get((api, case))
            if r is None:
                cells.append("<td class='cell' title='not run'></td>")
                continue
            label = probes.cell_label(r)
            off = probes.departs(r)
            text = f"{api} · {case}: {label}"
            if r.get("expected"):
                text += f" (spec: {r['expected']})"
            if r.get("message"):
                text += f" — {_short(r['message'], 300)}"
            colour = OUTCOME_COLOURS.get(str(r["outcome"]), "#ffffff")
            cls = "cell departs" if off else "cell"
            cells.append(f"<td class='{cls}' style='background:{colour}' title='{html.escape(text)}'>"
                         f"{html.escape(letters[case].get(label, '') if r['outcome'] != 'n/a' else '')}</td>")
        body.append(f"<tr><th class='api'>{html.escape(api)}</th>{''.join(cells)}</tr>")
    legend = "".join(f"<span><span class='sw' style='background:{col}'></span>{html.escape(name)}</span>"
                     for name, col in OUTCOME_COLOURS.items() if name not in ("timeout",))
    departing = sum(1 for r in payload["records"] if probes.departs(r))
    machine = (payload.get("machine") or {}).get("id", "?")
    caption = (f"{machine}: {len(apis)} APIs × {len(cases)} cases from {html.escape(str(source))}; {departing} cells depart "
               "from the spec (red frame). Colour: the outcome (the classes of probe-matrix.md); letter: which of the "
               "case's answers the API gave, where it is not the most common one (B the second most common, C ...); hover a cell "
               "for its text, a column head for the case. The full matrix, as text, is in the details below.")
    return (f"<div class='legend'>{legend}<span><span class='sw' style='box-shadow:inset 0 0 0 2px #c0392b'></span>"
            f"departs from the spec</span><span><b>B</b>, <b>C</b>, …: not the case's most common answer</span></div>\n"
            f"<div class='wide'><table class='grid'><thead><tr><th></th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>\n<p class='caption'>{caption}</p>\n")


def matrix_rows(payload: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The matrix as text for the details table: headers (case, spec, APIs) and one row per case."""
    cases, apis = _order(payload)
    labels = {(r["case"], r["api"]): probes.cell_label(r) for r in payload["records"]}
    expected = {r["case"]: r.get("expected") or "" for r in payload["records"]}
    return ["case", "spec", *apis], [[c, expected.get(c, ""), *(labels.get((c, a), "") for a in apis)] for c in cases]


def answer_lines(verify: Sequence[dict[str, Any]], probe: Sequence[dict[str, Any]]) -> list[str]:
    """The page's first two answers as terminal lines: verdict counts, and the size of each difference map."""
    lines = []
    if verify:
        counts = Counter(v.verdict for v in api_verdicts(verify))
        lines.append("conformance: " + ", ".join(f"{counts[k]} {k}" for k in (*VERDICTS, "did not run") if counts[k]))
    for payload in probe:
        cases, apis = _order(payload)
        off = sum(1 for r in payload["records"] if probes.departs(r))
        lines.append(f"difference map ({(payload.get('machine') or {}).get('id', '?')}): {len(apis)} APIs x "
                     f"{len(cases)} cases, {off} cells depart from the spec")
    return lines
