"""The stream the log lives in: created with millpond's settings, or checked if it exists.

Why refuse a stream made by hand with other settings rather than adapt: each setting below
carries a promise of the log (acknowledged events survive, nothing unarchived is dropped by
a limit, reads see writes). A stream that breaks one would break it silently, so opening
the log fails instead, naming every setting at fault, what it must be and why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import nats.errors
import nats.js
import nats.js.errors
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)

from millpond.errors import MillpondError
from millpond.storage.contracts import StorageUnavailable
from millpond.storage.nats.client import add_stream
from millpond.storage.nats.settings import LogSettings

__all__ = ["StreamMisconfigured", "ensure_stream", "stream_config"]

log = logging.getLogger("millpond.storage.nats")

# While a cluster starts or a node restarts, JetStream may have no meta leader yet (its
# API answers 503 or not at all) or hold a peer for offline ("no suitable peers for
# placement": it is restarting, or it missed heartbeats on a starved machine). Both pass
# within seconds, so opening the stream is retried for PLACEMENT_WAIT seconds before the
# error stands; "stream name already in use" means another process created it meanwhile.
NO_SUITABLE_PEERS = 10005
NAME_IN_USE = 10058
PLACEMENT_WAIT = 20.0


class StreamMisconfigured(MillpondError):
    """The stream exists with settings the log cannot keep its promises on. ``field`` is
    the first setting at fault."""

    status = 500
    code = "stream_misconfigured"


def stream_config(s: LogSettings) -> StreamConfig:
    """The stream as millpond creates it."""
    return StreamConfig(
        name=s.stream, subjects=[f"{s.subject}.>"], retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE, num_replicas=s.replicas, max_msg_size=s.max_msg_size,
        discard=DiscardPolicy.NEW, max_age=0, max_msgs_per_subject=-1,
        duplicate_window=s.duplicate_window, allow_direct=True, allow_rollup_hdrs=False,
    )


def _value(v: Any) -> Any:
    return getattr(v, "value", v)


#: (setting, how to read it, why it must be what millpond sets). Checked in this order.
CHECKS: list[tuple[str, Callable[[StreamConfig], Any], str]] = [
    ("subjects", lambda c: sorted(c.subjects or []), "events are published there"),
    ("storage", lambda c: _value(c.storage),
     "acknowledged events must survive a restart of every node"),
    ("num_replicas", lambda c: c.num_replicas, "an event must survive the loss of a node"),
    ("retention", lambda c: _value(c.retention),
     "work-queue and interest retention delete events once read"),
    ("discard", lambda c: _value(c.discard),
     "a full stream must refuse appends, never drop unarchived events"),
    ("max_age", lambda c: c.max_age or 0, "an age limit drops unarchived events"),
    ("max_msgs_per_subject", lambda c: c.max_msgs_per_subject if (c.max_msgs_per_subject or 0)
     > 0 else -1, "a per-subject limit drops a partition's oldest events"),
    ("max_msg_size", lambda c: c.max_msg_size, "the log's largest event is set, not unbounded"),
    ("duplicate_window", lambda c: c.duplicate_window,
     "retries inside it are acknowledged, not stored twice"),
    ("allow_direct", lambda c: bool(c.allow_direct), "reads are direct gets"),
    ("allow_rollup_hdrs", lambda c: bool(c.allow_rollup_hdrs),
     "a rollup header would purge events"),
    ("allow_msg_ttl", lambda c: bool(c.allow_msg_ttl), "a per-message TTL drops events"),
    ("sealed", lambda c: bool(c.sealed), "the log is appended to"),
    ("no_ack", lambda c: bool(c.no_ack), "an append is acknowledged only once stored"),
]


def mismatches(found: StreamConfig, wanted: StreamConfig) -> list[tuple[str, Any, Any, str]]:
    """(setting, found, wanted, why) for every setting of ``found`` the log cannot use."""
    out: list[tuple[str, Any, Any, str]] = []
    for name, read, why in CHECKS:
        have, want = read(found), read(wanted)
        if have != want:
            out.append((name, have, want, why))
    if found.mirror is not None:
        out.append(("mirror", "set", None, "a mirror takes no appends"))
    return out


def check(found: StreamConfig, s: LogSettings) -> None:
    """Raise :class:`StreamMisconfigured` naming every setting of ``found`` at fault."""
    wrong = mismatches(found, stream_config(s))
    if not wrong:
        return
    listed = "; ".join(f"{name}={have!r} (needs {want!r}: {why})"
                       for name, have, want, why in wrong)
    raise StreamMisconfigured(
        f"stream {s.stream} exists with settings the log cannot use: {listed}. Fix them "
        f"(`nats stream edit {s.stream}`) or remove the stream to let millpond create it",
        field=wrong[0][0])


async def ensure_stream(js: nats.js.JetStreamContext, s: LogSettings,
                        placement_wait: float = PLACEMENT_WAIT) -> int:
    """Create the stream, or check the one there; returns its last sequence."""
    deadline = time.monotonic() + placement_wait
    while True:
        try:
            info = await _info_or_create(js, s)
        except (nats.js.errors.ServiceUnavailableError, nats.errors.TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("stream %s: JetStream is not available yet (%s); retrying",
                        s.stream, str(exc) or type(exc).__name__)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code not in (NAME_IN_USE, NO_SUITABLE_PEERS):
                raise _refused(s, exc) from exc
            if time.monotonic() > deadline:
                raise StorageUnavailable(
                    f"NATS cannot place stream {s.stream} on {s.replicas} servers after "
                    f"{placement_wait:.0f} s ({exc.description}): are that many JetStream "
                    f"servers up?") from exc
            if exc.err_code == NAME_IN_USE:
                continue  # created by another process meanwhile: check its settings
            log.warning("stream %s: cannot place %d replicas yet (%s); retrying",
                        s.stream, s.replicas, exc.description)
        except nats.js.errors.APIError as exc:  # e.g. replicas on a server not clustered
            raise _refused(s, exc) from exc
        else:
            check(info.config, s)
            return info.state.last_seq
        await asyncio.sleep(0.5)


async def _info_or_create(js: nats.js.JetStreamContext, s: LogSettings) -> StreamInfo:
    try:
        return await js.stream_info(s.stream)
    except nats.js.errors.NotFoundError:
        return await add_stream(js, stream_config(s))


def _refused(s: LogSettings, exc: nats.js.errors.APIError) -> StorageUnavailable:
    return StorageUnavailable(f"NATS refused stream {s.stream} ({s.replicas} replicas): "
                              f"{exc.description or exc}")
