"""Definitions: what is accepted, and every refusal names the field at fault."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from millpond.errors import BadRequest
from millpond.segments.definition import (
    AllOf,
    EventCondition,
    InSegment,
    NotOf,
    TraitCondition,
    check_references,
    parse_definition,
    to_json,
)

DAY = 86_400_000


def test_every_kind_parses_and_round_trips():
    data = {"all": [
        {"trait": "plan", "op": "eq", "value": "pro"},
        {"trait": "email", "op": "exists"},
        {"event": "Order Completed", "where": "properties.total > 10", "at_least": 2,
         "at_most": None, "within": "30d"},
        {"event": "Signed Up", "between": ["2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"]},
        {"not": {"in_segment": "churned"}},
        {"any": [{"trait": "age", "op": "gte", "value": 18}]},
    ]}
    cond = parse_definition(data)
    assert isinstance(cond, AllOf)
    assert cond.conditions[0] == TraitCondition("plan", "eq", "pro")
    assert cond.conditions[2] == EventCondition("Order Completed", "properties.total > 10", 2,
                                                None, 30 * DAY, None)
    assert cond.conditions[3].between_ms == (1704067200000, 1735689600000)
    assert cond.conditions[4] == NotOf(InSegment("churned"))
    assert parse_definition(to_json(cond)) == cond


@given(st.integers(min_value=1, max_value=36_500 * DAY))
def test_a_window_reads_back_as_the_same_milliseconds(within_ms: int) -> None:
    # Stored definitions are parsed again on every read: a "within" written back as
    # "1.2096e+06s" had stopped every segment from being evaluated.
    cond = EventCondition("Order Completed", None, 1, None, within_ms, None)
    text = to_json(cond)["within"]
    assert parse_definition({"event": "Order Completed", "within": text}) == cond


@pytest.mark.parametrize(("data", "field", "words"), [
    ("plan", "definition", "JSON object"),
    ({}, "definition", "exactly one of"),
    ({"trait": "plan", "event": "x"}, "definition", "more than one"),
    ({"trait": "plan", "op": "equals", "value": 1}, "definition.op", "unknown op"),
    ({"trait": "plan", "op": "eq"}, "definition.value", "needs a value"),
    ({"trait": "plan", "op": "exists", "value": 1}, "definition.value", "takes no value"),
    ({"trait": "plan", "op": "in", "value": "pro"}, "definition.value", "list"),
    ({"trait": "", "op": "eq", "value": 1}, "definition.trait", "trait name"),
    ({"trait": "n", "op": "gt", "value": [1]}, "definition.value", "compares numbers"),
    ({"trait": "n", "op": "eq", "value": 1, "colour": 2}, "definition.colour", "unknown key"),
    ({"all": []}, "definition.all", "non-empty list"),
    ({"all": [{"trait": "a", "op": "exists"}, {"trait": "b", "op": "bad"}]},
     "definition.all[1].op", "unknown op"),
    ({"not": {"any": [{"event": 5}]}}, "definition.not.any[0].event", "event name"),
    ({"event": "A", "where": "properties.x = "}, "definition.where",
     "FQL error: missing value after '=' at position 14"),
    ({"event": "A", "at_least": -1}, "definition.at_least", ">= 0"),
    ({"event": "A", "at_least": True}, "definition.at_least", ">= 0"),
    ({"event": "A", "at_least": 3, "at_most": 2}, "definition.at_most", "below"),
    ({"event": "A", "within": "30"}, "definition.within", "missing unit"),
    ({"event": "A", "within": "0d"}, "definition.within", "longer than zero"),
    ({"event": "A", "within": "99999999999999999999d"}, "definition.within",
     "at most 36500d"),
    ({"event": "A", "within": "1d", "between": ["2024-01-01", "2024-02-01"]},
     "definition.between", "not both"),
    ({"event": "A", "between": ["2024-01-01T00:00:00Z", "nope"]}, "definition.between[1]",
     "ISO 8601"),
    ({"event": "A", "between": ["2025-01-01T00:00:00Z", "2024-01-01T00:00:00Z"]},
     "definition.between", "after the start"),
    ({"in_segment": 3}, "definition.in_segment", "segment key"),
])
def test_bad_definitions_name_the_field(data, field, words):
    with pytest.raises(BadRequest) as err:
        parse_definition(data)
    assert err.value.field == field
    assert words in err.value.message


def test_nesting_is_bounded():
    data: dict = {"trait": "a", "op": "exists"}
    for _ in range(40):
        data = {"not": data}
    with pytest.raises(BadRequest, match="nest deeper"):
        parse_definition(data)


def test_cycles_and_unknown_references_are_refused():
    defs = {"a": parse_definition({"in_segment": "b"}),
            "b": parse_definition({"any": [{"in_segment": "c"}, {"trait": "x", "op": "exists"}]})}
    lookup = defs.get
    check_references("d", parse_definition({"in_segment": "a"}), lookup)  # d -> a -> b -> c
    with pytest.raises(BadRequest, match="cycle: c -> a -> b -> c"):
        check_references("c", parse_definition({"in_segment": "a"}), lookup)
    with pytest.raises(BadRequest, match="cycle: c -> c") as err:
        check_references("c", parse_definition({"not": {"in_segment": "c"}}), lookup)
    assert err.value.field == "definition.not.in_segment"
    with pytest.raises(BadRequest, match="no segment 'zz'") as err:
        check_references("c", parse_definition(
            {"all": [{"in_segment": "a"}, {"any": [{"trait": "x", "op": "exists"},
                                                   {"in_segment": "zz"}]}]}), lookup)
    assert err.value.field == "definition.all[1].any[1].in_segment"
