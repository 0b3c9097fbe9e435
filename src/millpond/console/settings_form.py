"""A destination type's settings form, generated from its settings JSON Schema.

Each setting becomes a labelled field: its description and example as the hint, secrets
as password fields (never filled with the stored value: left empty, the stored secret is
kept), enums as selects, numbers as number fields, objects as JSON text. The server's own
validation (``millpond.connections.config``) judges the result, and its message is shown beside
the field it names (``settings.url``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import FormData

from millpond.errors import BadRequest
from millpond.validation import mask_secret


def _props(schema: dict) -> tuple[dict, set[str]]:
    ref = schema.get("$ref", "")
    body = schema.get("$defs", {}).get(ref.rpartition("/")[2], schema) if ref else schema
    return body.get("properties", {}), set(body.get("required", ()))


def _kind(spec: dict) -> tuple[str, dict]:
    """(input kind, the non-null alternative of the spec)."""
    options = [s for s in spec.get("anyOf", [spec]) if s.get("type") != "null"] or [spec]
    main = {**spec, **options[0]}
    if "enum" in main:
        return "enum", main
    kind = main.get("type")
    return {"integer": "integer", "number": "number", "boolean": "boolean",
            "object": "object", "array": "object"}.get(kind, "string") if isinstance(kind, str) \
        else "string", main


def fields(entry: dict, current: dict | None = None, typed: dict | None = None) -> list[dict]:
    """Field descriptions for a template. ``current``: stored (masked) settings of an
    existing destination; ``typed``: what the person typed (re-shown after an error,
    secrets excepted)."""
    props, required = _props(entry["settings_schema"])
    secrets = set(entry.get("secret_fields", ()))
    example = entry.get("settings_example", {})
    out = []
    for name, spec in props.items():
        kind, main = _kind(spec)
        secret = name in secrets
        value: Any = None
        if typed is not None and not secret:
            value = typed.get(name)
        elif current is not None and not secret:
            value = current.get(name)
        if kind == "object" and value is not None and not isinstance(value, str):
            value = json.dumps(value)
        if kind == "boolean" and isinstance(value, bool):
            value = "yes" if value else "no"
        ex = (main.get("examples") or [None])[0] or example.get(name)
        out.append({
            "name": name, "kind": "password" if secret else kind, "secret": secret,
            "required": name in required, "description": main.get("description", ""),
            "example": json.dumps(ex) if isinstance(ex, dict | list) else ex,
            "enum": main.get("enum", []), "default": main.get("default"),
            "value": "" if value is None else value,
            "stored": mask_secret(current.get(name)) if secret and current else None,
        })
    return out


def parse(entry: dict, form: FormData, current: dict | None = None) -> dict:
    """The settings object from a posted form; BadRequest (field ``settings.x``) for a
    value that is not even of the right shape (JSON, a number)."""
    props, _required = _props(entry["settings_schema"])
    secrets = set(entry.get("secret_fields", ()))
    out: dict[str, Any] = {}
    for name, spec in props.items():
        raw = form.get(f"setting.{name}")
        text = raw.strip() if isinstance(raw, str) else ""
        if not text:
            if name in secrets and current and current.get(name):
                out[name] = current[name]  # the masked value: the stored secret is kept
            continue
        kind, _main = _kind(spec)
        try:
            if kind == "integer":
                out[name] = int(text)
            elif kind == "number":
                out[name] = float(text)
            elif kind == "boolean":
                out[name] = text == "yes"
            elif kind == "object":
                out[name] = json.loads(text)
            else:
                out[name] = text
        except ValueError:
            what = {"integer": "a whole number", "number": "a number",
                    "object": "JSON"}.get(kind, "valid")
            raise BadRequest(f"setting `{name}` must be {what}; got {text!r}",
                             field=f"settings.{name}") from None
    return out


def typed_values(form: FormData) -> dict:
    return {k[len("setting."):]: v for k, v in form.items()
            if k.startswith("setting.") and isinstance(v, str)}
