"""Field specs and action compilation."""

from __future__ import annotations

import pytest

from millpond.actions import (
    ActionSpec,
    CompiledAction,
    FieldSpec,
    MappingError,
    TriggerSyntaxError,
    compile_action,
    missing_required,
)

FIELDS = [FieldSpec("event_name", required=True), FieldSpec("user_id", required=True),
          FieldSpec("revenue")]


def test_missing_required() -> None:
    assert missing_required(FIELDS, {"event_name": "x", "user_id": "u"}) == []
    assert missing_required(FIELDS, {"event_name": "x", "user_id": None}) == ["user_id"]
    assert missing_required(FIELDS, {"revenue": 1}) == ["event_name", "user_id"]
    assert missing_required(FIELDS, {"event_name": "", "user_id": 0}) == []
    assert missing_required([], {}) == []


def test_field_spec_is_frozen() -> None:
    spec = FieldSpec("a")
    assert spec.required is False and spec.description == ""
    with pytest.raises(AttributeError):
        spec.required = True  # type: ignore[misc]


def _spec(**overrides: object) -> ActionSpec:
    base: dict = {
        "name": "Track Purchase",
        "trigger": 'type = "track" and event = "Order Completed"',
        "mapping": {"event_name": {"@path": "$.event"}, "user_id": {"@path": "$.userId"},
                    "revenue": {"@path": "$.properties.revenue"}},
        "max_event_age": "72h",
        "fields": tuple(FIELDS),
    }
    base.update(overrides)
    return ActionSpec(**base)


def test_compile_action_end_to_end() -> None:
    action = compile_action(_spec())
    assert isinstance(action, CompiledAction)
    assert action.name == "Track Purchase"
    assert action.max_event_age_s == 72 * 3600
    assert action.fields == tuple(FIELDS)
    event = {"type": "track", "event": "Order Completed", "userId": "u1",
             "properties": {"revenue": 5}}
    assert action.trigger.matches(event)
    payload = action.mapping.apply(event)
    assert payload == {"event_name": "Order Completed", "user_id": "u1", "revenue": 5}
    assert action.missing_required(payload) == []
    assert action.missing_required(action.mapping.apply({"event": "x"})) == ["user_id"]


def test_compile_action_without_max_age() -> None:
    assert compile_action(_spec(max_event_age=None)).max_event_age_s is None


def test_compile_action_errors_name_the_action() -> None:
    with pytest.raises(TriggerSyntaxError) as trig:
        compile_action(_spec(trigger='type * "32456"'))
    assert str(trig.value).startswith("action 'Track Purchase': trigger: unexpected '*'")
    assert trig.value.position == 5

    with pytest.raises(MappingError) as mapping:
        compile_action(_spec(mapping={"a": {"@path": 1}, "b": {"@nope": 2}}))
    assert mapping.value.errors == [
        "action 'Track Purchase': mapping: /a/@path should be a string or a mapping directive"
        " but it is a number.",
        "action 'Track Purchase': mapping: /b has an invalid directive: @nope.",
    ]

    with pytest.raises(ValueError, match="action 'Track Purchase': max_event_age: invalid"):
        compile_action(_spec(max_event_age="3 days"))
    with pytest.raises(ValueError, match="longer than zero"):
        compile_action(_spec(max_event_age="0s"))
    with pytest.raises(ValueError, match="duplicate field names"):
        compile_action(_spec(fields=(FieldSpec("a"), FieldSpec("a"))))
