"""Which contract families ran for each API: no certificate without coverage.

A record's check id starts with its check family ("kept-fraction/rate=0.5/float32"); each
family belongs to one contract family below. A contract family *ran* when at least one of
its records got a verdict (pass, fail, known); otherwise it was skipped, and the skip or
error details say why. An API is certified only when something ran and the inverted
training family ran (the contract every dropout has), whatever else was not declared.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

CONTRACTS: dict[str, tuple[str, ...]] = {
    "rate 0": ("identity", "identity-grad"),
    "rate 1": ("zeros", "zero-grad"),
    "inverted training": ("train", "values", "mask-shared", "kept-fraction", "mean"),
    "gradient": ("gradient",),
    "fresh mask": ("fresh-mask",),
    "independence": ("lag", "position", "magnitude"),
    "between calls": ("cross-call", "call-dispersion"),
    "spread": ("dispersion",),
    "seed": ("seed", "cross-seed"),
    "eval": ("eval", "eval-grad"),
    "vanilla": ("vanilla", "vanilla-train", "vanilla-kept-fraction", "vanilla-eval"),
    "broadcast": ("broadcast", "broadcast-shared", "broadcast-values", "broadcast-kept-fraction",
                  "broadcast-lag", "broadcast-position"),
    "dtypes": ("dtype", "grad-dtype"),
    "input": ("input-unchanged",),
}
"""Contract family -> the check families (first part of a check id) that test it."""
REQUIRED = "inverted training"
VERDICTS = ("pass", "fail", "known")
_NO_RECORD = {"broadcast": "a fixed layout: its own sharing is checked by mask-shared, free broadcast axes do not apply"}
_FAMILY_OF = {check: contract for contract, families in CONTRACTS.items() for check in families}


def contract_of(check: str) -> str | None:
    """The contract family of a check id; "*/float16" (a dtype skipped whole) has none."""
    return _FAMILY_OF.get(check.split("/")[0])


@dataclass
class ApiCoverage:
    api: str
    ran: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # contract -> why
    notes: list[str] = field(default_factory=list)  # e.g. "float16: not declared"

    @property
    def certified(self) -> bool:
        return REQUIRED in self.ran

    @property
    def reason(self) -> str:
        """Why the API is not certified ("" when it is)."""
        if self.certified:
            return ""
        if not self.ran:
            return "no check ran"
        return f"the {REQUIRED} family did not run ({self.skipped.get(REQUIRED, 'no record')})"

    def line(self) -> str:
        ran = ", ".join(self.ran) or "nothing"
        skipped = "; ".join(f"{c} ({why})" for c, why in self.skipped.items())
        notes = f"; {'; '.join(self.notes)}" if self.notes else ""
        verdict = "certified" if self.certified else f"NOT CERTIFIED: {self.reason}"
        return f"coverage {self.api}: {verdict}. ran: {ran}" + (f"; skipped: {skipped}" if skipped else "") + notes


def coverage(records: Iterable[dict[str, str]]) -> list[ApiCoverage]:
    """Per API (in record order), which contract families ran and which did not, with the reason."""
    verdicts: dict[str, set[str]] = {}
    families: dict[str, set[str]] = {}
    why: dict[str, dict[str, str]] = {}
    notes: dict[str, list[str]] = {}
    for r in records:
        if r["check"] == "worker":
            continue
        api = r["api"]
        verdicts.setdefault(api, set())
        why.setdefault(api, {})
        families.setdefault(api, set()).add(r["check"].split("/")[0])
        contract = contract_of(r["check"])
        if contract is None:
            notes.setdefault(api, []).append(f"{r['check'].split('/')[-1]} not run ({r['detail']})")
            continue
        if r["status"] in VERDICTS:
            verdicts[api].add(contract)
        else:
            why[api].setdefault(contract, f"{r['status']}: {r['detail']}")
    out = []
    for api, ran in verdicts.items():
        ordered = [c for c in CONTRACTS if c in ran]
        layout = "mask-shared" in families[api]
        skipped = {c: why[api].get(c, _NO_RECORD.get(c, "no check of it ran") if layout else "no check of it ran")
                   for c in CONTRACTS if c not in ran}
        out.append(ApiCoverage(api, ordered, skipped, notes.get(api, [])))
    return out
