"""Who ran it: a stable machine id and the facts that make results comparable."""
from __future__ import annotations

import contextvars
import hashlib
import os
import platform
import re
import shutil
import subprocess
from typing import Any

NAME_VARIABLE = "DROPBENCH_MACHINE_ID"
"""Set on a machine whose hardware facts do not tell it apart from another (containers on one host,
the nodes of a test cluster): its value is the machine id, used as is."""
_NODE_FACTS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("dropbench_node_facts", default=None)


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


def _gpu_names() -> str:
    """The NVIDIA GPUs by name (``nvidia-smi``, no framework import), comma-separated; "" when none is seen."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return ""
    try:
        proc = subprocess.run([tool, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ""
    return ", ".join(line.strip() for line in proc.stdout.splitlines() if line.strip()) if proc.returncode == 0 else ""


def machine_facts() -> dict[str, Any]:
    """Hardware and OS facts that stay the same across runs on one machine (no hostname: sandboxes rename).
    ``gpu`` (names from nvidia-smi, "" without one) is not part of the machine id.

    While an executor runs the work on another machine (:func:`running_on`), that machine's facts.
    """
    node = _NODE_FACTS.get()
    if node is not None:
        return dict(node)
    facts = {
        "gpu": _gpu_names(),
        "cpu": _cpu_brand(),
        "cores": os.cpu_count() or 0,
        "memory_gib": _memory_gib(),
        "arch": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
    }
    name = os.environ.get(NAME_VARIABLE, "").strip()
    if name:
        facts["name"] = name
    return facts


def running_on(facts: dict[str, Any] | None) -> contextvars.Token:
    """Make :func:`machine_facts` (and so :func:`machine_id`) answer for the machine that runs the work."""
    return _NODE_FACTS.set(dict(facts) if facts is not None else None)


def reset_running_on(token: contextvars.Token) -> None:
    _NODE_FACTS.reset(token)


def machine_id(facts: dict[str, Any] | None = None) -> str:
    """A short, stable, filesystem-safe id: cpu slug + hash of the hardware facts."""
    facts = facts or machine_facts()
    if facts.get("name"):
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(facts["name"]))[:64]
    key = "|".join(str(facts.get(k, "")) for k in ("cpu", "cores", "memory_gib", "arch", "system"))
    slug = re.sub(r"[^a-z0-9]+", "-", str(facts.get("cpu", "cpu")).lower()).strip("-")[:32].strip("-")
    return f"{slug or 'machine'}-{facts.get('cores', 0)}c-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
