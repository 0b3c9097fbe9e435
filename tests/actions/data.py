"""Locate Segment's conformance vectors: ``shared/`` sits beside the repository checkout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
CASES = Path(__file__).resolve().parent / "cases"


def load_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)
