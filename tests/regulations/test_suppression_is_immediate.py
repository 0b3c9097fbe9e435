"""Suppression is immediate: events the person's SDK (the official Node SDK, unchanged)
sends one second after the request are acknowledged and appear nowhere: not in the log,
not at a destination, not among rejections; imports reject their rows with the reason
``suppressed``; the suppressed counters (the regulation's, ``/metrics``) say how many.
Lifting it (``unsuppress``) stores the person's events again."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx

from tests.support.delivery import create_destination, upload
from tests.support.wait import wait_until

NODE_DIR = Path(__file__).parents[1] / "sdk" / "node"


def _node_sends(server, write_key: str, user: str, anon: str, count: int,
                label: str) -> list[dict]:
    node = shutil.which("node")
    assert node, "node is not on PATH"
    proc = subprocess.run([node, "send_person.mjs", server.url, write_key, user, anon,
                           str(count), label], cwd=NODE_DIR, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == 1 + 2 * count and all(r["error"] is None for r in results)
    return results


def _metric(server, source_id: str) -> float:
    text = server.admin.get("/metrics").text
    pattern = 'millpond_events_suppressed_total\\{source="' + re.escape(source_id) + \
        '"\\} (\\S+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_a_suppressed_persons_events_are_acknowledged_and_kept_nowhere(server, vendor):
    tag = uuid.uuid4().hex[:8]
    eve, anon = f"eve-{tag}", f"eve-device-{tag}"
    hook = vendor("webhook")
    web = server.create_source("web")
    server.create_source("crm", kind="import")
    with server.admin as admin:
        create_destination(admin, name="hook", type="webhook",
                           settings=hook.destination_settings())
        before = _node_sends(server, web["write_key"], eve, anon, 2, "before")
        wait_until(lambda: len(hook.received) >= len(before), what="delivered before")
        wait_until(lambda: admin.get(f"/api/people/{anon}").status_code == 200,
                   what="her profile joins the device id")

        asked = admin.post("/api/regulations", json={"type": "suppress", "user_ids": [eve]})
        assert asked.status_code == 201, asked.text
        reg = asked.json()
        assert reg["state"] == "active" and sorted(reg["ids"]) == sorted([eve, anon])
        time.sleep(1)  # the scenario: the SDK sends one second after the request
        after = _node_sends(server, web["write_key"], eve, anon, 3, "after")

        # acknowledged (no SDK error above), and nowhere: the log holds only the earlier
        stored = {e["messageId"] for e in server.events()}
        assert {r["messageId"] for r in before} <= stored
        assert stored.isdisjoint(r["messageId"] for r in after)
        assert admin.get("/api/people/" + eve).json()["traits"]["plan"] == "before"
        seen = admin.get(f"/api/regulations/{reg['id']}").json()
        assert seen["suppressed"] == len(after) == 7
        assert _metric(server, web["id"]) == len(after)
        # even a message of hers the collector refuses is not kept as a rejection
        bad = httpx.post(f"{server.url}/v1/batch", auth=(web["write_key"], ""), json={
            "batch": [{"type": "track", "userId": eve},  # no event name
                      {"type": "track", "userId": f"zed-{tag}"}]})
        assert bad.status_code == 200
        assert [(r["index"], r["code"]) for r in bad.json()["rejected"]] == [
            (0, "suppressed"), (1, "missing_field")]
        rejections = admin.get("/api/rejections").json()["rejections"]
        assert len(rejections) == 1 and eve not in json.dumps(rejections)
        # an import's rows of hers are rejected with the reason, the others imported
        done = upload(server, f"id,plan\n{eve},imported\nother-{tag},imported\n",
                      source="crm", file_name="people.csv").json()
        assert done["summary"]["rejected_by_reason"] == {"suppressed": 1}, done
        assert done["summary"]["rows_rejected"] == 1
        # someone else's event after hers: once it arrived, the run has passed hers
        marker = httpx.post(f"{server.url}/v1/track", auth=(web["write_key"], ""),
                            json={"userId": f"zed-{tag}", "event": "Marker"})
        assert marker.status_code == 200
        wait_until(lambda: any(m.get("event") == "Marker" for m in hook.received),
                   what="the marker delivered")
        assert not any(m.get("userId") == eve and m.get("properties", {}).get("label")
                       == "after" for m in hook.received)
        assert admin.get("/api/regulations", params={"limit": 5}).json()[
            "regulations"][0]["suppressed"] == len(after) + 2

        lifted = admin.post("/api/regulations", json={"type": "unsuppress",
                                                      "anonymous_ids": [anon]})
        assert lifted.status_code == 201, lifted.text
        assert admin.get(f"/api/regulations/{reg['id']}").json()["state"] == "lifted"
        again = _node_sends(server, web["write_key"], eve, anon, 1, "again")
        stored = {e["messageId"] for e in server.events()}
        assert {r["messageId"] for r in again} <= stored
