"""``POST /v1/b`` with the requests Segment's mobile SDKs send, byte for byte in shape.

Neither analytics-swift nor analytics-kotlin has a way to run here, so the test rebuilds
their upload from their source:

* segmentio/analytics-kotlin ``core/src/main/java/com/segment/analytics/kotlin/core/
  HTTPClient.kt`` (``RequestFactory.upload``: ``POST https://{apiHost}/b``,
  ``Content-Type: text/plain``, ``Content-Encoding: gzip``, ``User-Agent:
  analytics-kotlin/…``, no Authorization) and ``…/core/utilities/EventsFileManager.kt``
  (the body: ``{"batch":[`` events joined by ``,`` ``],"sentAt":"…","writeKey":"…"}``);
* segmentio/analytics-swift ``Sources/Segment/Utilities/Networking/HTTPClient.swift``
  (``startBatchUpload``: ``POST https://{apiHost}/b``; ``configuredRequest``:
  ``Content-Type: application/json; charset=utf-8``, ``User-Agent: analytics-ios/…``,
  ``Accept-Encoding: gzip``, no Authorization) and
  ``…/Utilities/Storage/Types/DirectoryStore.swift`` (the body: ``{ "batch": [`` and one
  event per line, each but the first led by ``,``, then ``],"sentAt":"…","writeKey":"…"}``).

So the write key travels only in the body. Both let the app add headers (Swift's
``requestFactory``, Kotlin's ``RequestFactory``), and Segment's older mobile SDKs sent
``Authorization: Basic``; the third case adds it to the Swift request. Messages carry no
``sentAt`` or ``writeKey`` of their own.
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest

pytestmark = pytest.mark.slow

PAST_ISO = "2021-03-04T05:06:07.000Z"


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _messages(library: str, run: str) -> list[dict]:
    """identify, track (a past timestamp: an event queued offline), screen and group, as the
    mobile SDKs build them: their own messageId, anonymousId, timestamp, context, _metadata."""
    context = {
        "library": {"name": library, "version": "1.16.0"},
        "app": {"name": "Millpond Demo", "version": "2.3.0", "build": "230",
                "namespace": "com.example.demo"},
        "device": {"manufacturer": "Google", "model": "Pixel 8", "type": "android",
                   "id": f"device-{run}"},
        "os": {"name": "Android", "version": "14"},
        "screen": {"width": 1080, "height": 2400, "density": 2.625},
        "network": {"wifi": True, "cellular": False, "bluetooth": False},
        "locale": "en-US", "timezone": "Europe/Berlin", "instanceId": str(uuid.uuid4()),
    }
    common = {"anonymousId": f"anon-{run}", "userId": f"user-{run}", "context": context,
              "integrations": {}, "_metadata": {"bundled": [], "unbundled": [],
                                                "bundledIds": []}}
    return [
        {"type": "identify", "messageId": str(uuid.uuid4()), "timestamp": _now_iso(),
         "traits": {"email": f"{run}@example.com", "plan": "pro"}, **common},
        {"type": "track", "messageId": str(uuid.uuid4()), "timestamp": PAST_ISO,
         "event": f"Offline Purchase {run}", "properties": {"revenue": 9.99}, **common},
        {"type": "screen", "messageId": str(uuid.uuid4()), "timestamp": _now_iso(),
         "name": f"Settings {run}", "properties": {"tab": "privacy"}, **common},
        {"type": "group", "messageId": str(uuid.uuid4()), "timestamp": _now_iso(),
         "groupId": f"group-{run}", "traits": {"name": "Acme"}, **common},
    ]


def _kotlin_request(write_key: str, messages: list[dict]) -> tuple[dict, bytes]:
    body = ('{"batch":[' + ",".join(json.dumps(m, separators=(",", ":")) for m in messages)
            + f'],"sentAt":"{_now_iso()}","writeKey":"{write_key}"}}')
    headers = {"Content-Type": "text/plain", "Content-Encoding": "gzip",
               "User-Agent": "analytics-kotlin/1.16.0"}
    return headers, gzip.compress(body.encode())


def _swift_request(write_key: str, messages: list[dict]) -> tuple[dict, bytes]:
    lines = ['{ "batch": [']
    lines += [("" if i == 0 else ",") + json.dumps(m) for i, m in enumerate(messages)]
    lines.append(f'],"sentAt":"{_now_iso()}","writeKey":"{write_key}"}}')
    headers = {"Content-Type": "application/json; charset=utf-8",
               "User-Agent": "analytics-ios/1.6.0", "Accept-Encoding": "gzip"}
    return headers, ("\n".join(lines) + "\n").encode()


def _swift_basic_auth_request(write_key: str, messages: list[dict]) -> tuple[dict, bytes]:
    headers, body = _swift_request(write_key, messages)
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    return {**headers, "Authorization": f"Basic {token}"}, body


SHAPES = {
    "analytics-kotlin": ("analytics-kotlin", _kotlin_request),
    "analytics-swift": ("analytics-swift", _swift_request),
    "analytics-swift + Basic auth": ("analytics-swift", _swift_basic_auth_request),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_mobile_batch_upload_is_stored_once(shared_server, shape):
    library, build = SHAPES[shape]
    source = shared_server.create_source(f"mobile-{shape}")
    run = uuid.uuid4().hex[:10]
    messages = _messages(library, run)
    headers, body = build(source["write_key"], messages)

    # Sent twice: a mobile SDK re-uploads a batch file whose answer it did not get.
    for _ in range(2):
        answer = httpx.post(f"{shared_server.url}/v1/b", content=body, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text

    stored = {e["messageId"]: e for e in shared_server.events(source=source["id"])}
    assert sorted(stored) == sorted(m["messageId"] for m in messages), stored
    for sent in messages:
        event = stored[sent["messageId"]]
        for key in ("type", "userId", "anonymousId", "event", "name", "groupId", "properties",
                    "traits"):
            assert event.get(key) == sent.get(key), (key, event)
        assert event["context"]["library"] == {"name": library, "version": "1.16.0"}
        assert event["timestamp"] == sent["timestamp"] or (
            datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
            == datetime.fromisoformat(sent["timestamp"].replace("Z", "+00:00"))), event
        assert event["receivedAt"], event
