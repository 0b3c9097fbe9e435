"""One compliance test over every registered destination type.

What every type must do, whatever its vendor: validate settings with messages
for people, mask secrets, ship presets that compile and produce payloads its
own `build_request` turns into requests its vendor's fake accepts, classify
answers by the shared retry table (where its docs agree), and respect the
vendor's batch limits.
"""

from __future__ import annotations

import copy
import json
from urllib.parse import urlsplit

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millpond.actions import compile_action
from millpond.destinations import (
    Item,
    Partial,
    Reject,
    Retry,
    Sent,
    SettingsError,
    all_types,
    catalog,
    estimate_size,
    get_type,
)
from millpond.destinations.base import DestinationType

from .samples import EVENTS, actions_for, deliver, plan, send, track_event

NAMES = ["amplitude", "customerio", "mixpanel", "posthog", "segment", "webhook"]


@pytest.fixture(params=NAMES)
def type_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def dest_cls(type_name: str) -> type[DestinationType]:
    return get_type(type_name)


def test_every_built_in_type_is_registered() -> None:
    # The HTTP vendors run the compliance suite below; the loader types (a real PostgreSQL,
    # a directory or bucket) are tested in tests/warehouses.
    assert sorted(cls.name for cls in all_types() if cls.kind == "vendor") == NAMES
    assert sorted(cls.name for cls in all_types() if cls.kind != "vendor") == [
        "parquet", "postgres"]
    assert [entry["name"] for entry in catalog()] == [cls.name for cls in all_types()]


# -- declared capabilities --------------------------------------------------------------


def test_capabilities_are_declared(dest_cls: type[DestinationType]) -> None:
    assert dest_cls.title and urlsplit(dest_cls.docs).scheme == "https"
    assert dest_cls.replayable is True
    assert dest_cls.default_rate_limit.events_per_second > 0
    assert dest_cls.batching.max_events >= 1 and dest_cls.batching.max_bytes > 0
    assert dest_cls.batching.linger_seconds >= 0
    assert isinstance(dest_cls.dedupe_key, str) and dest_cls.dedupe_key
    assert dest_cls.secret_fields <= set(dest_cls.settings_type.__struct_fields__)
    assert dest_cls.secret_fields, "every vendor here has a credential"
    assert dest_cls.settings_type.__struct_config__.forbid_unknown_fields
    assert dest_cls.presets


