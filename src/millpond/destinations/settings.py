"""Settings validation and masking shared by every destination type.

Settings are msgspec Structs with `forbid_unknown_fields=True`, so a typo is an
error rather than a silently ignored key. msgspec's own messages are precise but
terse; `convert` rewrites them for people: the field, the value given and a correct
example (Vector's style: "uri must include a scheme and host, e.g.
`https://example.com/endpoint`; got `x`"). The facts come from
:mod:`millpond.validation`, shared with the server configuration and the admin API;
this module keeps the wording destination owners already see ("setting `x`",
"known settings").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec

from millpond.destinations.errors import SettingsError
from millpond.validation import MASK, example_for, mask_secret, problem_of, show

__all__ = ["MASK", "check_http_url", "check_not_blank", "convert", "example_for",
           "mask_secret", "show"]


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
        raise _explain(type_name, settings_type, raw, example, exc) from None


def _explain(
    type_name: str,
    settings_type: type[msgspec.Struct],
    raw: Mapping[str, Any],
    example: Mapping[str, Any],
    exc: msgspec.ValidationError,
) -> SettingsError:
    problem = problem_of(exc, raw, settings_type)
    if problem.kind == "unknown":
        field = problem.name
        known = ", ".join(settings_type.__struct_fields__)
        return SettingsError(
            field,
            f"unknown setting `{field}` for {type_name} (got {show(raw.get(field))}); "
            f"known settings: {known}; e.g. {show(dict(example))}",
        )
    if problem.kind == "missing":
        field = problem.name
        return SettingsError(
            field,
            f"setting `{field}` is required for {type_name}; e.g. {example_for(field, example)}",
        )
    field = problem.path[0] if problem.path and isinstance(problem.path[0], str) else ""
    value = raw.get(field) if field else raw
    where = f"setting `{field}`" if field else f"{type_name} settings"
    deeper = problem.at and problem.at != "." + field
    return SettingsError(
        field,
        f"{where}: {problem.reason}{f' at `{problem.at}`' if deeper else ''}; "
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
