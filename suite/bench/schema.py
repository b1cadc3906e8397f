"""Bench result schemas: 2 (rows folded over several processes, interleaved rounds) and the old 1.

Schema 1 files (one process per backend, pytest-benchmark rounds only) still load: :func:`upgrade`
gives each row one ``extra_info["processes"]`` entry built from its pytest-benchmark median, so
every reader sees the schema-2 layout (suite/bench/aggregate.py) and knows where it came from
(``payload["upgraded_from"] = 1``; ``source`` "pytest-benchmark" in the process entry).
"""
from __future__ import annotations

import copy
from typing import Any

BENCH_SCHEMA = 2
READABLE = (1, 2)


def upgrade(payload: dict[str, Any]) -> dict[str, Any]:
    """A schema-2 view of a schema-1 or -2 payload (a schema-2 payload comes back unchanged)."""
    if payload.get("schema") == BENCH_SCHEMA:
        return payload
    out = copy.deepcopy(payload)
    for bench in out.get("benchmarks") or []:
        info, stats = bench.get("extra_info"), bench.get("stats") or {}
        if not isinstance(info, dict) or "processes" in info:
            continue
        median = stats.get("median")
        info["processes"] = [{"process": 0, "median": median, "source": "pytest-benchmark", "pytest_median": median,
                              "rounds": 0, "data": [], "ratio_copy": None, "ratio_rng32": None,
                              "rel_iqr": None, "stop": None}] if isinstance(median, (int, float)) else []
        info["spread"] = None
    out["upgraded_from"] = payload.get("schema")
    out["schema"] = BENCH_SCHEMA
    return out
