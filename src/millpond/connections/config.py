"""Validating a destination's configuration before anything is saved or sent.

Everything a pump will need is checked here, once, with the field at fault named the
way the API body spells it (``settings.api_secret``, ``actions[1].trigger``): the type
exists, the settings parse, every trigger and mapping compiles, durations read, rate
limits are sane, and every required field of an action is at least produced by its
mapping. After that, a pump never meets a configuration error, only data errors.

Actions are stored as the public JSON shape (``name``, ``trigger``, ``mapping``,
``max_event_age``, ``enabled``). An action named like one of the type's presets keeps
that preset's field list (which fields are required), so editing a preset's mapping does
not lose its checks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import msgspec

from millpond.actions import (
    ROOT_DIRECTIVE_KEY,
    ActionSpec,
    CompiledAction,
    FieldSpec,
    MappingError,
    TriggerSyntaxError,
    compile_action,
)
from millpond.destinations import get_type
from millpond.destinations.base import DestinationType
from millpond.destinations.errors import SettingsError, UnknownDestinationType
from millpond.errors import BadRequest, Conflict
from millpond.timeutil import parse_duration

ACTION_KEYS = ("name", "trigger", "mapping", "max_event_age", "enabled")
RATE_KEYS = ("events_per_second", "requests_per_second", "max_in_flight", "max_retry_after",
             "max_retry_age")
#: The longest ``Retry-After`` honoured unless a destination sets ``max_retry_after``.
DEFAULT_MAX_RETRY_AFTER = 300.0
#: ``max_retry_after`` may be at most a day.
MAX_RETRY_AFTER = 86_400.0
#: How long a destination may fail continuously before it dead-letters what it holds.
DEFAULT_MAX_RETRY_AGE = 4 * 3600.0


def destination_type(name: Any) -> type[DestinationType]:
    try:
        return get_type(name)
    except UnknownDestinationType as exc:
        raise BadRequest(exc.message, field="type") from None


def parse_settings(cls: type[DestinationType], raw: Any) -> msgspec.Struct:
    try:
        return cls.parse_settings(raw if raw is not None else {})
    except SettingsError as exc:
        field = f"settings.{exc.field}" if exc.field else "settings"
        raise BadRequest(exc.message, field=field) from None


async def check_connection(cls: type[DestinationType], settings: msgspec.Struct) -> None:
    """A type's create-time connection test (warehouses, storage), off the event loop."""
    check = getattr(cls, "check_connection", None)
    if check is None:
        return
    try:
        await asyncio.to_thread(check, settings)
    except SettingsError as exc:
        field = f"settings.{exc.field}" if exc.field else "settings"
        raise BadRequest(exc.message, field=field) from None


async def check_move(cls: type[DestinationType], old: msgspec.Struct, new: msgspec.Struct,
                     loaded_upto: int) -> None:
    """A type's check of settings that move where it loads (warehouses, storage), off the
    event loop: a Conflict naming the setting."""
    check = getattr(cls, "check_move", None)
    if check is None:
        return
    try:
        await asyncio.to_thread(check, old, new, loaded_upto)
    except SettingsError as exc:
        raise Conflict(exc.message, field=f"settings.{exc.field}" if exc.field
                       else "settings") from None


def masked_settings(type_name: str, raw: dict) -> dict:
    """``raw`` safe to show; an unknown type (removed from the catalog) masks everything."""
    try:
        return get_type(type_name).mask_settings(raw)
    except UnknownDestinationType:
        return {key: "••••" for key in raw}


def keep_masked(new: Any, old: Any, cls: type[DestinationType]) -> Any:
    """``new`` settings where any value equal to the *masked* old value is the old value:
    a client that read masked settings and sends them back does not erase its secrets."""
    if not isinstance(new, dict) or not isinstance(old, dict):
        return new
    masked = cls.mask_settings(old)
    out = dict(new)
    for key, value in new.items():
        if key not in old:
            continue
        if value == masked.get(key) and value != old[key]:
            out[key] = old[key]
        elif isinstance(value, dict) and isinstance(old[key], dict) \
                and isinstance(masked.get(key), dict):
            out[key] = {k: old[key][k] if k in old[key] and v == masked[key].get(k)
                        and v != old[key][k] else v for k, v in value.items()}
    return out


def rate_limit(raw: Any, cls: type[DestinationType]) -> dict:
    """The rate limit to store: the type's default for anything left out.

    ``raw`` has the shape of ``RateLimitSpec`` (:mod:`millpond.api.models`), which checks
    the keys and the bounds; a ``max_retry_age`` given as a duration is read here."""
    default = cls.default_rate_limit
    out = {"events_per_second": default.events_per_second,
           "requests_per_second": default.requests_per_second,
           "max_in_flight": default.max_in_flight}
    if raw is None:
        return out
    for key in RATE_KEYS:
        if key not in raw:
            continue
        value = raw[key]
        if value is None and key in ("max_retry_after", "max_retry_age"):
            out.pop(key, None)  # back to the default
        elif key == "max_in_flight" and value is not None:  # the request type allows no null
            out[key] = int(value)
        elif key == "max_retry_age":
            out[key] = _retry_age(value)
        else:
            out[key] = None if value is None else float(value)
    return out


