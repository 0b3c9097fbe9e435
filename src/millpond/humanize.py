"""Figures for people: durations and sizes as log lines, reports and the CLI show them."""

from __future__ import annotations


def human_duration(seconds: float) -> str:
    """``1000`` -> ``16 min 40 s``; ``90061`` -> ``1 d 1 h 1 min 1 s``."""
    s = int(round(seconds))
    if s < 1:
        return "under 1 s" if seconds > 0 else "0 s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size} {unit}")
            s %= size
    return " ".join(parts)


def human_bytes(n: int) -> str:
    """``0`` -> ``0 B``; ``1536`` -> ``1.5 KiB``; ``3 * 1024**3`` -> ``3.0 GiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
