"""Mixpanel: /import records with a stable dedupe tuple, /engage profiles, strict partials."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from millpond.destinations import Item, Partial, Reject, Retry, Sent, SettingsError
from millpond.destinations.mixpanel import Mixpanel, insert_id
from millpond.destinations.wire import to_epoch_ms

from .samples import EVENTS, IDENTIFY, PAGE, SCREEN, TRACK, actions_for, deliver, plan, send


def _dest(fake, **overrides) -> Mixpanel:
    return Mixpanel.from_settings({**fake.destination_settings(), **overrides})


def test_import_records_carry_the_dedupe_tuple(vendor, http: httpx.Client) -> None:
    fake = vendor("mixpanel")
    assert all(o == Sent() for o in deliver(_dest(fake), EVENTS, http))
    by_name = {r["event"]: r["properties"] for r in fake.received}
    assert set(by_name) == {"Order Completed", "Product Viewed", "Loaded a Page", "Loaded a Screen"}
    order = by_name["Order Completed"]
    assert order["time"] == to_epoch_ms(TRACK["timestamp"]) == 1714564860123
    assert order["distinct_id"] == "user-12345" and order["revenue"] == 42.5
    assert order["$insert_id"] == insert_id(TRACK["messageId"])
    assert re.fullmatch(r"x-[0-9a-f]{32}", order["$insert_id"])  # hashed: not a valid id
    page = by_name["Loaded a Page"]
    assert page["$insert_id"] == PAGE["messageId"]  # a UUID fits as is
    assert page["distinct_id"] == PAGE["anonymousId"] and page["name"] == "Pricing"
    assert by_name["Loaded a Screen"]["name"] == SCREEN["name"]
    request = next(r for r in fake.requests if r.path == "/import")
    assert request.query_one("strict") == "1"


def test_identify_sets_profile_via_engage(vendor, http: httpx.Client) -> None:
    fake = vendor("mixpanel")
    deliver(_dest(fake), [IDENTIFY], http)
    [update] = fake.profile_updates
    assert update["$token"] == fake.project_token and update["$distinct_id"] == "user-12345"
    profile = fake.profiles["user-12345"]
    assert profile["$email"] == "ada@example.com" and profile["plan"] == "pro"
    request = fake.requests[0]
    assert request.path == "/engage" and request.query_one("verbose") == "1"
    assert request.query_one("ip") == "0" and request.header("authorization") is None


def test_resend_is_deduplicated(vendor, http: httpx.Client) -> None:
    fake = vendor("mixpanel")
    events = [TRACK, PAGE, SCREEN]
    deliver(_dest(fake), events, http)
    deliver(_dest(fake), events, http)
    assert len(fake.received) == 3 and fake.duplicates == 3


@pytest.mark.parametrize("auth", ["api_secret", "project_token", "service_account"])
def test_import_auth_forms(vendor, http: httpx.Client, auth: str) -> None:
    fake = vendor("mixpanel")
    settings = {"project_token": fake.project_token, "endpoint": fake.url}
    if auth == "api_secret":
        settings["api_secret"] = fake.api_secret
    elif auth == "service_account":
        [(user, secret)] = fake.service_accounts.items()
        settings |= {
            "service_account_username": user,
            "service_account_secret": secret,
            "project_id": fake.project_id,
        }
    dest = Mixpanel.from_settings(settings)
    assert deliver(dest, [TRACK], http) == [Sent()]
    if auth == "service_account":
        assert fake.requests[0].query_one("project_id") == str(fake.project_id)


def test_bad_credentials_are_terminal(vendor, http: httpx.Client) -> None:
    fake = vendor("mixpanel")
    [outcome] = deliver(_dest(fake, api_secret="wrong-secret"), [TRACK], http)
    assert outcome == Reject("HTTP 401: Invalid credentials")


def test_strict_400_is_partial(vendor, http: httpx.Client) -> None:
    fake = vendor("mixpanel")
    dest = _dest(fake)
    [(action, items)] = plan(dest, [TRACK, PAGE, SCREEN])
    bad = Item(
        {**items[1].payload, "properties": {**items[1].payload["properties"], "time": 1000}},
        items[1].event,
    )
    outcome = send(dest, dest.build_request(action, [items[0], bad, items[2]]), http)
    assert isinstance(outcome, Partial)
    assert outcome.sent_indexes == {0, 2} and set(outcome.rejected) == {1}
    assert "properties.time" in outcome.rejected[1] and outcome.pending(3) == []
    assert [r["event"] for r in fake.received] == ["Order Completed", "Loaded a Screen"]


def test_engage_status_zero_is_rejected(vendor, http: httpx.Client) -> None:
    fake = vendor("mixpanel")
    [outcome] = deliver(_dest(fake, project_token="not-the-token"), [IDENTIFY], http)
    assert isinstance(outcome, Reject) and "no valid profile updates" in outcome.reason
    assert _dest(fake).classify(200, {}, b"0", 1) == Reject("Mixpanel accepted no record: 0")


def test_validate_item() -> None:
    dest = Mixpanel.from_settings(Mixpanel.settings_example)
    [(action, payload)] = actions_for(dest, TRACK)
    assert dest.validate_item(action, payload) is None
    props = payload["properties"]
    assert "placeholder" in dest.validate_item(
        action, {**payload, "properties": {**props, "distinct_id": "undefined"}}
    )
    assert "1971" in dest.validate_item(
        action, {**payload, "properties": {**props, "time": "1970-06-01T00:00:00Z"}}
    )
    assert "event" in dest.validate_item(action, {**payload, "event": ""})
    assert "exactly one" in dest.validate_item(
        "x", {"$distinct_id": "u-1", "$set": {}, "$unset": ["a"]}
    )


@pytest.mark.parametrize(
    ("message_id", "kept"),
    [
        ("4a1b6c1e-0d7f-4c3e-9a43-5d2a1f2e3b01", True),
        ("abc-123", True),
        ("a" * 36, True),
        ("a" * 37, False),
        ("has_underscore", False),
        ("null", False),
        ("-1", False),
        ("ünïcode", False),
    ],
)
def test_insert_id_rule(message_id: str, kept: bool) -> None:
    value = insert_id(message_id)
    assert (value == message_id) is kept
    assert re.fullmatch(r"[A-Za-z0-9-]{1,36}", value) and insert_id(message_id) == value


def test_settings_rules() -> None:
    with pytest.raises(SettingsError) as err:
        Mixpanel.parse_settings(
            {"project_token": "t", "service_account_username": "sa", "service_account_secret": "s"}
        )
    assert err.value.field == "project_id"
    with pytest.raises(SettingsError) as err:
        Mixpanel.parse_settings({"project_token": "t", "service_account_username": "sa"})
    assert err.value.field == "service_account_secret"
    with pytest.raises(SettingsError) as err:
        Mixpanel.parse_settings({"project_token": "t", "region": "mars"})
    assert err.value.field == "region" and '"mars"' in err.value.message
    eu = Mixpanel.from_settings({"project_token": "t", "region": "eu"})
    request = eu.build_request("Track events", [Item({"event": "x", "properties": {}}, TRACK)])
    assert request.url == "https://api-eu.mixpanel.com/import?strict=1"
    assert json.loads(request.body)[0]["properties"]["distinct_id"] == "user-12345"


def test_a_200_that_is_not_mixpanels_answer_is_retried(vendor, http: httpx.Client) -> None:
    """#13 item 13: a proxy's page with status 200 is not an ingestion; before, it was
    counted as sent and the event never reached Mixpanel."""
    fake = vendor("mixpanel")
    dest = _dest(fake)
    fake.fail_next(1, 200, body="<html><body>Service temporarily unavailable</body></html>")
    [outcome] = deliver(dest, [TRACK], http)
    assert isinstance(outcome, Retry) and "not Mixpanel's answer" in outcome.reason
    assert "Service temporarily unavailable" in outcome.reason and fake.received == []
    assert deliver(dest, [TRACK], http) == [Sent()]
    assert [r["event"] for r in fake.received] == ["Order Completed"]
    assert dest.answer(200, {}, b"1", 1) == Sent()
    assert dest.answer(200, {}, b'{"status": 1, "error": null}', 1) == Sent()
    assert isinstance(dest.answer(200, {}, b"", 1), Retry)
