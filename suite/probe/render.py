"""Turn a probe run (probe.json) into the case x API matrix (markdown, CSV) and the README section.

Everything here is derived from the records and from backends/probe_notes.toml (one-line
consequences and upstream links, as data); nothing is typed by hand into the output, so the
README section is regenerated, never edited. Also splices that section into a README between
``<!-- probe:begin -->`` and ``<!-- probe:end -->``, atomically.
"""
from __future__ import annotations

import csv
import io
import os
from collections import OrderedDict
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Iterable

import tomllib

from backends import PROBE_NOTES_FILE
from suite.probe import cases as probes
from suite.runtime.jsonio import atomic_write_text
from suite.runtime.loader import UsageError

NOTES_FILE = PROBE_NOTES_FILE
BEGIN, END = "<!-- probe:begin -->", "<!-- probe:end -->"
SECTION_TITLE = "How the frameworks differ"
NO_NOTE = "*(no note yet: add one to backends/probe_notes.toml)*"


# -- notes (data) ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Note:
    cases: tuple[str, ...]
    apis: tuple[str, ...]  # fnmatch patterns over API ids
    consequence: str
    link: str = ""

    def covers(self, case: str, api: str) -> bool:
        return case in self.cases and any(fnmatchcase(api, p) for p in self.apis)


@dataclass(frozen=True)
class Notes:
    notes: tuple[Note, ...]
    parameter: dict[str, str]  # api -> the argument the rate goes to
    switch: dict[str, str]  # api -> how training is switched off

    def find(self, case: str, api: str) -> Note | None:
        return next((n for n in self.notes if n.covers(case, api)), None)


def load_notes(path: Path = NOTES_FILE) -> Notes:
    with Path(path).open("rb") as handle:
        data = tomllib.load(handle)
    notes = tuple(Note(tuple(n["cases"]), tuple(n["apis"]), " ".join(n["consequence"].split()), n.get("link", ""))
                  for n in data.get("note", []))
    return Notes(notes, dict(data.get("parameter", {})), dict(data.get("switch", {})))


