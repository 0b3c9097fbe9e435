"""What the log on JetStream needs to know: where the servers are and the stream's shape."""

from __future__ import annotations

import msgspec

__all__ = ["LogSettings"]


class LogSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The JetStream log's settings.

    ``servers``: client URLs of the cluster (any of them: the client learns the rest).
    ``stream``: the stream's name; its subjects are ``<subject>.<partition>.<type>``.
    ``replicas``: copies of every event (3: survives the loss of one node with no pause in
    reads and a short one in writes). ``max_msg_size``: the largest event body the stream
    takes (the collector refuses larger ones first). ``duplicate_window``: seconds the
    stream remembers a ``Nats-Msg-Id`` (retries inside it are acknowledged, not stored).
    ``partitions``: how many subjects the users are hashed into (the unit a worker owns;
    fixed once the stream has events). ``publish_deadline``: how long an append retries
    through a leader change before it answers StorageUnavailable.
    """

    servers: tuple[str, ...]
    stream: str = "MILLPOND_EVENTS"
    subject: str = "millpond.events"
    replicas: int = 3
    max_msg_size: int = 1 << 20
    duplicate_window: float = 120.0
    partitions: int = 16
    publish_deadline: float = 10.0
    #: how long one round of acks is awaited before the unacknowledged events are re-sent
    ack_wait: float = 2.0
    connect_timeout: float = 5.0
    #: events queued or in flight before ``submit`` answers Overloaded
    max_pending: int = 200_000

    @property
    def notify_subject(self) -> str:
        """Where each append's last seq is announced (a core subject: it wakes waiters in
        every process)."""
        return f"_millpond.notify.{self.stream}"
