"""Plain-text tables for the terminal (no dependency, stable widths)."""
from __future__ import annotations

from typing import Sequence


def render(headers: Sequence[str], rows: Sequence[Sequence[object]], max_width: int = 90) -> str:
    flat = [[" ".join(str(c).split()) for c in row] for row in rows]  # multi-line messages stay on one row
    cells = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in row] for row in flat]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    return "\n".join(out)
