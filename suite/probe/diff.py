"""What changed between two probe runs (`dropbench probe --diff OLD.json NEW.json`): pure, records in, rows out.

Two runs differ in framework versions (a release upgrade: the "torch-prev"/"tf-prev" environments),
in the machine, or in both. Listing the context next to the changed cells says which of those a
changed cell may be due to; nothing here decides it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from suite.probe.cases import cell_label

MISSING = "(not run)"


@dataclass(frozen=True)
class ProbeDiff:
    """Context rows (what, old, new) and cell rows (api, case, old, new) that differ."""

    context: list[tuple[str, str, str]]
    cells: list[tuple[str, str, str, str]]
    compared: int  # (api, case) pairs present in both runs

    @property
    def empty(self) -> bool:
        return not self.context and not self.cells


def _labels(payload: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(r["api"], r["case"]): cell_label(r) for r in payload.get("records", [])}


def _flat(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def _changed(prefix: str, old: dict[str, Any], new: dict[str, Any], keys: list[str] | None = None) -> list[tuple[str, str, str]]:
    names = keys if keys is not None else sorted(set(old) | set(new))
    return [(f"{prefix}{k}", _flat(old.get(k)), _flat(new.get(k))) for k in names
            if _flat(old.get(k)) != _flat(new.get(k))]


_ENV_SUFFIX = re.compile(r"^(?P<name>.+) \((?P<env>[^()]+) env\)$")


def _versions(payload: dict[str, Any]) -> dict[str, str]:
    """Versions by package; a worker environment's "torch (torch-prev env)" key becomes torch = "2.12.1 (torch-prev env)",
    so the same package lines up across a run in the main environment and one in another."""
    out: dict[str, str] = {}
    for key, value in (payload.get("versions") or {}).items():
        m = _ENV_SUFFIX.match(key)
        out[m["name"] if m else key] = f"{value} ({m['env']} env)" if m else str(value)
    return out


def _statuses(payload: dict[str, Any]) -> dict[str, str]:
    """Backend status by the backend's own name (a registry name and a module:attr of one backend line up)."""
    out: dict[str, str] = {}
    for b in payload.get("backends", []):
        key = b["backend"] if b["backend"] not in out else f"{b['backend']} ({b.get('ref')})"
        out[key] = b["status"]
    return out


def diff(old: dict[str, Any], new: dict[str, Any]) -> ProbeDiff:
    """Versions, machine facts, backend status and every cell whose label changed (or that one run lacks)."""
    context = [row for row in _changed("version: ", _versions(old), _versions(new))
               if row[1].split(" (")[0] != row[2].split(" (")[0]]  # the same release in another environment is no change
    machine_old, machine_new = old.get("machine", {}) or {}, new.get("machine", {}) or {}
    context += _changed("machine: ", machine_old, machine_new)  # id, cpu, cores, memory, ... and devices where recorded
    context += _changed("", {"devices": old.get("devices")} if "devices" in old else {},
                        {"devices": new.get("devices")} if "devices" in new else {})
    context += _changed("backend: ", _statuses(old), _statuses(new))
    a, b = _labels(old), _labels(new)
    order = list(dict.fromkeys([*a, *b]))
    cells = [(api, case, a.get((api, case), MISSING), b.get((api, case), MISSING)) for api, case in order
             if a.get((api, case), MISSING) != b.get((api, case), MISSING)]
    return ProbeDiff(context, cells, sum(1 for k in a if k in b))


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def diff_markdown(d: ProbeDiff, old_name: str, new_name: str) -> str:
    """The diff as markdown: the context table, then the changed cells."""
    lines = [f"### Probe diff: `{old_name}` -> `{new_name}`", ""]
    if d.empty:
        lines.append(f"No difference: the same versions, machine and all {d.compared} cells.")
        return "\n".join(lines) + "\n"
    if d.context:
        lines += ["| what | old | new |", "|---|---|---|"]
        lines += [f"| {_md_cell(w)} | {_md_cell(o)} | {_md_cell(n)} |" for w, o, n in d.context]
        lines.append("")
    if d.cells:
        lines += [f"{len(d.cells)} cell(s) changed ({d.compared} compared):", "",
                  "| API | case | old | new |", "|---|---|---|---|"]
        lines += [f"| {_md_cell(a)} | {_md_cell(c)} | {_md_cell(o)} | {_md_cell(n)} |" for a, c, o, n in d.cells]
    else:
        lines.append(f"All {d.compared} cells are the same.")
    return "\n".join(lines) + "\n"
