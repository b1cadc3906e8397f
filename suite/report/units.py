"""Compact labels for report columns and plot axes (shared by tables and plots, so neither imports the other)."""
from __future__ import annotations


def size_label(numel: int) -> str:
    """4096 -> '4Ki', 1048576 -> '1Mi', 3000000 -> '3M' (compact column headers)."""
    for suffix, scale in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if numel >= scale and numel % scale == 0:
            return f"{numel // scale}{suffix}"
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if numel >= scale:
            return f"{numel / scale:.3g}{suffix}"
    return str(numel)
