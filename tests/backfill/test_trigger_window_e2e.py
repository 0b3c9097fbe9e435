"""Trigger windows end to end: a backfilled event three days old reaches an analytics
destination but not a messaging action whose ``max_event_age`` is 72h, and the skip is
counted with its reason."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.delivery import create_destination, stats
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_backfilled_old_event_skips_the_windowed_action_only(server, vendor):
    mixpanel, customerio = vendor("mixpanel"), vendor("customerio")
    server.create_source("history", kind="import")
    with server.admin as admin:
        create_destination(admin, name="analytics", type="mixpanel",
                           settings=mixpanel.destination_settings())
        cio = create_destination(admin, name="messaging", type="customerio",
                                 settings=customerio.destination_settings())
        track_action = next(a for a in cio["actions"] if a["name"] == "Track event")
        assert track_action["max_event_age"] == "72h"  # the preset's documented default

        lines = [
            {"type": "track", "userId": "ada", "event": "Order Completed",
             "messageId": "old-order", "timestamp": iso(timedelta(days=3, hours=1)),
             "properties": {"revenue": 10}},
            {"type": "track", "userId": "ada", "event": "Order Completed",
             "messageId": "new-order", "timestamp": iso(timedelta(hours=1)),
             "properties": {"revenue": 20}},
        ]
        body = "\n".join(json.dumps(line) for line in lines) + "\n"
        job = admin.post("/api/imports", params={"source": "history", "kind": "events",
                                                 "format": "jsonl", "file_name": "h.jsonl",
                                                 "wait": "true"},
                         content=body.encode(), headers={"Content-Type": "application/x-ndjson"})
        assert job.status_code == 202, job.text
        assert job.json()["summary"]["events_accepted"] == 2, job.json()

        mixpanel.wait_for(2)
        wait_until(lambda: stats(admin, "messaging")["cursor"] >= 2, what="messaging cursor")
        time.sleep(0.3)
        messaging = stats(admin, "messaging")

    assert sorted(r["properties"]["$insert_id"] for r in mixpanel.received) == [
        "new-order", "old-order"]
    assert [r["name"] for r in customerio.received] == ["Order Completed"]
    assert [r["data"]["revenue"] for r in customerio.received] == [20]
    assert messaging["skipped"] == {"older than trigger window": 1}
    assert messaging["actions"]["Track event"]["skipped"] == {"older than trigger window": 1}
