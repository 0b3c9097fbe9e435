"""Settings validation and masking shared by every destination type.

Settings are msgspec Structs with `forbid_unknown_fields=True`, so a typo is an
error rather than a silently ignored key. msgspec's own messages are precise
but terse; `convert` rewrites them for people: the field, the value given and a
correct example (Vector's style: "uri must include a scheme and host, e.g.
`https://example.com/endpoint`; got `x`").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec

from millpond.destinations.errors import SettingsError

MASK = "••••"

_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")
_AT = re.compile(r"^(?P<what>.*?) - at `\$(?P<path>[^`]*)`$")
_FIELD = re.compile(r"^\.(?P<field>[A-Za-z_][A-Za-z0-9_]*)")
_TYPE_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}


def show(value: Any) -> str:
    """A value as JSON for messages, shortened."""
    try:
        text = msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def example_for(field: str, example: Mapping[str, Any]) -> str:
    """`"field": <example value>` when the example has the field, else the whole example."""
    if field in example:
        return f'"{field}": {show(example[field])}'
    return show(dict(example))


def convert(
    type_name: str, settings_type: type[msgspec.Struct], raw: Any, example: Mapping[str, Any]
) -> msgspec.Struct:
    """msgspec.convert with messages for people; raises SettingsError only."""
    if not isinstance(raw, Mapping):
        raise SettingsError(
            "",
            f"{type_name} settings must be an object; got {show(raw)}; e.g. {show(dict(example))}",
        )
    try:
        return msgspec.convert(dict(raw), settings_type)
    except msgspec.ValidationError as exc:
        raise _explain(type_name, settings_type, raw, example, str(exc)) from None


def _explain(
    type_name: str,
    settings_type: type[msgspec.Struct],
    raw: Mapping[str, Any],
    example: Mapping[str, Any],
    text: str,
) -> SettingsError:
    known = ", ".join(settings_type.__struct_fields__)
    if m := _UNKNOWN.match(text):
        field = m["field"]
        return SettingsError(
            field,
            f"unknown setting `{field}` for {type_name} (got {show(raw.get(field))}); "
            f"known settings: {known}; e.g. {show(dict(example))}",
        )
    if m := _MISSING.match(text):
        field = m["field"]
        return SettingsError(
            field,
            f"setting `{field}` is required for {type_name}; e.g. {example_for(field, example)}",
        )
    what, path = text, ""
    if m := _AT.match(text):
        what, path = m["what"], m["path"]
    field = m["field"] if (m := _FIELD.match(path)) else ""
    for py, words in _TYPE_NAMES.items():
        what = what.replace(f"Expected `{py}`", f"expected {words}")
    value = raw.get(field) if field else raw
    where = f"setting `{field}`" if field else f"{type_name} settings"
    return SettingsError(
        field,
        f"{where}: {what[0].lower() + what[1:]}"
        f"{f' at `{path}`' if path and path != '.' + field else ''}; "
        f"got {show(value)}; e.g. {example_for(field, example)}",
    )


def check_http_url(field: str, value: str, example: str) -> None:
    """Require an absolute http(s) URL with a host, no query or fragment."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            field,
            f"setting `{field}` must be an http or https URL with a host, e.g. `{example}`; "
            f"got {show(value)}",
        )
    if parts.fragment or (field != "url" and parts.query):
        raise SettingsError(
            field,
            f"setting `{field}` must not contain a query or fragment, e.g. `{example}`; "
            f"got {show(value)}",
        )


def check_not_blank(field: str, value: str | None, example: str) -> None:
    """Secrets and ids must not be empty or padded with whitespace."""
    if value is None:
        return
    if not value.strip() or value != value.strip():
        raise SettingsError(
            field,
            f"setting `{field}` must be a non-empty string without surrounding spaces, "
            f"e.g. `{example}`; got {show(value)}",
        )


def mask_secret(value: Any) -> Any:
    """ "••••" + last 4 characters; secrets of 8 characters or fewer are masked
    entirely (showing 4 of 6 characters would reveal most of the secret)."""
    if value is None or value == "":
        return value
    text = str(value)
    return MASK + text[-4:] if len(text) > 8 else MASK
