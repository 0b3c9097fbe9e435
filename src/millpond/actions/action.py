"""Actions: a trigger (which events), a mapping (what payload) and the fields it must fill.

``compile_action`` checks everything an action needs up front, so configuration errors
surface when a destination is saved, named after the action they belong to, instead of
as per-event delivery failures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from millpond.timeutil import parse_duration

from .fql import Trigger, TriggerSyntaxError, compile_trigger
from .mapping import Mapping, MappingError, compile_mapping

__all__ = [
    "FieldSpec",
    "ActionSpec",
    "CompiledAction",
    "compile_action",
    "missing_required",
]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a destination action's payload."""

    name: str
    required: bool = False
    description: str = ""


def missing_required(fields: list[FieldSpec] | tuple[FieldSpec, ...],
                     payload: dict[str, Any]) -> list[str]:
    """Names of required fields that are absent or ``None`` in a mapped payload, in
    declaration order (an empty list means the payload can be sent)."""
    if not isinstance(payload, dict):
        return [f.name for f in fields if f.required]
    return [f.name for f in fields if f.required and payload.get(f.name) is None]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """An action as configured (JSON-friendly): compile it with :func:`compile_action`."""

    name: str
    trigger: str
    mapping: dict[str, Any]
    max_event_age: str | None = None
    fields: tuple[FieldSpec, ...] = ()
    #: Whether a new destination starts with this preset turned on.
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class CompiledAction:
    """A ready-to-run action: ``trigger.matches(event)`` then ``mapping.apply(event)``."""

    name: str
    trigger: Trigger
    mapping: Mapping
    max_event_age_s: float | None = None
    fields: tuple[FieldSpec, ...] = field(default=())

    def missing_required(self, payload: dict[str, Any]) -> list[str]:
        """Required fields this action's mapped payload lacks."""
        return missing_required(self.fields, payload)


def compile_action(spec: ActionSpec, *, copy: bool = True) -> CompiledAction:
    """Compile an :class:`ActionSpec`.

    Raises :class:`TriggerSyntaxError`, :class:`MappingError` or ``ValueError`` whose
    message starts with ``action '<name>':``.
    """
    label = f"action {spec.name!r}"
    try:
        trigger = compile_trigger(spec.trigger)
    except TriggerSyntaxError as err:
        raise TriggerSyntaxError(f"{label}: trigger: {err.message}", err.position) from err
    try:
        mapping = compile_mapping(spec.mapping, copy=copy)
    except MappingError as err:
        errors = [f"{label}: mapping: {e}" for e in err.errors]
        raise MappingError("\n".join(errors), errors) from err
    max_age: float | None = None
    if spec.max_event_age is not None:
        try:
            max_age = parse_duration(spec.max_event_age)
        except ValueError as err:
            raise ValueError(f"{label}: max_event_age: {err}") from err
        if max_age <= 0:
            raise ValueError(f"{label}: max_event_age must be longer than zero, e.g. \"72h\"")
    fields = tuple(spec.fields)
    names = [f.name for f in fields]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{label}: duplicate field names {duplicates}")
    return CompiledAction(spec.name, trigger, mapping, max_age, fields)
