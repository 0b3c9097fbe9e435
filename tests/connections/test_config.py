"""Destination configuration is validated up front, with the field at fault named."""

from __future__ import annotations

import msgspec
import pytest

from millpond.api.models import DestinationCreate, to_dict
from millpond.api.schema import decode
from millpond.connections import config
from millpond.connections.tester import try_event
from millpond.destinations import get_type
from millpond.errors import BadRequest

WEBHOOK = get_type("webhook")
MIXPANEL = get_type("mixpanel")


def field_of(fn, *args) -> str:
    with pytest.raises(BadRequest) as info:
        fn(*args)
    return info.value.field


def typed_actions(actions: list, cls=None) -> list[dict]:
    """``actions`` as the API takes them: shape checked by the request type, the rest by
    :func:`config.actions`."""
    cls = cls or WEBHOOK
    body = decode(msgspec.json.encode({"name": "d", "type": cls.name, "actions": actions}),
                  DestinationCreate)
    return config.actions(to_dict(body)["actions"], cls)


def typed_rate_limit(rate_limit: dict, cls=None) -> dict:
    cls = cls or WEBHOOK
    body = decode(msgspec.json.encode({"name": "d", "type": cls.name,
                                       "rate_limit": rate_limit}), DestinationCreate)
    return config.rate_limit(to_dict(body)["rate_limit"], cls)


def test_presets_are_materialised_when_actions_are_left_out():
    actions = config.actions(None, MIXPANEL)
    assert [a["name"] for a in actions] == [p.name for p in MIXPANEL.presets]
    assert all(a["max_event_age"] is None for a in actions)
    # Every preset is on, but the segment-membership trait sync: an opt-in.
    assert [a["name"] for a in actions if not a["enabled"]] == [
        "Sync segment membership as a trait"]


def test_an_action_named_like_a_preset_keeps_its_required_fields():
    preset = config.presets(MIXPANEL)[0]
    broken = {**preset, "mapping": {"event": {"@path": "$.event"}}}
    assert field_of(config.actions, [broken], MIXPANEL) == "actions[0].mapping"
    custom = {**broken, "name": "My tracks"}  # no preset of that name: no required fields
    assert config.actions([custom], MIXPANEL)[0]["name"] == "My tracks"


def test_required_field_check_is_skipped_when_the_output_shape_depends_on_the_event():
    whole = {"name": "Track events", "trigger": "type != null", "mapping": {"@path": "$."}}
    assert config.actions([whole], MIXPANEL)


@pytest.mark.parametrize("action,field", [
    ({"name": "", "trigger": "type != null", "mapping": {}}, "actions[0].name"),
    ({"name": "a", "mapping": {}}, "actions[0].trigger"),
    ({"name": "a", "trigger": "type != null"}, "actions[0].mapping"),
    ({"name": "a", "trigger": 'type = "x" and', "mapping": {}}, "actions[0].trigger"),
    ({"name": "a", "trigger": "type != null", "mapping": {"a": {"@if": 3}}},
     "actions[0].mapping"),
    ({"name": "a", "trigger": "type != null", "mapping": {}, "max_event_age": "soon"},
     "actions[0].max_event_age"),
    ({"name": "a", "trigger": "type != null", "mapping": {}, "max_event_age": "0s"},
     "actions[0].max_event_age"),
    ({"name": "a", "trigger": "type != null", "mapping": {}, "enabled": "yes"},
     "actions[0].enabled"),
])
def test_action_mistakes_name_their_field(action, field):
    assert field_of(typed_actions, [action]) == field


def test_duplicate_action_names_are_refused():
    a = {"name": "a", "trigger": "type != null", "mapping": {}}
    assert field_of(config.actions, [a, a], WEBHOOK) == "actions[1].name"


