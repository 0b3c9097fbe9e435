"""The real SDKs, unchanged but for host and write key, deliver every call type to millpond.

Each SDK sends identify, track (with a past ``timestamp``), page, screen, group and alias,
then flushes. Every message must be in the log under the SDK's own ``messageId`` with the
right type, ids, properties/traits and time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NODE_DIR = Path(__file__).parent / "node"
PAST = datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
PAST_ISO = "2021-03-04T05:06:07Z"

# What each call sends, and what the stored event must then hold.
EXPECTED = {
    "identify": {"userId": "sdk-user", "traits": {"email": "sdk@example.com", "plan": "pro"}},
    "track": {"userId": "sdk-user", "event": "Order Completed",
              "properties": {"revenue": 42.5, "sku": "A-1"}},
    "page": {"userId": "sdk-user", "name": "Home", "properties": {"path": "/"}},
    "screen": {"anonymousId": "sdk-anon", "name": "Settings", "properties": {"tab": "privacy"}},
    "group": {"userId": "sdk-user", "groupId": "sdk-group", "traits": {"name": "Acme"}},
    "alias": {"userId": "sdk-user", "previousId": "sdk-anon"},
}


def _python_client(sdk: str):
    if sdk == "segment":
        from segment.analytics import Client
    elif sdk == "rudderstack":
        from rudderstack.analytics import Client
    else:
        from customerio.analytics import Client
    return Client


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _flush_within(client, seconds: float) -> None:
    """``flush()`` blocks until the SDK gives up or succeeds; fail instead of hanging."""
    done = threading.Event()

    def run():
        client.flush()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(seconds), f"SDK did not finish sending within {seconds}s"


def _assert_delivered(server, source: dict, sent: dict[str, str], started: datetime) -> None:
    """``sent`` maps call type to the SDK's own messageId."""
    events = {e["messageId"]: e for e in server.events(source=source["id"])}
    assert sorted(events) == sorted(sent.values()), "log and SDK disagree on the messages"
    for kind, message_id in sent.items():
        event = events[message_id]
        assert event["type"] == kind
        assert event["source_id"] == source["id"]
        for key, value in EXPECTED[kind].items():
            assert event.get(key) == value, (kind, key, event)
        assert _parse(event["receivedAt"]) >= started.replace(microsecond=0)
        when = _parse(event["timestamp"])
        if kind == "track":  # the past timestamp is kept as sent (backfill)
            assert when == PAST
        else:  # stamped by the SDK at the call, so close to now
            assert abs((when - started).total_seconds()) < 60, event


@pytest.mark.parametrize("sdk", ["segment", "rudderstack", "customerio"])
def test_python_sdk_delivers_every_call_type(shared_server, sdk):
    source = shared_server.create_source(f"python-{sdk}")
    errors: list = []
    Client = _python_client(sdk)
    client = Client(source["write_key"], host=shared_server.url,
                    on_error=lambda exc, batch: errors.append(exc))
    started = datetime.now(UTC)
    answers = {
        "identify": client.identify(user_id="sdk-user",
                                    traits={"email": "sdk@example.com", "plan": "pro"}),
        "track": client.track(user_id="sdk-user", event="Order Completed",
                              properties={"revenue": 42.5, "sku": "A-1"}, timestamp=PAST),
        "page": client.page(user_id="sdk-user", category="Docs", name="Home",
                            properties={"path": "/"}),
        "screen": client.screen(anonymous_id="sdk-anon", name="Settings",
                                properties={"tab": "privacy"}),
        "group": client.group(user_id="sdk-user", group_id="sdk-group",
                              traits={"name": "Acme"}),
        "alias": client.alias(previous_id="sdk-anon", user_id="sdk-user"),
    }
    _flush_within(client, 30)
    client.join()
    assert errors == []
    for ok, _msg in answers.values():
        assert ok
    sent = {kind: msg["messageId"] for kind, (_ok, msg) in answers.items()}
    _assert_delivered(shared_server, source, sent, started)

    if sdk == "rudderstack":  # it gzips, and puts identify traits only in context.traits
        assert client.gzip is True
        assert "traits" not in answers["identify"][1]
        assert answers["identify"][1]["context"]["traits"] == EXPECTED["identify"]["traits"]


def test_node_sdk_delivers_every_call_type(shared_server):
    node = shutil.which("node")
    assert node, "node is not on PATH"
    assert (NODE_DIR / "node_modules" / "@segment" / "analytics-node").is_dir(), \
        "run `make test` (npm install in tests/sdk/node) first"
    source = shared_server.create_source("node-analytics")
    started = datetime.now(UTC)
    proc = subprocess.run([node, "send_all.mjs", shared_server.url, source["write_key"]],
                          cwd=NODE_DIR, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NODE_NO_WARNINGS": "1"})
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert [r["error"] for r in lines] == [None] * 6, lines
    sent = {r["call"]: r["messageId"] for r in lines}
    assert sorted(sent) == sorted(EXPECTED)
    assert all(m.startswith("node-next-") for m in sent.values())  # the SDK's own ids
    _assert_delivered(shared_server, source, sent, started)


@pytest.mark.parametrize("sdk", ["segment", "rudderstack", "customerio"])
def test_python_sdk_gives_up_at_once_on_a_bad_write_key(shared_server, sdk):
    """A 401 must read as a permanent API error to each SDK, not as a network failure.

    The RudderStack and Customer.io SDKs read ``code``/``message`` at the top level of an
    error body; when those were missing they raised KeyError, treated the 401 as a
    network error and retried it with exponential back-off for minutes.
    """
    errors: list = []
    Client = _python_client(sdk)
    client = Client("not-a-write-key", host=shared_server.url,
                    on_error=lambda exc, batch: errors.append(exc))
    client.track(user_id="u1", event="Nope")
    started = time.monotonic()
    _flush_within(client, 20)
    client.join()
    assert time.monotonic() - started < 10
    assert len(errors) == 1
    error = errors[0]
    assert getattr(error, "status", None) == 401, repr(error)
    assert error.code == "unauthorized" and "invalid write key" in error.message
