"""Mapping behaviour beyond the conformance set (``cases/mapping_extra.json``) and the
``Mapping`` API: copying, referenced_paths, error objects."""

from __future__ import annotations

import pytest

from millpond.actions import UNDEFINED, MappingError, compile_mapping, validate_mapping
from tests.actions.data import CASES, load_json
from tests.actions.mapping.test_conformance import run_case

EXTRA = load_json(CASES / "mapping_extra.json")["cases"]


@pytest.mark.parametrize("case", EXTRA, ids=[c["name"] for c in EXTRA])
def test_extra(case: dict) -> None:
    run_case(case)


def test_output_never_shares_containers_with_the_event() -> None:
    event = {"properties": {"tags": ["a"], "nested": {"k": 1}}, "l": [{"a": 1}]}
    m = compile_mapping({
        "props": {"@path": "$.properties"},
        "tags": {"@path": "$.properties.tags"},
        "all": {"@path": ""},
        "items": {"@arrayPath": ["$.l"]},
        "flat": {"@flatten": {"value": {"@path": "$.properties"}, "separator": ".",
                              "omitArrays": True}},
    })
    out = m.apply(event)
    out["props"]["nested"]["k"] = 2
    out["tags"].append("b")
    out["all"]["properties"]["tags"].append("c")
    out["items"][0]["a"] = 9
    out["flat"]["tags"].append("d")
    assert event == {"properties": {"tags": ["a"], "nested": {"k": 1}}, "l": [{"a": 1}]}


def test_a_non_copying_mapping_gives_the_same_values_from_the_events_own_containers() -> None:
    event = {"properties": {"tags": ["a"]}, "userId": "u1", "traits": {"email": None}}
    mapping = {"tags": {"@path": "$.properties.tags"}, "user": {"@path": "$.userId"},
               "email": {"@if": {"exists": {"@path": "$.traits.email"},
                                 "then": {"@path": "$.traits.email"}, "else": "none"}},
               "props": {"@if": {"exists": {"@path": "$.properties"},
                                 "then": {"@path": "$.properties"}}}}
    copying, sharing = compile_mapping(mapping), compile_mapping(mapping, copy=False)
    assert copying.apply(event) == sharing.apply(event) == {
        "tags": ["a"], "user": "u1", "email": "none", "props": {"tags": ["a"]}}
    assert sharing.apply(event)["tags"] is event["properties"]["tags"]
    assert copying.apply(event)["tags"] is not event["properties"]["tags"]


def test_if_with_the_same_exists_and_then_tells_json_types_apart() -> None:
    # 1 == True in Python; as JSON they differ, so this must not be read as "then = exists"
    m = compile_mapping({"x": {"@if": {"exists": 1, "then": True}}})
    assert m.apply({}) == {"x": True}


def test_apply_is_repeatable() -> None:
    m = compile_mapping({"a": {"x": [1, {"@path": "$.v"}]}})
    first = m.apply({"v": 1})
    first["a"]["x"].append(3)
    assert m.apply({"v": 2}) == {"a": {"x": [1, 2]}}


def test_whole_result_undefined() -> None:
    assert compile_mapping({"@path": "$.nope"}).apply({}) is UNDEFINED
    assert not UNDEFINED
    assert repr(UNDEFINED) == "UNDEFINED"


@pytest.mark.parametrize("payload", [None, "x", 1, [], ()])
def test_apply_rejects_non_object_payloads(payload: object) -> None:
    with pytest.raises(MappingError, match="data must be an object"):
        compile_mapping({"a": 1}).apply(payload)


def test_referenced_paths() -> None:
    m = compile_mapping({
        "literal": "x", "null": None, "obj": {"a": {"@path": "$.a"}}, "list": [1],
        "template": {"@template": "{{a}}"}, "liquid": {"@liquid": "{{ a }}"},
        "replace": {"@replace": {"pattern": "a", "value": {"@path": "$.a"}}},
        "merge": {"@merge": {"direction": "left", "objects": []}},
        "literal_dir": {"@literal": 1},
        "path": {"@path": "$.a"}, "if": {"@if": {"exists": {"@path": "$.a"}, "then": 1, "else": 2}},
        "exclude": {"@excludeWhenNull": "x"}, "array_path": {"@arrayPath": ["$.a"]},
        "case_path": {"@case": {"operator": "lower", "value": {"@path": "$.a"}}},
        "json_path": {"@json": {"mode": "encode", "value": {"@path": "$.a"}}},
    })
    assert m.referenced_paths() == {"literal", "null", "obj", "list", "template", "liquid",
                                    "replace", "merge", "literal_dir"}
    assert compile_mapping({"@path": "$.a"}).referenced_paths() == set()
    root = compile_mapping({
        "__segment_internal_directive": {"@transform": {"apply": {"p": {"@path": "$.properties"}}}},
        "a": {"@path": "$.p.a"}, "b": "lit"})
    assert root.referenced_paths() == {"b"}


def test_mapping_error_lists_every_problem() -> None:
    with pytest.raises(MappingError) as info:
        validate_mapping({"properties": {"revenue": {"@path": 5}}, "x": {"@bogus": 1}})
    assert info.value.errors == [
        "/properties/revenue/@path should be a string or a mapping directive but it is a number.",
        "/x has an invalid directive: @bogus.",
    ]
    assert str(info.value) == "\n".join(info.value.errors)


def test_non_json_values_are_refused() -> None:
    with pytest.raises(MappingError, match="JSON value"):
        validate_mapping({"a": {1, 2}})
    with pytest.raises(MappingError, match="non-string key"):
        validate_mapping({1: "a"})


def test_liquid_resource_limits_drop_the_field_instead_of_exhausting_memory() -> None:
    bomb = ("{% assign a = 'xxxxxxxxxx' %}" + "{% assign a = a | append: a %}" * 28
            + "{{ a | size }}")
    assert len(bomb) <= 1000
    assert compile_mapping({"x": {"@liquid": bomb}}).apply({}) == {}


def test_deep_payload_raises_mapping_error_not_recursion_error() -> None:
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    m = compile_mapping({"x": {"@path": "$"}, "all": {"@path": ""}})
    with pytest.raises(MappingError, match="nested too deeply"):
        m.apply(deep)


def test_liquid_ranges_sized_by_event_data_are_bounded() -> None:
    m = compile_mapping({"x": {"@liquid": "{% if true %}{{ (1..properties.n) | join: ',' | size }}"
                                          "{% endif %}"}})
    assert m.apply({"properties": {"n": 3}}) == {"x": "5"}
    assert m.apply({"properties": {"n": 10**9}}) == {}  # refused, not allocated


def test_liquid_quadratic_replace_is_refused_before_it_runs() -> None:
    m = compile_mapping({"x": {"@liquid": '{{ properties.s | replace: "", properties.s | size }}'}})
    assert m.apply({"properties": {"s": "ab"}}) == {"x": "8"}
    assert m.apply({"properties": {"s": "x" * 20000}}) == {}
