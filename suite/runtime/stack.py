"""The installed stack next to an environment's pins: which pinned package this interpreter has, at which version.

Why: the device run (.ci/gpu-run) runs on a machine's own Python as it is, never installing anything, so
its versions may differ from the ones rehearsed here (torch 2.11 there, 2.13 here). Such a difference is
recorded, not an error. Versions come from ``importlib.metadata`` (no framework is imported: whether a
framework *imports* and sees a device is `dropbench env`'s backend table, one worker per backend).
"""
from __future__ import annotations

import importlib.metadata as metadata
import platform
import re
from typing import Any

from suite.runtime.environments import definitions
from suite.runtime.loader import UsageError

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")


def _pinned(requirement: str) -> tuple[str, str]:
    """("torch", "2.13.0") from "torch==2.13.0"; any other specifier is kept as written (">=2")."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise ValueError(f"cannot read the requirement {requirement!r}")
    name, rest = match.group(1), match.group(2).split(";")[0].strip()
    return name, rest[2:].strip() if rest.startswith("==") else rest


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _local(version: str) -> str:
    return version.split("+", 1)[0]  # 2.13.0+cpu is the 2.13.0 release


def pin_rows(environment: str) -> list[dict[str, Any]]:
    """One row per requirement of ``environment``: package, pinned, installed ("" if absent), status.

    status: "same" (the release pinned; a local build tag such as +cpu or +cu130 aside), "differs",
    "missing". UsageError for an environment that backends/environments.toml does not define.
    """
    defs = definitions()
    if environment not in defs:
        raise UsageError(f"unknown environment {environment!r}; choose from {', '.join(defs)}")
    rows = []
    for requirement in defs[environment].requirements:
        name, pinned = _pinned(requirement)
        have = installed_version(name)
        status = "missing" if have is None else "same" if _local(have) == pinned else "differs"
        rows.append({"package": name, "pinned": pinned, "installed": have or "", "status": status})
    return rows


def stack_record(environment: str) -> dict[str, Any]:
    """The rows and the interpreter they were read in (what the device run keeps next to its results)."""
    rows = pin_rows(environment)
    return {"schema": 1, "kind": "stack", "pins": environment, "python": platform.python_version(),
            "rows": rows, "differs": [r["package"] for r in rows if r["status"] != "same"]}
