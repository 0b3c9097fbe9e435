"""The identify-style preset for segment membership, on every type that offers it,
against the vendor fakes: an Audience Entered sets the trait ``<segment key>: true``, an
Audience Exited sets it to false, and other events never trigger it."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from millpond.actions import compile_action
from millpond.destinations import Item, Sent
from millpond.destinations.audiences import NAME
from millpond.destinations.registry import get_type
from millpond.segments.outputs import audience_event
from millpond.storage.models import Segment
from millpond.timeutil import parse_iso_ms

from .samples import TRACK, send

SEGMENT = Segment("seg_1", "vip", "VIPs", {"event": "Order Completed"})
AT = parse_iso_ms("2024-06-01T00:00:00Z")


def audience(member: bool, generation: int) -> dict:
    """The event as the log stores it (what actions are given)."""
    event = audience_event(SEGMENT, person_id="prf_1", user_id="user-9", anonymous_id=None,
                           member=member, at_ms=AT, generation=generation,
                           received_ms=AT + 5)
    return msgspec.json.decode(event.body)


def sync(type_name: str, fake, events: list[dict], http: httpx.Client) -> None:
    cls = get_type(type_name)
    dest = cls.from_settings(fake.destination_settings())
    [spec] = [p for p in cls.presets if p.name == NAME]
    assert spec.enabled is False and spec.max_event_age is None
    action = compile_action(spec)
    assert not action.trigger.matches(TRACK)
    forged = {**audience(True, 0), "source_id": "src_web"}  # not millpond's own
    assert not action.trigger.matches(forged)
    for event in events:
        assert action.trigger.matches(event)
        payload = action.mapping.apply(event)
        assert dest.validate_item(NAME, payload) is None
        request = dest.build_request(NAME, [Item(payload, event)])
        assert send(dest, request, http) == Sent()


@pytest.mark.parametrize("member", [True, False])
def test_customerio_sets_the_attribute(vendor, http, member):
    fake = vendor("customerio")
    sync("customerio", fake, [audience(member, 0)], http)
    [(customer, attributes)] = fake.identifies
    assert customer == "user-9" and attributes["vip"] is member
    assert attributes["_timestamp"] == AT // 1000  # orders it among attribute updates


def test_mixpanel_sets_the_profile_property(vendor, http):
    fake = vendor("mixpanel")
    sync("mixpanel", fake, [audience(True, 0)], http)
    assert fake.profiles["user-9"]["vip"] is True
    sync("mixpanel", fake, [audience(False, 1)], http)
    assert fake.profiles["user-9"]["vip"] is False


def test_amplitude_sets_the_user_property(vendor, http):
    fake = vendor("amplitude")
    sync("amplitude", fake, [audience(True, 0), audience(False, 1)], http)
    assert fake.users["user-9"]["vip"] is False


def test_webhook_receives_a_segment_identify(vendor, http):
    fake = vendor("webhook")
    entered = audience(True, 0)
    sync("webhook", fake, [entered], http)
    [body] = fake.received
    assert body["type"] == "identify" and body["userId"] == "user-9"
    assert body["traits"] == {"vip": True}
    assert body["messageId"] == entered["messageId"] + "-trait"
    assert body["timestamp"] == "2024-06-01T00:00:00.000Z"
