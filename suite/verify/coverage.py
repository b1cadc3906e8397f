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
    "seed": ("seed", "seed-changes-mask"),
    "eval": ("eval", "eval-grad"),
    "vanilla": ("vanilla", "vanilla-train", "vanilla-kept-fraction", "vanilla-eval"),
    "broadcast": ("broadcast", "broadcast-shared", "broadcast-values", "broadcast-kept-fraction",
                  "broadcast-lag", "broadcast-position"),
    "dtypes": ("dtype", "grad-dtype"),
    "input": ("input-unchanged",),
    # the dropout family beyond Bernoulli (suite/verify/family.py): each kind's training contract
    "gaussian training": ("gaussian-train", "gaussian-values", "gaussian-noise"),
    "alpha training": ("alpha-train", "alpha-values", "alpha-mask-shared", "alpha-moments"),
}
"""Contract family -> the check families (first part of a check id) that test it."""
REQUIRED = "inverted training"
TRAINING = (REQUIRED, "gaussian training", "alpha training")
"""One of these must run for a certificate: the training contract of the API's kind."""
VERDICTS = ("pass", "fail", "known")
_NO_RECORD = {"broadcast": "a fixed layout: its own sharing is checked by mask-shared, free broadcast axes do not apply"}
_FAMILY_OF = {check: contract for contract, families in CONTRACTS.items() for check in families}


def _own_training(families: set[str]) -> str:
    """The training contract of the API's kind, told by its records (a Bernoulli API runs none of the others)."""
    return next((c for c in TRAINING[1:] if families & set(CONTRACTS[c])), REQUIRED)


def _other_kinds(own: str) -> tuple[str, ...]:
    """Contracts that do not apply to an API whose training contract is ``own``: other kinds' training,
    and for the family beyond Bernoulli also the Bernoulli-only vanilla scheme."""
    return tuple(c for c in TRAINING if c != own) + (("vanilla",) if own != REQUIRED else ())


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
        return any(c in self.ran for c in TRAINING)

    @property
    def reason(self) -> str:
        """Why the API is not certified ("" when it is)."""
        if self.certified:
            return ""
        if not self.ran:
            return "no check ran"
        own = next((c for c in TRAINING if c in self.skipped), REQUIRED)
        return f"the {own} family did not run ({self.skipped.get(own, 'no record')})"

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
        layout = bool({"mask-shared", "alpha-mask-shared"} & families[api])
        own = _own_training(families[api])
        skipped = {c: why[api].get(c, _NO_RECORD.get(c, "no check of it ran") if layout else "no check of it ran")
                   for c in CONTRACTS if c not in ran and c not in _other_kinds(own)}
        out.append(ApiCoverage(api, ordered, skipped, notes.get(api, [])))
    return out
