"""Where the trigger and mapping test vectors live: ``cases/``, as data.

``fql.json`` and ``mapping-kit.json`` are Segment's own conformance cases, transcribed from
its ``action-destinations`` test suites (MIT licence; ``cases/CONFORMANCE.md`` says how);
the ``*_extra.json`` files are millpond's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CASES = Path(__file__).resolve().parent / "cases"
CONFORMANCE = CASES


def load_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)