# -- the matrix ------------------------------------------------------------------------------------------
def _order(payload: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(case ids, api ids) in run order; cases of the payload first, then any unknown ones."""
    cases = [c["id"] for c in payload.get("cases", [])]
    apis: list[str] = []
    for record in payload["records"]:
        if record["api"] not in apis:
            apis.append(record["api"])
        if record["case"] not in cases:
            cases.append(record["case"])
    present = {r["case"] for r in payload["records"]}
    return [c for c in cases if c in present], apis


def cells(payload: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(case, api) -> matrix cell label."""
    return {(r["case"], r["api"]): probes.cell_label(r) for r in payload["records"]}


def _is_convention(case_id: str) -> bool:
    case = probes.BY_ID.get(case_id)
    return bool(case and case.convention)


def matrix_csv(payload: dict[str, Any]) -> str:
    cases, apis = _order(payload)
    table = cells(payload)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["case", *apis])
    for case in cases:
        writer.writerow([case, *(table.get((case, api), "") for api in apis)])
    return out.getvalue()


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(headers: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines.extend("| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows)
    return "\n".join(lines)


def _versions_line(payload: dict[str, Any]) -> str:
    versions = payload.get("versions", {})
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def _skipped(payload: dict[str, Any]) -> list[str]:
    return [f"{b['backend']}: {b['status']} — {b.get('reason')}" for b in payload.get("backends", []) if b.get("status") != "ok"]


def _short_api(api: str) -> str:
    return api.split(":", 1)[1] if ":" in api else api


def _vocabulary(payload: dict[str, Any]) -> list[str]:
    """OUTCOMES, less the dropout family's labels where no record has them (a map of Bernoulli APIs only)."""
    seen = {r.get("outcome") for r in payload["records"]}
    return [o for o in probes.OUTCOMES if o not in probes.FAMILY or o in seen]


def matrix_markdown(payload: dict[str, Any]) -> str:
    """The full matrix: edge cases, conventions, the error messages, the cases' reasons."""
    cases, apis = _order(payload)
    table = cells(payload)
    by_case: dict[str, list[dict[str, Any]]] = {}
    for r in payload["records"]:
        by_case.setdefault(r["case"], []).append(r)
    expected = {case: case_expected(records) for case, records in by_case.items()}
    headers = ["case", "spec", *apis]
    parts = [
        "# Probe matrix: what each dropout API really does",
        "",
        f"Generated by `dropbench probe` (seed {payload.get('seed')}, {payload.get('created', '?')}); "
        f"{_versions_line(payload)}. Input: float32 ones of shape (64, 64), training, rate 0.5, unless the case says "
        "otherwise. Outcomes, decided in this order: " + ", ".join(f"`{o}`" for o in _vocabulary(payload)) + ". "
        "`-> dtype`: the output dtype differs from the input's. `spec`: what the DropoutSpec prescribes "
        "(blank: the spec is silent).",
        "",
    ]
    for title, conv in (("Edge cases", False), ("Conventions (measured)", True)):
        rows = [[c, expected.get(c) or "", *(table.get((c, a), "") for a in apis)] for c in cases if _is_convention(c) == conv]
        if rows:
            parts += [f"## {title}", "", _md_table(headers, rows), ""]
    failures: OrderedDict[tuple[str, str, str], list[str]] = OrderedDict()
    for r in payload["records"]:
        if r["outcome"] in ("error", "crash", "timeout"):
            key = (r["case"], probes.cell_label(r), r.get("message") or "")
            failures.setdefault(key, []).append(r["api"])
    if failures:
        parts += ["## Errors, crashes and timeouts", "",
                  _md_table(["case", "outcome", "APIs", "message"],
                            [[case, label, ", ".join(a), msg] for (case, label, msg), a in failures.items()]), ""]
    parts += ["## Cases", "", _md_table(["case", "rate", "input", "why"],
                                         [[c["id"], c["rate"], f"{c['dtype']} {tuple(c['shape'])}", c["why"]]
                                          for c in payload.get("cases", []) if c["id"] in cases]), ""]
    skipped = _skipped(payload)
    if skipped:
        parts += ["## Not run", "", *[f"- {s}" for s in skipped], ""]
    return "\n".join(parts)


# -- differences ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """A case where APIs depart from the spec (``expected`` set) or, where it is silent, disagree."""

    case: str
    expected: str | None
    groups: tuple[tuple[str, tuple[str, ...]], ...]  # (cell label, api ids) for the departing/disagreeing APIs


def case_expected(records: list[dict[str, Any]]) -> str | None:
    """The spec column of a case: the first record's expected that ran (n/a records of another dropout kind
    prescribe nothing); each record's own ``expected`` still decides whether it departs."""
    ran = [r for r in records if r["outcome"] != "n/a"] or records
    return ran[0].get("expected") if ran else None


def differences(payload: dict[str, Any]) -> list[Difference]:
    cases, _ = _order(payload)
    by_case: dict[str, list[dict[str, Any]]] = {c: [] for c in cases}
    for r in payload["records"]:
        by_case[r["case"]].append(r)
    out = []
    for case in cases:
        records = by_case[case]
        expected = case_expected(records)
        groups: OrderedDict[str, list[str]] = OrderedDict()
        if expected is not None:
            for r in records:
                if probes.departs(r):
                    groups.setdefault(probes.cell_label(r), []).append(r["api"])
        else:
            for r in records:
                if r["outcome"] != "n/a":
                    groups.setdefault(probes.cell_label(r), []).append(r["api"])
            if len(groups) < 2:
                groups.clear()
        if groups:
            out.append(Difference(case, expected, tuple((label, tuple(a)) for label, a in groups.items())))
    return out


def missing_notes(payload: dict[str, Any], notes: Notes) -> list[tuple[str, str]]:
    """What no note explains: every departing (case, api); for a split where the spec is silent, the case.

    A silent split is explained by any note of its case (it explains the split as a whole);
    its (case, api) is then reported as (case, "*").
    """
    missing = []
    for d in differences(payload):
        apis = [api for _, group in d.groups for api in group]
        if d.expected is None:
            if not any(notes.find(d.case, api) for api in apis):
                missing.append((d.case, "*"))
        else:
            missing.extend((d.case, api) for api in apis if notes.find(d.case, api) is None)
    return missing


def api_list(apis: Iterable[str]) -> str:
    """``mxnet `nd.Dropout`, `gluon.nn.Dropout`; tensorflow `tf.nn.dropout``` (grouped by backend)."""
    grouped: OrderedDict[str, list[str]] = OrderedDict()
    for api in apis:
        backend, _, name = api.partition(":")
        grouped.setdefault(backend, []).append(f"`{name}`")
    return "; ".join(f"{backend} {', '.join(names)}" for backend, names in grouped.items())


def _note_text(note: Note | None) -> str:
    if note is None:
        return NO_NOTE
    return note.consequence + (f" ([upstream]({note.link}))" if note.link else "")


def _notes_of(case: str, apis: Iterable[str], notes: Notes) -> str:
    """The distinct notes covering any of ``apis`` in ``case``, joined; NO_NOTE when there is none."""
    found = list(dict.fromkeys(n for n in (notes.find(case, api) for api in apis) if n is not None))
    return " ".join(_note_text(n) for n in found) if found else NO_NOTE


def _split(groups: Iterable[tuple[str, Iterable[str]]]) -> str:
    return "; ".join(f"`{label}`: {api_list(apis)}" for label, apis in groups)


def _difference_lines(diffs: list[Difference], notes: Notes) -> list[str]:
    """One line per (observed label, APIs, note), cases with the very same line merged into one."""
    merged: OrderedDict[tuple[Any, ...], list[str]] = OrderedDict()
    for d in diffs:
        if d.expected is None:  # the split as a whole is the difference
            apis = [api for _, group in d.groups for api in group]
            key: tuple[Any, ...] = ("the spec is silent", _split(d.groups), _notes_of(d.case, apis, notes))
            merged.setdefault(key, []).append(d.case)
            continue
        for label, apis in d.groups:
            by_note: OrderedDict[Note | None, list[str]] = OrderedDict()
            for api in apis:
                by_note.setdefault(notes.find(d.case, api), []).append(api)
            for note, group in by_note.items():
                key = (f"spec: `{d.expected}`", f"{api_list(group)}: `{label}`", _note_text(note))
                merged.setdefault(key, []).append(d.case)
    return [f"- {', '.join(f'**{c}**' for c in cases)} ({spec}) — {observed}. {text}"
            for (spec, observed, text), cases in merged.items()]


def _groups(records: Iterable[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    groups: OrderedDict[str, list[str]] = OrderedDict()
    for r in records:
        groups.setdefault(probes.cell_label(r), []).append(r["api"])
    return list(groups.items())


def _agreement(records: list[dict[str, Any]]) -> str:
    groups = _groups(records)
    if len(groups) == 1:
        return f"`{groups[0][0]}` for all {len(groups[0][1])} APIs"
    return _split(groups)


def section_markdown(payload: dict[str, Any], notes: Notes, *, matrix_link: str = "results/probe/matrix.md",
                     json_link: str = "results/probe/probe.json") -> str:
    """The README section "How the frameworks differ", from the data only."""
    cases, apis = _order(payload)
    diffs = differences(payload)
    records_of = {c: [r for r in payload["records"] if r["case"] == c] for c in cases}
    parts = [
        f"## {SECTION_TITLE}",
        "",
        "<!-- generated by `dropbench probe` from the probe.json linked below (`dropbench probe --from "
        "results/probe/probe.json --readme README.md` rewrites it); edit backends/probe_notes.toml, not this text -->",
        f"`dropbench probe` runs {len(cases)} edge cases and conventions through each of {len(apis)} APIs and records "
        f"what happens, without judging ({_versions_line(payload)}). Full matrix: [{matrix_link}]({matrix_link}); "
        f"raw records: [{json_link}]({json_link}). Each line: the case, the APIs that depart from the spec (or, where "
        "the spec is silent, how they split), and what that means when you port a model.",
        "",
        "### Edge cases",
        "",
    ]
    edge = [d for d in diffs if not _is_convention(d.case)]
    parts.extend(_difference_lines(edge, notes) if edge else ["Every API agrees with the spec on every edge case."])
    parts += ["", "### Conventions (measured)", ""]
    departures = {d.case: d for d in diffs}
    whys = {c["id"]: c.get("why", "") for c in payload.get("cases", [])}
    for case in cases:
        if not _is_convention(case):
            continue
        why = whys.get(case, "")
        line = f"- **{case}** — {why} {_agreement(records_of[case])}."
        if case in departures:
            line += " " + _notes_of(case, [a for _, g in departures[case].groups for a in g], notes)
        parts.append(line)
    if "eval" in records_of and notes.switch:
        ran = [r for r in records_of["eval"] if r["outcome"] != "n/a"]
        by_switch: OrderedDict[str, list[str]] = OrderedDict()
        for r in ran:
            by_switch.setdefault(notes.switch.get(r["api"], "?"), []).append(r["api"])
        none = [r["api"] for r in records_of["eval"] if r["outcome"] == "n/a"]
        parts.append(f"- **training mode** — the `eval` case gives {_agreement(ran)}, switched off by "
                     + "; ".join(f"{how}: {api_list(a)}" for how, a in by_switch.items())
                     + (f". No inference mode at all (remove the call at inference): {api_list(none)}." if none else "."))
    if "keep-vs-rate" in records_of and notes.parameter:
        by_param: OrderedDict[str, list[str]] = OrderedDict()
        for r in records_of["keep-vs-rate"]:
            by_param.setdefault(notes.parameter.get(r["api"], "?"), []).append(r["api"])
        parts.append("- **keep_prob vs rate** — the argument the rate goes to: "
                     + "; ".join(f"`{p}`: {api_list(a)}" for p, a in by_param.items())
                     + f"; measured at rate 0.1: {_agreement(records_of['keep-vs-rate'])}.")
    skipped = _skipped(payload)
    if skipped:
        parts += ["", "Not run here: " + "; ".join(skipped) + "."]
    return "\n".join(parts).rstrip() + "\n"


# -- agreement with known_divergences.toml (the data of `verify`) ---------------------------------------------
def known_disagreements(payload: dict[str, Any], known: Iterable[Any]) -> list[str]:
    """Where the probe map and the known divergences of `verify` tell different stories.

    Forward: each known divergence must be observed as a departure from the spec by every probe
    case that observes one of its checks (``Case.checks``). Converse: every departure in a
    float32 case that observes `verify` checks must be explained by a known divergence (cases in
    other dtypes or with other rate types test what `verify` does not, so they are exempt).
    """
    records = {(r["api"], r["case"]): r for r in payload["records"]}
    ran = {r["api"] for r in payload["records"]}
    known = list(known)
    problems = []
    for entry in known:
        if entry.api not in ran:
            continue
        cases = [c for c in probes.CASES if any(fnmatchcase(check, entry.check) for check in c.checks)]
        if not cases:
            problems.append(f"{entry.api} {entry.check}: known divergence that no probe case observes")
        for case in cases:
            record = records.get((entry.api, case.id))
            if record is not None and record["outcome"] != "n/a" and not probes.departs(record):  # n/a: not observed
                problems.append(f"{entry.api} {case.id}: probe shows `{probes.cell_label(record)}` as the spec says, "
                                f"but known_divergences.toml lists {entry.check}")
    for record in payload["records"]:
        case = probes.BY_ID.get(record["case"])
        if case is None or not case.checks or case.dtype != "float32" or not probes.departs(record):
            continue
        if not any(entry.matches(record["api"], check) for entry in known for check in case.checks):
            problems.append(f"{record['api']} {case.id}: probe shows `{probes.cell_label(record)}` (spec: "
                            f"`{record['expected']}`) but no known divergence matches {', '.join(case.checks)}")
    return problems


# -- README splicing --------------------------------------------------------------------------------------
def check_markers(path: str | os.PathLike[str]) -> str:
    """The README's text, if it has exactly one begin marker followed by exactly one end marker."""
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {str(target)!r}: {exc.strerror or exc}") from None
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise UsageError(f"{str(target)!r} needs exactly one {BEGIN} line followed by one {END} line")
    return text


def splice(text: str, section: str) -> str:
    """``text`` with everything between the markers replaced by ``section`` (markers kept)."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{section.rstrip()}\n{END}{tail}"


def rewrite_readme(path: str | os.PathLike[str], section: str) -> Path:
    """Replace the text between the markers in place, atomically (temp file + rename), keeping its mode."""
    mode = Path(path).stat().st_mode & 0o7777 if Path(path).exists() else None
    written = atomic_write_text(path, splice(check_markers(path), section))
    if mode is not None:
        os.chmod(written, mode)  # the temporary file was created 0600
    return written


def relative_link(target: str | os.PathLike[str], from_file: str | os.PathLike[str]) -> str:
    """``target`` as a link from the folder of ``from_file`` (forward slashes)."""
    return Path(os.path.relpath(Path(target).resolve(), Path(from_file).resolve().parent)).as_posix()
