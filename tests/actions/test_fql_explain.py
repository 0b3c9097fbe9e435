"""explain_trigger: the verdict of each clause agrees with the trigger's own verdict."""

from __future__ import annotations

from millpond.actions import compile_trigger
from millpond.actions.fql.explain import explain_trigger, unparse
from millpond.actions.fql.parser import parse_fql

EVENT = {"type": "track", "event": "Signed Up", "properties": {"revenue": 12, "tags": ["a"]}}


def test_each_and_clause_is_judged_on_its_own():
    trigger = ('type = "track" and event = "Order Completed" and properties.revenue > 10 '
               'and (userId != null or "a" in properties.tags)')
    clauses = explain_trigger(trigger, EVENT)
    assert [(c["clause"], c["matched"]) for c in clauses] == [
        ('type = "track"', True), ('event = "Order Completed"', False),
        ("properties.revenue > 10", True), ('(userId != null or "a" in properties.tags)', True)]
    assert compile_trigger(trigger).matches(EVENT) is all(c["matched"] for c in clauses)


def test_a_single_clause_and_an_unparsable_trigger():
    assert explain_trigger("type != null", EVENT) == [{"clause": "type != null", "matched": True}]
    assert explain_trigger("type = ", EVENT) == []
    assert explain_trigger('!contains(event, "Up")', EVENT) == [
        {"clause": '!(contains(event, "Up"))', "matched": False}]


def test_unparse_reads_back_as_the_same_trigger():
    for text in ('properties.a\\.b = 1', 'event in ["a", 2, null]', 'match(event, "Sign*")',
                 'length(properties.tags) >= 1 and typeof(userId) = "string"'):
        once = unparse(parse_fql(text))
        assert unparse(parse_fql(once)) == once  # positions differ; the meaning does not
        for event in (EVENT, {"properties": {"a.b": 1}}, {"event": "Sign in", "userId": "u"}):
            assert compile_trigger(once).matches(event) == compile_trigger(text).matches(event)
