"""Where an event goes in the stream: its subject (partition and type) and its dedupe id.

Why partitions by user: per-user order is what destinations need (an identify before the
track that follows it), and a partition is the unit one worker owns at a time. The hash is
CRC-32 of ``userId``, else ``anonymousId`` (as Segment says an event with a user id is that
user's); an event with neither spreads by ``messageId``. CRC-32 because it is stable across
processes and versions (Python's ``hash`` is salted per process) and costs ~100 ns.

Why the type is in the subject: the profile follower reads only identify, group and alias
events, and a subject filter lets the server skip the rest.
"""

from __future__ import annotations

import hashlib
import re
import zlib

from millpond.storage.models import NewEvent

__all__ = ["msg_id", "partition", "subject_for", "type_token"]

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def partition(event: NewEvent, partitions: int) -> int:
    """The partition of ``event``'s user (``userId``, else ``anonymousId``)."""
    key = event.user_id or event.anonymous_id or event.message_id
    return zlib.crc32(key.encode()) % partitions


def type_token(kind: str) -> str:
    """``kind`` as a subject token: the event types are plain words; anything else (never
    sent by the collector) is spelled as a hex token so no subject can be malformed."""
    return kind if _TOKEN.match(kind) else "x" + kind.encode().hex()[:60]


def subject_for(prefix: str, event: NewEvent, partitions: int) -> str:
    return f"{prefix}.{partition(event, partitions)}.{type_token(event.type)}"


def msg_id(source_id: str, message_id: str) -> str:
    """The ``Nats-Msg-Id`` of (source, messageId): a digest, since a messageId is client text
    (any length, any characters) and a header value must be one short line."""
    digest = hashlib.blake2b(f"{source_id}\x00{message_id}".encode(), digest_size=16)
    return digest.hexdigest()
