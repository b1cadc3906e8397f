"""Which contract families ran for each API: no certificate without coverage.

A record's check id starts with its check family ("kept-fraction/rate=0.5/float32"); each
family belongs to one contract family below. A contract family *ran* when at least one of
its records got a verdict (pass, fail, known); otherwise it was skipped, and the skip or
error details say why. An API is certified only when it declares a training scaling (inverted,
vanilla or both), the training family ran (in the first declared scaling), and every other
contract family ran too, unless the API does not declare what it needs (no 'backward': no
gradient family; no 'vanilla': no vanilla family) or it does not apply (a fixed layout).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

CONTRACTS: dict[str, tuple[str, ...]] = {
    "rate 0": ("identity", "identity-grad"),
    "rate 1": ("zeros", "zero-grad"),
    "training": ("train", "values", "mask-shared", "kept-fraction", "mean", "inverted"),
    "gradient": ("gradient",),
    "fresh mask": ("fresh-mask",),
    "independence": ("lag", "position", "magnitude"),
    "between calls": ("cross-call", "call-dispersion"),
    "spread": ("dispersion",),
    "seed": ("seed", "cross-seed"),
    "reference": ("reference", "reference-grad"),  # only an API with a reference_for hook (numba-cuda:fused)
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
REQUIRED = "training"
SCALING_FAMILIES = ("inverted", "vanilla")  # their bare skip records say which scalings are not declared
TRAINING = (REQUIRED, "gaussian training", "alpha training")
"""The training contract of each kind (bernoulli, gaussian, alpha): the API's own must run for a certificate."""
OPTIONAL = frozenset({"reference"})
"""Contracts an API has only when it declares them (a ``reference_for`` hook): without a record, not listed as skipped."""
VERDICTS = ("pass", "fail", "known")
_NO_RECORD = {"broadcast": "a fixed layout: its own sharing is checked by mask-shared, free broadcast axes do not apply"}
NO_RECORD = "no check of it ran"
_FAMILY_OF = {check: contract for contract, families in CONTRACTS.items() for check in families}


def undeclared(api: str, what: str) -> str:
    """The detail of a skip record for something the API does not declare (coverage reads it back)."""
    return f"{api} does not declare {what!r}"


NOT_APPLICABLE = "does not apply: "


def not_applicable(reason: str) -> str:
    """The detail of a skip record for a family the spec itself rules out for this API's kind (e.g. Gaussian
    dropout at rate 1, or with a noise shape): excused like an undeclared capability."""
    return NOT_APPLICABLE + reason


def _excused(why: str) -> bool:
    """A skip that costs no certificate: not declared, ruled out by the spec for the API's kind, not applicable
    to a fixed layout, or not in the plan for this API at all (no record); a family that was tried and skipped
    or errored is not excused."""
    return " does not declare '" in why or NOT_APPLICABLE in why or why in _NO_RECORD.values() or why == NO_RECORD


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
    scalings: list[str] = field(default_factory=lambda: list(SCALING_FAMILIES[:1]))  # declared training scalings
    training: str = REQUIRED  # the training contract of the API's kind (TRAINING)

    @property
    def missing(self) -> list[str]:
        """Contract families that did not run although the API declares what they need."""
        return [c for c, why in self.skipped.items() if not _excused(why)]

    @property
    def certified(self) -> bool:
        declared = bool(self.scalings) or self.training != REQUIRED  # the family's kinds have one scheme, no scaling choice
        return declared and self.training in self.ran and not self.missing

    @property
    def reason(self) -> str:
        """Why the API is not certified ("" when it is)."""
        if self.certified:
            return ""
        if not self.scalings and self.training == REQUIRED:
            return "it declares neither inverted nor vanilla training"
        if not self.ran:
            return "no check ran"
        first = next(c for c in [self.training, *self.missing] if c not in self.ran)
        return f"the {first} family did not run ({self.skipped.get(first, 'no record')})"

    def line(self) -> str:
        ran = ", ".join(f"{c} ({self.scalings[0]})" if c == REQUIRED and self.scalings[:1] != ["inverted"] else c
                        for c in self.ran) or "nothing"
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
    undeclared_scalings: dict[str, set[str]] = {}
    for r in records:
        if r["check"] == "worker":
            continue
        api = r["api"]
        verdicts.setdefault(api, set())
        why.setdefault(api, {})
        families.setdefault(api, set()).add(r["check"].split("/")[0])
        family = r["check"].split("/")[0]
        if family in SCALING_FAMILIES and r["status"] == "skip" and undeclared("", family) in f" {r['detail']}":
            undeclared_scalings.setdefault(api, set()).add(family)
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
        skipped = {c: why[api].get(c, _NO_RECORD.get(c, NO_RECORD) if layout else NO_RECORD)
                   for c in CONTRACTS if c not in ran and (c not in OPTIONAL or c in why[api]) and c not in _other_kinds(own)}
        scalings = [s for s in SCALING_FAMILIES if s not in undeclared_scalings.get(api, set())]
        out.append(ApiCoverage(api, ordered, skipped, notes.get(api, []), scalings, own))
    return out
