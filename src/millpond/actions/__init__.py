"""Actions: which events a destination gets (a trigger) and in what shape (a mapping).

Import from here; the layout below is an implementation detail:

- :mod:`.action`: an action as configured (:class:`ActionSpec`, :class:`FieldSpec`) and
  compiled (:class:`CompiledAction`, :func:`compile_action`);
- :mod:`.fql`: triggers, Segment's FQL (:class:`Trigger`, :func:`compile_trigger`);
- :mod:`.mapping`: mappings, Segment's mapping-kit (:class:`Mapping`,
  :func:`compile_mapping`).

Everything here is pure (no I/O, no clock) and compiled once per configuration change, so
per-event work is a call to prebuilt closures. Both languages follow Segment's reference
implementation, checked by the conformance cases in ``tests/actions/cases/``.
"""

from __future__ import annotations

from .action import ActionSpec, CompiledAction, FieldSpec, compile_action, missing_required
from .fql import MATCH_ALL, Trigger, TriggerSyntaxError, compile_trigger
from .mapping import (
    ROOT_DIRECTIVE_KEY,
    UNDEFINED,
    Mapping,
    MappingError,
    UndefinedType,
    compile_mapping,
    validate_mapping,
)

__all__ = [
    "ActionSpec",
    "CompiledAction",
    "FieldSpec",
    "compile_action",
    "missing_required",
    "MATCH_ALL",
    "Trigger",
    "TriggerSyntaxError",
    "compile_trigger",
    "ROOT_DIRECTIVE_KEY",
    "UNDEFINED",
    "Mapping",
    "MappingError",
    "UndefinedType",
    "compile_mapping",
    "validate_mapping",
]
