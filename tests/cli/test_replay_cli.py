"""``millpond replay`` against a real server."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import invoke
from tests.support.delivery import create_destination, send_batch, track

pytestmark = pytest.mark.slow


def test_preview_start_watch_status_list_and_errors(server, vendor):
    hook = vendor("webhook", batch_size=10)
    web = server.create_source("web")
    send_batch(server.url, web["write_key"], [track("u1", i) for i in range(30)])
    with server.admin as admin:
        create_destination(admin, name="hook", type="webhook",
                           settings=hook.destination_settings(),
                           rate_limit={"events_per_second": 1000})

    def run(*args, code=0, stdout=False):
        result = invoke(server, "replay", *args, code=code)
        return result.stdout if stdout else result.output

    out = run("preview", "hook")
    assert "send via Send event" in out and "30" in out and "estimated duration" in out
    started = json.loads(run("start", "hook", "--watch", "--json", stdout=True))
    assert started["state"] == "completed" and started["progress"]["sent"] == 30
    assert "30 sent" in run("status", started["id"])
    assert started["id"] in run("list", "--json")
    assert "completed" in run("list")
    assert "already completed" in run("cancel", started["id"], code=1)
    assert "empty window" in run("start", "hook", "--to", "2001-01-01T00:00:00Z", code=1)
    assert len(hook.received) == 30
