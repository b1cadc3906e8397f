"""Who ran it: a stable machine id and the facts that make results comparable."""
from __future__ import annotations

import hashlib
import os
import platform
import re
from typing import Any


def _cpu_brand() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return 0.0


def machine_facts() -> dict[str, Any]:
    """Hardware and OS facts that stay the same across runs on one machine (no hostname: sandboxes rename)."""
    return {
        "cpu": _cpu_brand(),
        "cores": os.cpu_count() or 0,
        "memory_gib": _memory_gib(),
        "arch": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
    }


def machine_id(facts: dict[str, Any] | None = None) -> str:
    """A short, stable, filesystem-safe id: cpu slug + hash of the hardware facts."""
    facts = facts or machine_facts()
    key = "|".join(str(facts.get(k, "")) for k in ("cpu", "cores", "memory_gib", "arch", "system"))
    slug = re.sub(r"[^a-z0-9]+", "-", str(facts.get("cpu", "cpu")).lower()).strip("-")[:32].strip("-")
    return f"{slug or 'machine'}-{facts.get('cores', 0)}c-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