def test_rate_limits_default_to_the_type_and_must_be_sane():
    assert config.rate_limit(None, MIXPANEL) == {"events_per_second": 30000.0,
                                                 "requests_per_second": None,
                                                 "max_in_flight": 16}
    assert typed_rate_limit({"requests_per_second": 5, "max_in_flight": 3}) == {
        "events_per_second": 100.0, "requests_per_second": 5.0, "max_in_flight": 3}
    for bad in ({"events_per_second": 0}, {"events_per_second": True},
                {"events_per_second": 1e9}, {"requests_per_second": 1e6}, {"burst": 1},
                {"max_in_flight": 0}, {"max_in_flight": 2.5}, {"max_in_flight": 10_000},
                {"max_in_flight": True}):
        assert field_of(typed_rate_limit, bad).startswith("rate_limit.")


def test_settings_errors_point_into_settings():
    assert field_of(config.parse_settings, MIXPANEL, {}) == "settings.project_token"
    assert field_of(config.destination_type, "nope") == "type"


def test_masked_values_sent_back_keep_the_stored_secrets():
    old = {"url": "https://example.com/h", "secret": "whsec_0123456789abcdef",
           "headers": {"Authorization": "Bearer token-0123456789", "X-Team": "a"}}
    masked = WEBHOOK.mask_settings(old)
    assert masked["secret"] != old["secret"]
    back = config.keep_masked({**masked, "headers": {**masked["headers"], "X-Team": "b"}},
                              old, WEBHOOK)
    assert back == {**old, "headers": {**old["headers"], "X-Team": "b"}}
    changed = config.keep_masked({**masked, "secret": "whsec_new_new_new_new"}, old, WEBHOOK)
    assert changed["secret"] == "whsec_new_new_new_new"


def test_tester_masks_secrets_wherever_they_appear():
    key = "0123456789abcdef0123456789abcdef"
    rt = config.runtime("amplitude", {"api_key": key}, config.presets(get_type("amplitude")))
    event = {"type": "track", "event": "E", "userId": "user-0001", "messageId": "m1",
             "timestamp": "2024-05-01T00:00:00Z"}
    result = try_event(rt, {"api_key": key}, event)
    sent = [a for a in result["actions"] if a["outcome"] == "send"]
    assert sent and key not in str(result)
    assert "••••" in str(sent[0]["request"]["body"])


def test_tester_reports_disabled_and_unmatched_actions():
    actions = [{"name": "on", "trigger": 'type = "track"', "mapping": {"x": 1}},
               {"name": "off", "trigger": "type != null", "mapping": {"x": 2},
                "enabled": False}]
    rt = config.runtime("webhook", {"url": "https://example.com/h"},
                        config.actions(actions, WEBHOOK))
    result = try_event(rt, {"url": "https://example.com/h"}, {"type": "page"})
    assert (result["outcome"], result["reason"]) == ("skipped", "no action handles page")
    assert [(a["action"], a["enabled"], a["matched"]) for a in result["actions"]] == [
        ("on", True, False), ("off", False, True)]


def test_retry_limits_are_per_destination_with_defaults():
    """#13 items 5 and 11: how long a Retry-After is honoured and how long a destination
    may fail before it gives up are settings of each destination."""
    got = config.rate_limit({"max_retry_after": 60, "max_retry_age": "30m"}, WEBHOOK)
    assert (got["max_retry_after"], got["max_retry_age"]) == (60.0, 1800.0)
    assert (config.max_retry_after(got), config.max_retry_age(got)) == (60.0, 1800.0)
    defaults = config.rate_limit(None, WEBHOOK)
    assert (config.max_retry_after(defaults), config.max_retry_age(defaults)) == (300.0, 14400.0)
    assert "max_retry_age" not in config.rate_limit({**got, "max_retry_age": None}, WEBHOOK)
    for bad in ({"max_retry_after": 0}, {"max_retry_after": "5m"}, {"max_retry_age": "10s"},
                {"max_retry_age": "soon"}, {"max_retry_age": True}):
        assert field_of(typed_rate_limit, bad) == f"rate_limit.{next(iter(bad))}"
