"""Every trigger case of Segment's conformance file (``fql.json``) must pass."""

from __future__ import annotations

import pytest

from millpond.actions import TriggerSyntaxError, compile_trigger
from tests.actions.data import CONFORMANCE, load_json

CASES = load_json(CONFORMANCE / "fql.json")["cases"]


def test_case_count() -> None:
    assert len(CASES) == 219


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_conformance(case: dict) -> None:
    if case.get("parse_error"):
        with pytest.raises(TriggerSyntaxError):
            compile_trigger(case["fql"])
        return
    trigger = compile_trigger(case["fql"])
    assert trigger.matches(case["event"]) is case["expected"]
