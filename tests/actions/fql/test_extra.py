"""Trigger behaviour the conformance set does not cover (``cases/fql_extra.json``) plus
API-level properties of :class:`Trigger`."""

from __future__ import annotations

import pytest

from millpond.actions import MATCH_ALL, Trigger, TriggerSyntaxError, compile_trigger
from millpond.actions.fql.compiler import compile_condition
from millpond.actions.fql.parser import parse_fql
from tests.actions.data import CASES, load_json

EXTRA = load_json(CASES / "fql_extra.json")["cases"]


@pytest.mark.parametrize("case", EXTRA, ids=[c["name"] for c in EXTRA])
def test_extra(case: dict) -> None:
    if case.get("parse_error"):
        with pytest.raises(TriggerSyntaxError) as info:
            compile_trigger(case["fql"])
        err = info.value
        if "position" in case:
            assert err.position == case["position"], str(err)
        if "message" in case:
            assert case["message"] in str(err)
        return
    assert compile_trigger(case["fql"]).matches(case["event"]) is case["expected"]


def test_error_message_points_at_the_problem() -> None:
    with pytest.raises(TriggerSyntaxError) as info:
        compile_trigger('type * "32456"')
    assert str(info.value) == "unexpected '*' at position 5: type * \"32456\""
    assert info.value.position == 5
    assert info.value.message == str(info.value)


@pytest.mark.parametrize("source", ["", " ", "\n\t"])
def test_empty_trigger_is_an_error(source: str) -> None:
    with pytest.raises(TriggerSyntaxError) as info:
        compile_trigger(source)
    assert info.value.position == 0


def test_non_string_source_is_a_syntax_error() -> None:
    with pytest.raises(TriggerSyntaxError):
        compile_trigger(None)  # type: ignore[arg-type]
    with pytest.raises(TriggerSyntaxError):
        compile_trigger(["type = 'a'"])  # type: ignore[arg-type]


def test_trigger_api() -> None:
    t = compile_trigger('type = "track"')
    assert isinstance(t, Trigger)
    assert t.source == 'type = "track"'
    assert t.matches({"type": "track"}) is True
    assert t({"type": "page"}) is False
    assert compile_trigger('type = "track"') == t
    assert "type" in repr(t)


@pytest.mark.parametrize("event", [None, 1, "x", [], {"type": None}, {"type": {"a": 1}}])
def test_matches_never_raises(event: object) -> None:
    for source in ['type = "track"', "length(type) > 1", 'match(type, "[a-z]*")',
                   'type in ["a"]', "properties.a.b.c = 1", '"a" in type']:
        assert compile_trigger(source).matches(event) is False


def test_match_all() -> None:
    assert MATCH_ALL.matches({"type": "track"})
    assert not MATCH_ALL.matches({})


def test_deep_nesting_is_a_syntax_error_not_a_crash() -> None:
    deep = "(" * 500 + 'type = "a"' + ")" * 500
    assert compile_trigger(deep).matches({"type": "a"})
    negations = "!" * 5000 + '(type = "a")'
    with pytest.raises(TriggerSyntaxError):
        compile_trigger(negations)


@pytest.mark.parametrize("source", ['type = "track" and event = "1"', 'type = "identify"',
                                    'event = 1 or type != "page"'])
def test_verdicts_remembered_per_type_and_event_stay_exact(source: str) -> None:
    # Triggers that read only type/event remember verdicts; odd values must not be
    # confused with text ones (1 == True == 1.0 in Python) nor break on unhashables.
    plain = compile_condition(parse_fql(source))
    trigger = compile_trigger(source)
    events = [{"type": t, "event": e} for t in ("track", "identify", "page", ["track"], None)
              for e in ("1", 1, 1.0, True, ["1"], {"a": 1}, None)] + [{}]
    for _ in range(2):
        for event in events:
            assert trigger.matches(event) is (plain(event) is True), event
