"""The 64-bit key under which the log remembers each (source, messageId) pair.

Why a hash and not the text: a UNIQUE index on a text UUID halves SQLite's append
rate (DESIGN.md reference figures); a ``WITHOUT ROWID`` table of 64-bit integers keeps
most of it. Collisions are possible (about 3 in a million at 10 million events), so a hash
hit is always confirmed against the stored message before anything is dropped: a collision
stores the event and remembers its exact key in an overflow table instead.
"""

from __future__ import annotations

from hashlib import blake2b


def dedupe_hash(source_id: str, message_id: str) -> int:
    """Signed 64-bit key (SQLite INTEGER) for a source's messageId."""
    digest = blake2b(f"{source_id}\x00{message_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)
