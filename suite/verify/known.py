"""Known divergences: documented, upstream-linked reasons why an API fails a spec check.

They live in one data file (known_divergences.toml). A failing check that matches an
entry is reported ``known`` instead of ``fail``; an entry that matches no failure of an
API that ran is ``stale`` and should be removed.
"""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Iterable

import tomllib

from backends import KNOWN_DIVERGENCES_FILE

KNOWN_FILE = KNOWN_DIVERGENCES_FILE
FAILING = ("fail", "error")


@dataclass(frozen=True)
class Divergence:
    api: str  # exact API id
    check: str  # fnmatch pattern over check ids, e.g. "zeros/rate=1/*"
    reason: str
    link: str

    def matches(self, api: str, check: str) -> bool:
        return api == self.api and fnmatchcase(check, self.check)


def load_known(path: Path = KNOWN_FILE) -> list[Divergence]:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    return [Divergence(d["api"], d["check"], d["reason"], d.get("link", "")) for d in data.get("divergence", [])]


def classify(records: Iterable[dict], known: list[Divergence], ran_apis: set[str]) -> tuple[list[dict], list[Divergence]]:
    """Mark failures that a known divergence explains; return (records, stale entries)."""
    used: set[Divergence] = set()
    out = []
    for record in records:
        record = dict(record)
        if record["status"] in FAILING:
            entry = next((d for d in known if d.matches(record["api"], record["check"])), None)
            if entry is not None:
                used.add(entry)
                record["status"] = "known"
                record["detail"] = f"{record['detail']} [known: {entry.reason}]"
        out.append(record)
    stale = [d for d in known if d.api in ran_apis and d not in used]
    return out, stale