def test_catalog_entry_is_json(dest_cls: type[DestinationType]) -> None:
    entry = next(e for e in catalog() if e["name"] == dest_cls.name)
    assert json.loads(json.dumps(entry)) == entry
    schema = entry["settings_schema"]
    definition = schema["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    assert definition["additionalProperties"] is False
    for name, prop in definition["properties"].items():
        described = "description" in prop or any("description" in o for o in prop.get("anyOf", []))
        assert described, f"{dest_cls.name}.{name} has no description"
    assert [p["name"] for p in entry["presets"]] == [p.name for p in dest_cls.presets]


# -- settings -------------------------------------------------------------------------


def test_example_settings_are_valid(dest_cls: type[DestinationType]) -> None:
    settings = dest_cls.parse_settings(dest_cls.settings_example)
    assert isinstance(dest_cls(settings), dest_cls)


def test_unknown_setting_is_rejected_by_name(dest_cls: type[DestinationType]) -> None:
    raw = {**dest_cls.settings_example, "wrte_key": "oops"}
    with pytest.raises(SettingsError) as err:
        dest_cls.parse_settings(raw)
    assert err.value.field == "wrte_key"
    assert "`wrte_key`" in err.value.message and '"oops"' in err.value.message
    assert "e.g." in err.value.message


def test_missing_required_setting_names_it(dest_cls: type[DestinationType]) -> None:
    required = [f.name for f in msgspec.structs.fields(dest_cls.settings_type) if f.required]
    assert required
    raw = {k: v for k, v in dest_cls.settings_example.items() if k != required[0]}
    with pytest.raises(SettingsError) as err:
        dest_cls.parse_settings(raw)
    assert err.value.field == required[0]
    assert f"`{required[0]}`" in err.value.message and "e.g." in err.value.message


def test_wrong_type_names_field_value_and_example(dest_cls: type[DestinationType]) -> None:
    field = next(
        name
        for name in dest_cls.settings_type.__struct_fields__
        if isinstance(dest_cls.settings_example.get(name), str)
    )
    with pytest.raises(SettingsError) as err:
        dest_cls.parse_settings({**dest_cls.settings_example, field: 12345})
    message = err.value.message
    assert err.value.field == field
    assert f"`{field}`" in message and "12345" in message and "e.g." in message


def test_settings_must_be_an_object(dest_cls: type[DestinationType]) -> None:
    with pytest.raises(SettingsError, match="must be an object"):
        dest_cls.parse_settings(["not", "an", "object"])  # type: ignore[arg-type]


def test_secrets_are_masked(dest_cls: type[DestinationType], vendor) -> None:
    fake = vendor(dest_cls.name)
    for raw in (dest_cls.settings_example, fake.destination_settings()):
        before = copy.deepcopy(raw)
        masked = dest_cls.mask_settings(raw)
        assert raw == before  # the input is not modified
        for key, value in raw.items():
            if key in dest_cls.secret_fields and value:
                expected = "••••" + value[-4:] if len(value) > 8 else "••••"
                assert masked[key] == expected
            elif not isinstance(value, dict):
                assert masked[key] == value


# -- presets --------------------------------------------------------------------------


def test_presets_compile(dest_cls: type[DestinationType]) -> None:
    names = [preset.name for preset in dest_cls.presets]
    assert len(set(names)) == len(names)
    for preset in dest_cls.presets:
        action = compile_action(preset)
        assert action.name == preset.name


def test_presets_cover_track_events(dest_cls: type[DestinationType], vendor) -> None:
    dest = dest_cls.from_settings(vendor(dest_cls.name).destination_settings())
    for event in EVENTS:
        if event["type"] == "track":
            assert actions_for(dest, event), f"no preset for {event['event']}"


def test_preset_payloads_are_accepted_by_the_fake(
    dest_cls: type[DestinationType], vendor, http: httpx.Client
) -> None:
    fake = vendor(dest_cls.name)
    dest = dest_cls.from_settings(fake.destination_settings())
    fields = {preset.name: preset.fields for preset in dest.presets}
    for event in EVENTS:
        for name, payload in actions_for(dest, event):
            missing = [f.name for f in fields[name] if f.required and payload.get(f.name) is None]
            assert not missing, f"{name} leaves required {missing} empty for {event['type']}"
    outcomes = deliver(dest, EVENTS, http)
    assert outcomes and all(isinstance(o, Sent) for o in outcomes), outcomes
    assert fake.received, "the fake stored nothing"


def test_build_request_is_deterministic_for_dedupe_keys(
    dest_cls: type[DestinationType], vendor
) -> None:
    dest = dest_cls.from_settings(vendor(dest_cls.name).destination_settings())
    for action, items in plan(dest, EVENTS):
        first, second = dest.build_request(action, items), dest.build_request(action, items)
        assert first.item_count == len(items)
        assert (first.method, first.url) == (second.method, second.url)
        assert _without_clock(first.body) == _without_clock(second.body)


# -- classify -------------------------------------------------------------------------

ERROR_BODY = b'{"error": "something went wrong"}'


@pytest.mark.parametrize("status", [200, 201, 204])
def test_classify_success(dest_cls: type[DestinationType], status: int) -> None:
    dest = dest_cls.from_settings(dest_cls.settings_example)
    body = b'{"code": 200, "status": 1}' if status != 204 else b""
    assert dest.classify(status, {}, body, 3) == Sent()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_classify_terminal(dest_cls: type[DestinationType], status: int) -> None:
    dest = dest_cls.from_settings(dest_cls.settings_example)
    outcome = dest.classify(status, {}, ERROR_BODY, 1)
    assert isinstance(outcome, Reject)
    assert str(status) in outcome.reason and "something went wrong" in outcome.reason


def test_classify_413_asks_to_split_a_batch(dest_cls: type[DestinationType]) -> None:
    dest = dest_cls.from_settings(dest_cls.settings_example)
    outcome = dest.classify(413, {}, b'{"error": "too large"}', 2)
    assert isinstance(outcome, Reject) and outcome.split and "413" in outcome.reason
    single = dest.classify(413, {}, b"too large", 1)
    assert isinstance(single, Reject) and not single.split


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_classify_transient_honours_retry_after(
    dest_cls: type[DestinationType], status: int
) -> None:
    dest = dest_cls.from_settings(dest_cls.settings_example)
    outcome = dest.classify(status, {"retry-after": "7"}, ERROR_BODY, 4)
    assert isinstance(outcome, Retry) and outcome.retry_after == 7.0
    assert str(status) in outcome.reason


def test_classify_retry_after_http_date(dest_cls: type[DestinationType]) -> None:
    dest = dest_cls.from_settings(dest_cls.settings_example)
    outcome = dest.classify(503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"", 1)
    assert isinstance(outcome, Retry) and outcome.retry_after == 0.0  # in the past


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("timed out"),
        httpx.ConnectTimeout("timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
)
def test_transport_errors_retry(dest_cls: type[DestinationType], exc: Exception) -> None:
    dest = dest_cls.from_settings(dest_cls.settings_example)
    outcome = dest.transport_error(exc)
    assert isinstance(outcome, Retry) and type(exc).__name__ in outcome.reason


def test_unusable_url_is_terminal(dest_cls: type[DestinationType]) -> None:
    dest = dest_cls.from_settings(dest_cls.settings_example)
    assert isinstance(dest.transport_error(httpx.UnsupportedProtocol("ftp")), Reject)


def test_injected_failures_classify_as_retry(
    dest_cls: type[DestinationType], vendor, http: httpx.Client
) -> None:
    fake = vendor(dest_cls.name)
    dest = dest_cls.from_settings(fake.destination_settings())
    action, items = plan(dest, [EVENTS[1]])[0]
    request = dest.build_request(action, items)
    fake.fail_next(1, 429, retry_after=2)
    fake.fail_next(1, 500)
    first, second = send(dest, request, http), send(dest, request, http)
    assert isinstance(first, Retry) and first.retry_after == 2.0
    assert isinstance(second, Retry)
    fake.outage(status=503)
    assert isinstance(send(dest, request, http), Retry)
    fake.outage(False)
    assert send(dest, request, http) == Sent()
    assert len(fake.received) == len(items)


def test_timeout_is_retry(dest_cls: type[DestinationType], vendor) -> None:
    fake = vendor(dest_cls.name)
    dest = dest_cls.from_settings(fake.destination_settings())
    action, items = plan(dest, [EVENTS[1]])[0]
    fake.delay_seconds = 0.5
    with httpx.Client(timeout=0.1) as client:
        outcome = send(dest, dest.build_request(action, items), client)
    assert isinstance(outcome, Retry) and "Timeout" in outcome.reason


def test_resend_is_deduplicated(
    dest_cls: type[DestinationType], vendor, http: httpx.Client
) -> None:
    fake = vendor(dest_cls.name)
    dest = dest_cls.from_settings(fake.destination_settings())
    events = [e for e in EVENTS if e["type"] in ("track", "page", "screen")]
    assert all(isinstance(o, Sent) for o in deliver(dest, events, http))
    stored = fake.received
    assert all(isinstance(o, Sent) for o in deliver(dest, events, http))
    assert fake.received == stored
    assert fake.duplicates == len(stored)


# -- batching -------------------------------------------------------------------------


def _batch(dest: DestinationType, count: int, pad: int) -> tuple[str, list[Item]]:
    items = []
    action = ""
    for n in range(count):
        event = track_event(n, pad)
        [(action, payload)] = [(a, p) for a, p in actions_for(dest, event)]
        assert dest.validate_item(action, payload) is None
        items.append(Item(payload, event))
    return action, items


def test_max_events_batch_is_accepted(
    dest_cls: type[DestinationType], vendor, http: httpx.Client
) -> None:
    fake = vendor(dest_cls.name)
    dest = dest_cls.from_settings(fake.destination_settings())
    count = dest.batching.max_events
    action, items = _batch(dest, count, pad=0)
    assert sum(estimate_size(i.payload) for i in items) <= dest.batching.max_bytes
    assert send(dest, dest.build_request(action, items), http) == Sent()
    assert len(fake.received) == count


def test_max_bytes_batch_is_accepted(
    dest_cls: type[DestinationType], vendor, http: httpx.Client
) -> None:
    fake = vendor(dest_cls.name)
    dest = dest_cls.from_settings(fake.destination_settings())
    limits = dest.batching
    count = min(limits.max_events, 50)
    base = estimate_size(_batch(dest, 1, 0)[1][0].payload)
    per_item = min(limits.max_bytes // count, _item_cap(dest))
    action, items = _batch(dest, count, pad=per_item - base - 16)
    total = sum(estimate_size(i.payload) for i in items)
    assert limits.max_bytes * 0.9 <= total <= limits.max_bytes or count == 1
    request = dest.build_request(action, items)
    assert send(dest, request, http) == Sent(), len(request.body)
    assert len(fake.received) == count


def test_one_over_the_event_limit_is_refused_by_the_fake(
    dest_cls: type[DestinationType], vendor, http: httpx.Client
) -> None:
    """The fakes enforce the vendor's documented limits, so a batch one event
    (or one byte budget) beyond what the type declares fails there."""
    name = dest_cls.name
    options = {"webhook": {"batch_size": 10, "max_events": 10}}.get(name, {})
    fake = vendor(name, **options)
    dest = dest_cls.from_settings(fake.destination_settings())
    if name == "customerio":
        # Unbatched: "over the limit" is one item beyond the per-event data limit.
        event = track_event(1, pad=100_001, userId="user-12345")
        [(action, payload)] = actions_for(dest, event)
        assert "100,000" in (dest.validate_item(action, payload) or "")
        outcome = send(dest, dest.build_request(action, [Item(payload, event)]), http)
        assert isinstance(outcome, Reject) and "data" in outcome.reason
        return
    if name == "posthog":
        # No event-count cap at PostHog; the body limit is 20 MB.
        count, pad = 30, 700_000
    else:
        count, pad = dest.batching.max_events + 1, 0
    action, items = _batch(dest, count, pad)
    outcome = send(dest, dest.build_request(action, items), http)
    if name == "segment":  # documented: 200, but a batch over 2500 is dropped
        assert outcome == Sent() and fake.rejected_batches == 1
    else:
        assert isinstance(outcome, Reject) and outcome.split, outcome
    assert fake.received == []


# -- helpers --------------------------------------------------------------------------


def _item_cap(dest: DestinationType) -> int:
    """Largest single payload validate_item lets through, with margin."""
    return {"segment": 30_000, "customerio": 90_000}.get(dest.name, 800_000)


def _without_clock(body: bytes) -> object:
    data = json.loads(body) if body else None
    if isinstance(data, dict):
        data.pop("sentAt", None)
    return data


def test_partial_pending_lists_the_rest() -> None:
    partial = Partial(frozenset({0, 2}), {1: "bad"})
    assert partial.pending(5) == [3, 4]


# -- robustness: nothing but outcomes and reasons leaves a destination -------------------

_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        "event",
        "properties",
        "time",
        "distinct_id",
        "$insert_id",
        "$set",
        "$distinct_id",
        "event_type",
        "user_id",
        "device_id",
        "insert_id",
        "uuid",
        "timestamp",
        "identifier",
        "anonymous_id",
        "attributes",
        "name",
        "type",
        "data",
        "id",
        "userId",
        "messageId",
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(NAMES),
    payload=st.dictionaries(_keys, _json, max_size=6),
    event=st.dictionaries(_keys, _json, max_size=4),
    status=st.integers(100, 599),
    body=st.binary(max_size=64),
)
def test_garbage_never_raises(
    name: str, payload: dict, event: dict, status: int, body: bytes
) -> None:
    cls = get_type(name)
    dest = cls.from_settings(cls.settings_example)
    reason = dest.validate_item("Custom", payload)
    assert reason is None or isinstance(reason, str)
    dest.group_key("Custom", payload)
    request = dest.build_request("Custom", [Item(payload, event)])
    assert request.item_count == 1 and isinstance(request.body, bytes)
    outcome = dest.classify(status, {"Retry-After": "x"}, body, 1)
    assert isinstance(outcome, Sent | Retry | Reject | Partial)
