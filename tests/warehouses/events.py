"""Stored events of every Segment type, shaped like the collector stores them."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from millpond.warehouses.batch import StoredEvent

TRACK_NAMES = ["Order Completed", "Product Viewed", "Signed Up", "checkoutStarted"]
KINDS = ["track"] * 6 + ["identify", "page", "screen", "group", "alias"]
BASE = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def make_event(i: int, kind: str, *, source_id: str = "src_web", seq: int | None = None,
               rnd: random.Random | None = None) -> StoredEvent:
    """Event number ``i`` of ``kind``; received ``i`` seconds after BASE (so hours change)."""
    rnd = rnd or random.Random(i)
    received = BASE + timedelta(seconds=i)
    user = f"user-{i % 97}"
    event: dict = {
        "type": kind,
        "messageId": f"msg-{source_id}-{i}",
        "anonymousId": f"anon-{i % 131}",
        "timestamp": iso(received - timedelta(milliseconds=rnd.randrange(5000))),
        "sentAt": iso(received - timedelta(milliseconds=10)),
        "originalTimestamp": iso(received - timedelta(milliseconds=20)),
        "receivedAt": iso(received),
        "context": {"library": {"name": "analytics.js", "version": "5.2.0"},
                    "ip": f"198.51.100.{i % 250}",
                    "page": {"path": f"/p/{i % 40}", "referrer": ""},
                    "campaign": {"source": "news", "tags": ["a", "b"]}},
        "source_id": source_id,
        "received_at": iso(received),
    }
    if kind != "alias" or i % 2:
        event["userId"] = user
    if kind == "track":
        event["event"] = TRACK_NAMES[i % len(TRACK_NAMES)]
        event["properties"] = {"revenue": round(rnd.uniform(1, 500), 2), "quantity": i % 7,
                               "currency": "EUR", "inStock": bool(i % 2),
                               "product": {"sku": f"SKU-{i % 300}", "name": "Widget"},
                               "tags": ["x", "y"], "deliveredAt": iso(received)}
    elif kind == "identify":
        event["traits"] = {"email": f"{user}@example.com", "plan": ["free", "pro"][i % 2],
                           "logins": i, "address": {"city": "Lyon", "zip": "69001"}}
    elif kind in ("page", "screen"):
        event["name"] = f"Screen {i % 5}" if kind == "screen" else f"Page {i % 9}"
        event["properties"] = {"title": f"Title {i % 9}", "url": f"https://ex.com/{i % 40}"}
    elif kind == "group":
        event["groupId"] = f"org-{i % 23}"
        event["traits"] = {"name": f"Org {i % 23}", "employees": i % 500, "industry": "retail"}
    elif kind == "alias":
        event["userId"] = user
        event["previousId"] = f"anon-{i % 131}"
    return StoredEvent(seq if seq is not None else i + 1, source_id, event)


def every_type(n: int, seed: int = 7, source_id: str = "src_web") -> list[StoredEvent]:
    """``n`` events cycling through every Segment type (tracks more often, as in real life)."""
    rnd = random.Random(seed)
    return [make_event(i, KINDS[i % len(KINDS)], source_id=source_id, rnd=rnd)
            for i in range(n)]


def expected_rows(events: list[StoredEvent]) -> Counter:
    """What a Segment warehouse holds for ``events``: rows per logical table."""
    from millpond.warehouses.naming import snakecase

    rows: Counter = Counter()
    users, accounts = set(), set()
    for stored in events:
        e = stored.event
        kind = e["type"]
        if kind == "track":
            rows["tracks"] += 1
            rows[snakecase(e["event"])] += 1
        else:
            table = {"identify": "identifies", "page": "pages", "screen": "screens",
                     "group": "groups", "alias": "aliases"}[kind]
            rows[table] += 1
        if kind == "identify" and e.get("userId"):
            users.add(e["userId"])
        if kind == "group":
            accounts.add(e["groupId"])
    rows["users"] = len(users)
    rows["accounts"] = len(accounts)
    return rows