def _retry_age(value: Any) -> float:
    """``max_retry_age`` as seconds: a duration (``"4h"``) or a number of seconds."""
    problem = ('rate_limit.max_retry_age must be a duration of at least 1 minute, e.g. "4h" '
               f'or "30m" (default 4h); got {value!r}')
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise BadRequest(problem, field="rate_limit.max_retry_age") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise BadRequest(problem, field="rate_limit.max_retry_age")
    if not 60 <= seconds <= 30 * 86_400:
        raise BadRequest(problem, field="rate_limit.max_retry_age")
    return seconds


def max_retry_age(rate_limit: dict) -> float:
    """How long a destination may fail continuously before it gives up (seconds)."""
    return float(rate_limit.get("max_retry_age") or DEFAULT_MAX_RETRY_AGE)


def max_retry_after(rate_limit: dict) -> float:
    """The longest ``Retry-After`` a destination honours (seconds)."""
    return float(rate_limit.get("max_retry_after") or DEFAULT_MAX_RETRY_AFTER)


def presets(cls: type[DestinationType]) -> list[dict]:
    """The type's preset actions in the stored shape."""
    return [{"name": p.name, "trigger": p.trigger, "mapping": p.mapping,
             "max_event_age": p.max_event_age, "enabled": p.enabled} for p in cls.presets]


def _fields_for(cls: type[DestinationType], name: str) -> tuple[FieldSpec, ...]:
    for preset in cls.presets:
        if preset.name == name:
            return tuple(preset.fields)
    return ()


def actions(raw: Any, cls: type[DestinationType]) -> list[dict]:
    """Normalised actions to store (presets when ``raw`` is None); raises BadRequest.

    ``raw`` has the shape of ``list[ActionConfig]`` (:mod:`millpond.api.models`); here
    are the checks a type cannot make: names are unique, triggers and mappings compile,
    each action produces its required fields."""
    if raw is None:
        return presets(cls)
    out: list[dict] = []
    seen: set[str] = set()
    for i, action in enumerate(raw):
        where = f"actions[{i}]"
        name = action["name"]
        if name in seen:
            raise BadRequest(f"{where}: another action is already named {name!r}",
                             field=f"{where}.name")
        seen.add(name)
        enabled = action.get("enabled", True)
        normalised = {"name": name, "trigger": action["trigger"], "mapping": action["mapping"],
                      "max_event_age": action.get("max_event_age"), "enabled": enabled}
        compile_one(normalised, cls, where)
        out.append(normalised)
    return out


def compile_one(action: dict, cls: type[DestinationType], where: str = "action", *,
                copy: bool = True) -> CompiledAction:
    """Compile a stored action, turning every failure into BadRequest on its field."""
    spec = ActionSpec(action["name"], action["trigger"], action["mapping"],
                      action.get("max_event_age"), _fields_for(cls, action["name"]))
    try:
        compiled = compile_action(spec, copy=copy)
    except TriggerSyntaxError as exc:
        trigger = str(action["trigger"])
        pos = max(0, min(exc.position, len(trigger)))
        # The message says the position already, and may end with the whole trigger:
        # the trigger is shown once, cut where the error is.
        reason = exc.message.removesuffix(f": {trigger}")
        raise BadRequest(f"{reason}: `{trigger[:pos]}` ▶ `{trigger[pos:]}`",
                         field=f"{where}.trigger") from None
    except MappingError as exc:
        raise BadRequest("; ".join(exc.errors), field=f"{where}.mapping") from None
    except ValueError as exc:
        field = "max_event_age" if "max_event_age" in str(exc) else "name"
        raise BadRequest(str(exc), field=f"{where}.{field}") from None
    _check_required(compiled, action, where)
    return compiled


def _check_required(compiled: CompiledAction, action: dict, where: str) -> None:
    """A required field that the mapping never names can never be sent: refuse it now.
    (Fields from ``@path`` may still be missing for some events; those are skipped.)"""
    mapping = action["mapping"]
    if not isinstance(mapping, dict) or ROOT_DIRECTIVE_KEY in mapping \
            or any(k.startswith("@") for k in mapping):
        return  # the output's keys depend on the event
    produced = set(mapping) | compiled.mapping.referenced_paths()
    absent = [f.name for f in compiled.fields if f.required and f.name not in produced]
    if absent:
        raise BadRequest(f"action {action['name']!r}: mapping never sets required field"
                         f"{'s' if len(absent) > 1 else ''} {', '.join(absent)}; e.g. "
                         f'"{absent[0]}": {{"@path": "$.properties.{absent[0]}"}}',
                         field=f"{where}.mapping")


@dataclass(frozen=True)
class Runtime:
    """What a pump runs for one destination: the type instance and its enabled actions."""

    dtype: DestinationType
    actions: list[CompiledAction]
    all_actions: list[tuple[dict, CompiledAction]]


def runtime(type_name: str, settings: dict, stored_actions: list[dict], *,
            copy: bool = True) -> Runtime:
    """``copy=False``: mappings share the event's containers (see ``compile_mapping``)."""
    cls = destination_type(type_name)
    dtype = cls(parse_settings(cls, settings))
    compiled = [(a, compile_one(a, cls, f"actions[{i}]", copy=copy))
                for i, a in enumerate(stored_actions)]
    return Runtime(dtype, [c for a, c in compiled if a.get("enabled", True)], compiled)
