"""The shared converter: msgspec's errors as facts (Problem) and as one line for people."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import pytest
from msgspec import Meta

from millpond.validation import (
    MISSING,
    Invalid,
    convert,
    describe,
    dotted,
    parse_path,
    problem_of,
    suggest,
)


class Limits(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    timeout: Annotated[float, Meta(gt=0, le=3600, examples=[30.0])] = 30.0
    mode: Literal["fast", "safe"] = "safe"


class Body(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    port: Annotated[int, Meta(ge=0, le=65535, examples=[8787])] = 8787
    limits: Limits = Limits()
    tags: list[int] = []
    labels: dict[str, int] = {}


EXAMPLE = {"name": "web", "port": 8080}


def message(raw, **kwargs) -> str:
    with pytest.raises(Invalid) as err:
        convert(raw, Body, **kwargs)
    return err.value.message


def test_out_of_range_names_field_bounds_value_and_example() -> None:
    assert message({"name": "x", "port": 70000}, example=EXAMPLE) == (
        'field `port`: expected an integer from 0 to 65535; got 70000; e.g. "port": 8080')


def test_nested_field_uses_its_own_meta_example() -> None:
    assert message({"name": "x", "limits": {"timeout": 0}}) == (
        'field `limits.timeout`: expected a number > 0 and <= 3600; got 0; e.g. "timeout": 30.0')


def test_unknown_nested_key_suggests_the_close_one() -> None:
    assert message({"name": "x", "limits": {"timeot": 1}}) == (
        "unknown field `limits.timeot`; got 1; did you mean `limits.timeout`? "
        "Known fields: timeout, mode")


def test_missing_and_literal_and_list_items() -> None:
    assert message({}, example=EXAMPLE) == 'field `name` is required; e.g. "name": "web"'
    assert message({"name": "x", "limits": {"mode": "turbo"}}) == (
        'field `limits.mode`: expected one of "fast", "safe"; got "turbo"')
    assert message({"name": "x", "tags": [1, "two"]}) == (
        'field `tags[1]`: expected an integer; got "two"')


def test_problem_is_data() -> None:
    with pytest.raises(msgspec.ValidationError) as err:
        msgspec.convert({"name": "x", "labels": {"a": "b"}}, Body)
    problem = problem_of(err.value, {"name": "x", "labels": {"a": "b"}}, Body)
    assert (problem.kind, problem.path, problem.field) == ("invalid", ("labels", ...),
                                                           "labels[...]")
    assert problem.value is MISSING  # msgspec does not say which key
    assert problem.expected == "an integer"
    assert problem.reason == "expected an integer, got `str`"


def test_lax_mode_reads_numbers_and_booleans_from_text() -> None:
    assert convert("8787", int, strict=False) == 8787
    assert convert("true", bool, strict=False) is True
    with pytest.raises(Invalid):
        convert("8787", int)


@pytest.mark.parametrize(("annotation", "words"), [
    (Annotated[int, Meta(ge=1)], "an integer >= 1"),
    (Annotated[float, Meta(gt=0, le=5)], "a number > 0 and <= 5"),
    (Annotated[str, Meta(min_length=1)], "a string (not empty)"),
    (Annotated[str, Meta(extra={"expected": "a token"})], "a token"),
    (list[Annotated[int, Meta(ge=1)]], "a list of integers >= 1"),
    (dict[str, str], "an object of strings"),
    (int | None, "an integer or null"),
    (Limits, "an object"),
])
def test_describe(annotation, words: str) -> None:
    assert describe(annotation) == words


def test_paths_and_suggestions() -> None:
    assert parse_path(".a[0].b[...]") == ("a", 0, "b", ...)
    assert dotted(("a", 0, "b")) == "a[0].b"
    assert suggest("retry_capp", ["retry_cap", "retry_base", "timeout"]) == ["retry_cap"]
    assert suggest("zzz", ["retry_cap"]) == []
