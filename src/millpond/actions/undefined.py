"""The ``UNDEFINED`` sentinel: "no value", as opposed to JSON ``null``.

Mapping-kit distinguishes the two the way JavaScript does: a field whose mapping resolves
to undefined is left out of the payload, a field that resolves to ``null`` is sent as null.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["UNDEFINED", "UndefinedType"]


class UndefinedType:
    """Singleton type of :data:`UNDEFINED`; falsy, and never equal to anything else."""

    __slots__ = ()
    _instance: UndefinedType | None = None

    def __new__(cls) -> UndefinedType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> Any:
        return (UndefinedType, ())


UNDEFINED: Final = UndefinedType()
