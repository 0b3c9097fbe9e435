"""Property tests: compiling never fails with anything but the documented error, and the
per-event functions never raise on arbitrary JSON."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millpond.actions import (
    MappingError,
    TriggerSyntaxError,
    compile_mapping,
    compile_trigger,
    validate_mapping,
)

SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- JSON

KEYS = st.sampled_from(["type", "event", "name", "userId", "properties", "traits", "context",
                        "a", "b", "0", "1", "x y", "and", ""]) | st.text(max_size=5)
SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**63)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
JSON = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(KEYS, children, max_size=4), max_leaves=20)
EVENTS = JSON | st.dictionaries(KEYS, JSON, max_size=6)

# --------------------------------------------------------------------------- FQL soup

FQL_TOKENS = st.sampled_from([
    "type", "event", "properties.a", "traits.b.0", "context.x\\ y", "userId", "name",
    "=", "!=", "<", "<=", ">", ">=", "in", "and", "or", "!", "(", ")", "[", "]", ",",
    '"track"', "'a'", '"1*"', '"[a-z]?"', '"[z-a]"', '"\\\\"', "1", "-2.5", "1e3", "true",
    "false", "null", "contains", "match", "lowercase", "uppercase", "length", "typeof",
    "foo", "==", "&&", "*", "'", '"', "\\", " ", "\n",
])
FQL_SOUP = st.lists(FQL_TOKENS, max_size=14).map(" ".join)
PATHS = st.sampled_from(["type", "event", "name", "userId", "properties.a", "properties.a.0",
                         "traits.b", "context.x\\ y", "a", "properties.\\and"])
LITERALS = st.sampled_from(['"track"', "'a'", "1", "-2.5", '"10"', "true", "false", "null",
                            '["a", 1, null, true]', "[]"])
VALUES = PATHS | LITERALS | st.builds(
    "{}({})".format, st.sampled_from(["lowercase", "uppercase", "length", "typeof"]), PATHS)
PREDICATES = (
    st.builds("{} {} {}".format, VALUES,
              st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "in"]), VALUES)
    | st.builds("contains({}, {})".format, VALUES, st.sampled_from(['"a"', "1", "event"]))
    | st.builds('match({}, "{}")'.format, VALUES,
                st.sampled_from(["a*", "*a", "*a*", "[a-z]?", "\\\\*x", "*", "a", "[!0-9]*"]))
)
CONDITIONS = st.recursive(
    PREDICATES,
    lambda c: st.builds("!({})".format, c) | st.builds("({}) and ({})".format, c, c)
    | st.builds("({}) or ({})".format, c, c),
    max_leaves=6,
)
VALID_TRIGGERS = [
    'type = "track" and event = "Order Completed"',
    '(type = "track" or type = "page") and properties.a >= 10',
    '!contains(event, "x") and match(context.x\\ y, "[a-c]*")',
    'lowercase(traits.b.0) in ["a", 1, null, true] or length(properties.a) > 1',
    'typeof(userId) = "string" and "a" in properties.a and !(properties.a != 1)',
    "properties.a = properties.b or properties.a < properties.b",
    "uppercase(name) = 12",
]


@SETTINGS
@given(st.text(max_size=60) | FQL_SOUP)
def test_compile_trigger_only_raises_syntax_errors(source: str) -> None:
    try:
        trigger = compile_trigger(source)
    except TriggerSyntaxError as err:
        assert 0 <= err.position <= len(source)
        return
    assert trigger.source == source


@SETTINGS
@given(FQL_SOUP, EVENTS)
def test_any_compiled_trigger_matches_without_raising(source: str, event: Any) -> None:
    try:
        trigger = compile_trigger(source)
    except TriggerSyntaxError:
        return
    assert trigger.matches(event) in (True, False)


@SETTINGS
@given(CONDITIONS, EVENTS)
def test_generated_triggers_compile_and_match_without_raising(source: str, event: Any) -> None:
    assert compile_trigger(source).matches(event) in (True, False)


@SETTINGS
@given(EVENTS)
def test_matches_never_raises(event: Any) -> None:
    for source in VALID_TRIGGERS:
        assert compile_trigger(source).matches(event) in (True, False)


# --------------------------------------------------------------------------- mappings

DIRECTIVE_KEYS = st.sampled_from([
    "@path", "@template", "@literal", "@if", "@case", "@replace", "@arrayPath", "@merge",
    "@transform", "@flatten", "@json", "@excludeWhenNull", "@liquid", "@oops", "_metadata",
    "__segment_internal_directive",
])
OPTION_KEYS = st.sampled_from([
    "exists", "blank", "then", "else", "operator", "value", "pattern", "replacement",
    "pattern2", "replacement2", "ignorecase", "global", "direction", "objects", "apply",
    "mapping", "separator", "omitArrays", "mode",
])
OPTION_VALUES = st.sampled_from([
    "lower", "upper", "left", "right", "encode", "decode", "$.a", "a.b[0]", "", ".", "_",
    "{{ a }}", "{{a}}", "{% if a %}x{% endif %}", "{% for x in a %}{% endfor %}",
    "{{ a | sort }}", "{{ a | divided_by: 0 }}", "{{ a | append: a }}",
])
MAPPING_SCALARS = SCALARS | OPTION_VALUES
MAPPINGS = st.recursive(
    MAPPING_SCALARS,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(DIRECTIVE_KEYS | OPTION_KEYS | KEYS, children, max_size=3)
    | st.builds(lambda k, v: {k: v}, DIRECTIVE_KEYS, children),
    max_leaves=16,
)
PAYLOADS = st.dictionaries(KEYS, JSON, max_size=5)


@SETTINGS
@given(MAPPINGS)
def test_validate_mapping_only_raises_mapping_errors(mapping: Any) -> None:
    try:
        validate_mapping(mapping)
    except MappingError as err:
        assert err.errors and all(isinstance(e, str) for e in err.errors)


@SETTINGS
@given(MAPPINGS, PAYLOADS)
def test_valid_mappings_apply_to_any_object_without_raising(mapping: Any, payload: Any) -> None:
    try:
        compiled = compile_mapping(mapping)
    except MappingError:
        return
    compiled.apply(payload)


@SETTINGS
@given(JSON)
def test_validate_arbitrary_json(mapping: Any) -> None:
    with contextlib.suppress(MappingError):
        validate_mapping(mapping)
