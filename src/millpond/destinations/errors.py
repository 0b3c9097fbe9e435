"""The only exceptions that leave `millpond.destinations`.

The library raises these; the API and CLI layers turn them into
`{"error": {"code", "message", "field"}}` bodies and one-line messages.
"""

from __future__ import annotations


class DestinationError(Exception):
    """Base class for errors raised by the destination catalog."""


class SettingsError(DestinationError, ValueError):
    """Destination settings are invalid.

    `field` is the settings key at fault ("" for the object as a whole) and
    `message` names the field, the value given and a correct example.
    """

    code = "invalid_settings"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class UnknownDestinationType(DestinationError, LookupError):
    """No destination type is registered under that name."""

    code = "unknown_destination_type"

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        self.message = (
            f"unknown destination type `{name}`; known types: {', '.join(known) or '(none)'}"
        )
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message
