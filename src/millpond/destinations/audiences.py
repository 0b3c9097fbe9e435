"""Identify-style presets for segment membership: the trait ``<segment key>: true|false``.

Why a preset per type and not a new kind of output: a segment's outputs are ordinary
``Audience Entered`` / ``Exited`` track events (see :mod:`millpond.segments.outputs`),
which carry the membership as ``context.traits.<segment key>``. A type whose vendor
keeps traits (Customer.io attributes, Mixpanel people, Amplitude user properties, a
webhook receiver) maps that to its own trait update, as Segment's Engage does when an
audience is sent as identify calls with a boolean trait.

The presets are offered turned off (``enabled: false`` on a new destination): the same
Audience events already reach the type's track preset, and whether a campaign tool
should see an event, a trait or both is the owner's choice. They carry no trigger
window: a trait update of any age is safe (vendors order them by time), unlike an event
that starts a campaign.
"""

from __future__ import annotations

from typing import Any

from millpond.actions import ActionSpec, FieldSpec

#: Only millpond's own Audience events (the built-in source ``computed``).
AUDIENCE_TRIGGER = ('type = "track" and source_id = "computed" and '
                    '(event = "Audience Entered" or event = "Audience Exited")')
NAME = "Sync segment membership as a trait"
#: ``{"<segment key>": true|false}``.
TRAITS = {"@path": "$.context.traits"}


def audience_preset(mapping: dict[str, Any], fields: tuple[FieldSpec, ...]) -> ActionSpec:
    return ActionSpec(name=NAME, trigger=AUDIENCE_TRIGGER, mapping=mapping, fields=fields,
                      enabled=False)
