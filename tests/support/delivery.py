"""Helpers for end-to-end tests: SDK-shaped traffic and uploads, destinations, their stats.

Shared by ``tests/pumps``, ``tests/api``, ``tests/cli`` and ``tests/backfill``; the server
and the vendor fakes come from the ``server`` and ``vendor`` fixtures (``tests/conftest.py``).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx

from tests.support.server import ServerProcess


def track(user: str, n: int, **extra: Any) -> dict:
    """A Segment track call; ``properties.n`` numbers a user's events for order checks."""
    return {"type": "track", "userId": user, "event": "Order Completed",
            "messageId": f"{user}-{n}-{uuid.uuid4().hex[:8]}",
            "properties": {"n": n, "revenue": 9.5, **extra.pop("properties", {})}, **extra}


def send(server: ServerProcess, write_key: str, **body: Any) -> httpx.Response:
    """One ``/v1/track`` call (``cli-user`` clicked, unless ``body`` says otherwise)."""
    return httpx.post(f"{server.url}/v1/track", auth=(write_key, ""),
                      json={"userId": "cli-user", "event": "Clicked", **body})


def upload(server: ServerProcess, body: str, **params: str) -> httpx.Response:
    """``POST /api/imports`` of a CSV ``body``; ``params`` are the query (the CLI's options).
    Waits for the import to end unless ``wait="false"``."""
    with server.admin as admin:
        return admin.post("/api/imports", params={"wait": "true", **params},
                          content=body.encode(), headers={"Content-Type": "text/csv"})


def send_batch(url: str, write_key: str, messages: list[dict]) -> None:
    for i in range(0, len(messages), 500):
        r = httpx.post(f"{url}/v1/batch", auth=(write_key, ""),
                       json={"batch": messages[i:i + 500]}, timeout=30)
        assert r.status_code == 200, r.text


def create_destination(admin: httpx.Client, **body: Any) -> dict:
    r = admin.post("/api/destinations", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def stats(admin: httpx.Client, ref: str) -> dict:
    r = admin.get(f"/api/destinations/{ref}/stats")
    r.raise_for_status()
    return r.json()["stats"]


class SteadySender(threading.Thread):
    """Background load: ``rate`` events/s spread over ``users``, numbered per user, until
    stopped. Bounded: it sends in small batches and never queues more than it sends."""

    def __init__(self, url: str, write_key: str, rate: float = 50, users: int = 10):
        super().__init__(daemon=True)
        self.url, self.write_key, self.rate, self.users = url, write_key, rate, users
        self.sent: list[dict] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        counters = [0] * self.users
        made = 0
        tick = 0.1
        per_tick = max(1, round(self.rate * tick))
        next_at = time.monotonic()
        with httpx.Client(timeout=10) as client:
            while not self._halt.is_set():
                batch = []
                for _ in range(per_tick):
                    u = made % self.users
                    made += 1
                    counters[u] += 1
                    batch.append(track(f"user{u}", counters[u]))
                try:
                    r = client.post(f"{self.url}/v1/batch", auth=(self.write_key, ""),
                                    json={"batch": batch})
                    if r.status_code == 200:
                        self.sent.extend(batch)
                    else:
                        self.errors.append(r.text)
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                next_at += tick
                time.sleep(max(0.0, next_at - time.monotonic()))

    def stop(self) -> list[dict]:
        self._halt.set()
        self.join(10)
        return self.sent


def assert_complete_and_ordered(received: list[dict], sent: list[dict]) -> None:
    """Every sent event arrived exactly once (the fake dedupes), and each user's events
    first arrived in the order they were sent."""
    got = [p["messageId"] for p in received]
    assert len(got) == len(set(got))
    assert set(got) == {m["messageId"] for m in sent}, (
        f"missing {len({m['messageId'] for m in sent} - set(got))} events")
    by_user: dict[str, list[int]] = {}
    for p in received:
        by_user.setdefault(p["userId"], []).append(p["properties"]["n"])
    for user, ns in by_user.items():
        assert ns == sorted(ns), f"{user}'s events arrived out of order"
