"""Every case of Segment's mapping-kit conformance file (``mapping-kit.json``) must pass,
``@liquid`` included (through python-liquid with Segment's restrictions)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from millpond.actions import UNDEFINED, MappingError, compile_mapping, validate_mapping
from tests.actions.data import CONFORMANCE, load_json
from tests.actions.jsonish import json_equal

CASES = load_json(CONFORMANCE / "mapping-kit.json")["cases"]


def test_case_count() -> None:
    assert len(CASES) == 212
    assert sum(c["group"] == "@liquid" for c in CASES) == 38


def check_error_message(message: str, expected: Any) -> None:
    if expected is None:
        return
    if isinstance(expected, str):
        assert expected in message
    elif "regex" in expected:
        assert re.search(expected["regex"], message), (expected["regex"], message)
    else:
        for part in expected["all_of"]:
            assert part in message


def run_case(case: dict) -> None:
    mapping = case["mapping"]
    if case.get("validate_only"):
        validate_mapping(mapping)
        return
    if case.get("error"):
        with pytest.raises(MappingError) as info:
            compile_mapping(mapping).apply(case["payload"])
        check_error_message(str(info.value), case.get("error_message"))
        return
    result = compile_mapping(mapping).apply(case["payload"])
    if case.get("expected_undefined"):
        assert result is UNDEFINED
    elif "expected" in case:
        assert json_equal(result, case["expected"]), (result, case["expected"])
    # else: "must not throw"; the output is unspecified


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_conformance(case: dict) -> None:
    run_case(case)
