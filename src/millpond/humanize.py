"""Figures for people: sizes as log lines, reports and the CLI show them.

Durations for people are :func:`millpond.timeutil.human_duration`, with every other time
function.
"""

from __future__ import annotations


def human_bytes(n: int) -> str:
    """``0`` -> ``0 B``; ``1536`` -> ``1.5 KiB``; ``3 * 1024**3`` -> ``3.0 GiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
