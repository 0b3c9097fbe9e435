"""A log of hundreds of thousands of events, written straight into a data dir before a
server opens it: through HTTP that would take a minute; here, a few seconds. For tests
of requests that read the whole log (previews, dry runs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from millpond.collector.validation import normalize
from millpond.sources.service import SourceService
from millpond.storage.sqlite import SQLiteStorage

#: The users the events belong to (user ``u{i % USERS}`` sent event ``i``).
USERS = 5_000
#: What a web SDK adds to each event, so that decoding one costs what it does in life.
CONTEXT = {"library": {"name": "analytics.js", "version": "5.2.0"},
           "page": {"path": "/products/42", "referrer": "https://example.com/",
                    "title": "A product page", "url": "https://shop.example/products/42"},
           "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156",
           "campaign": {"name": "winter", "source": "newsletter", "medium": "email"}}


def fill_log(data: Path, events: int, source: str = "fill") -> str:
    """Create the source ``source`` in the store at ``data`` and append ``events``
    ``Order Completed`` events of it (event ``i``: ``properties.total`` ``i % 50``);
    returns the source id."""
    return asyncio.run(_fill(data, events, source))


async def _fill(data: Path, events: int, source: str) -> str:
    storage = SQLiteStorage(data)
    try:
        source_id = SourceService(storage.sources).create(source).id
        for start in range(0, events, 5_000):
            await storage.log.append([normalize(
                {"type": "track", "event": "Order Completed", "userId": f"u{i % USERS}",
                 "messageId": f"m{i}",
                 "properties": {"total": i % 50, "sku": f"s{i}"}, "context": CONTEXT},
                source_id=source_id, received_ms=1_700_000_000_000 + i)
                for i in range(start, min(events, start + 5_000))])
        return source_id
    finally:
        storage.close()
