"""Where import batches go: the :class:`Sink` protocol and the HTTP sink.

A sink's ``send`` returns only once the batch is durable (the collector
answers 200 after its commit), and reports per-event rejections by index. The
runner checkpoints after each return, so "returned" must mean "will not be
lost". Re-sending a batch is always safe: messageIds are deterministic and the
server dedupes per source.

A sink may also be a :class:`PipelinedSink`: ``submit`` takes the next batch
while earlier ones are still being committed, and the runner checkpoints only
the prefix of batches whose futures succeeded, in order.
"""

from __future__ import annotations

import email.utils
import gzip
import random
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx
import msgspec

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass
class SinkResult:
    """The sink's answer for one batch.

    ``rejected`` holds ``(index in the batch, reason)``; by convention the reason
    starts with a short code (``"invalid_field: userId must be a string"``).
    ``duplicates`` counts events the sink already had (accepted, not stored again).
    """

    accepted: int
    rejected: list[tuple[int, str]] = field(default_factory=list)
    duplicates: int = 0


class Sink(Protocol):
    """Anything that can durably take a batch of Segment events."""

    def send(self, events: list[dict[str, Any]]) -> SinkResult: ...


@runtime_checkable
class PipelinedSink(Protocol):
    """A sink that takes the next batch before the previous one is durable.

    ``submit`` hands a batch over and returns at once; its future resolves to what
    ``send`` would have returned, once the batch is durable, or holds the exception
    that stopped it (an exception raised by ``submit`` itself fails the batch too).
    ``encoded[i]`` is ``events[i]`` as compact JSON (``msgspec.json.encode``), as the
    runner measured it for batch sizing, so the sink need not encode it again. The
    sink owns both lists from then on; the runner never touches them again.

    The runner keeps at most ``max_in_flight`` batches submitted and checkpoints a
    batch only once it and every batch before it have succeeded: a later batch that
    committed before an earlier one failed is simply sent again on resume (and
    counted as duplicates).
    """

    max_in_flight: int

    def send(self, events: list[dict[str, Any]]) -> SinkResult: ...

    def submit(self, events: list[dict[str, Any]],
               encoded: list[bytes]) -> Future[SinkResult]: ...


@runtime_checkable
class PreparingSink(PipelinedSink, Protocol):
    """A pipelined sink whose per-event work can run in the import's reader process.

    With ``reader_process`` true the runner reads, converts and batches the file in a
    child process (:mod:`millpond.backfill.reader_process`) that also applies
    ``preparer()`` to each batch: ``preparer()`` is a picklable callable
    ``(events, encoded) -> prepared`` whose result msgspec can encode. The runner then
    hands what arrives (as msgspec decodes it: lists, not tuples) to ``submit_prepared``,
    whose future means what ``submit``'s does. So the interpreter that owns the sink
    spends its time on what only it can do (for the log: committing). A preparer that is
    also a :class:`~millpond.backfill.batching.ChunkPreparer` is handed each batch's
    events a few hundred at a time as the batch fills, instead of all at once.
    """

    reader_process: bool

    def preparer(self) -> Callable[[list[dict[str, Any]], list[bytes]], Any]: ...

    def submit_prepared(self, prepared: Any) -> Future[SinkResult]: ...


class SinkError(Exception):
    """The sink cannot take the batch and retrying will not help (or retries ran out)."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpSink:
    """POSTs ``{"batch": [...]}`` to ``{url}/v1/import`` (gzip, Basic auth with the write key).

    Retries 429/503 after ``Retry-After`` (capped at ``max_retry_after``), and
    other 5xx and connection errors with jittered exponential backoff, at most
    ``max_attempts`` tries in all; then raises :class:`SinkError`. A 413 splits
    the batch in halves instead of failing. Other 4xx raise with the server's
    message. Gzip level 1: JSON compresses ~5x even at the fastest level, and
    level 6 would cost more CPU than the import itself.
    """

    def __init__(
        self,
        url: str,
        write_key: str,
        *,
        timeout: float = 60.0,
        max_attempts: int = 8,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.endpoint = url.rstrip("/") + "/v1/import"
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self._encode = msgspec.json.Encoder().encode
        self._http = httpx.Client(
            auth=(write_key, ""),
            timeout=timeout,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        self.retries = 0

    def send(self, events: list[dict[str, Any]]) -> SinkResult:
        body = gzip.compress(self._encode({"batch": events}), compresslevel=1)
        response = self._post(body)
        if response.status_code == 413:
            return self._split(events, response)
        if response.status_code >= 400:
            raise SinkError(f"{self.endpoint} refused the batch: {_error_message(response)}")
        return _result(events, response)

    def _split(self, events: list[dict[str, Any]], response: httpx.Response) -> SinkResult:
        if len(events) == 1:
            return SinkResult(0, [(0, f"too_large: {_error_message(response)}")])
        half = len(events) // 2
        first, second = self.send(events[:half]), self.send(events[half:])
        return SinkResult(
            first.accepted + second.accepted,
            first.rejected + [(i + half, reason) for i, reason in second.rejected],
            first.duplicates + second.duplicates,
        )

    def _post(self, body: bytes) -> httpx.Response:
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            delay: float | None
            try:
                response = self._http.post(self.endpoint, content=body)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                delay = None
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                last = f"HTTP {response.status_code}: {_error_message(response)}"
                delay = parse_retry_after(response.headers.get("Retry-After"))
                if delay is not None:
                    delay = min(delay, self.max_retry_after)
            if attempt == self.max_attempts:
                break
            if delay is None:
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                delay *= 0.5 + random.random() / 2
            self.retries += 1
            self._sleep(delay)
        raise SinkError(f"{self.endpoint} failed after {self.max_attempts} attempts ({last})")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HttpSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text.strip()[:200] or response.reason_phrase


def _result(events: list[dict[str, Any]], response: httpx.Response) -> SinkResult:
    try:
        data = response.json()
    except ValueError:
        raise SinkError(f"unreadable answer from the server: {response.text[:200]!r}") from None
    if not isinstance(data, dict) or data.get("success") is False:
        raise SinkError(f"the server did not accept the batch: {str(data)[:200]}")
    rejected = []
    for item in data.get("rejected") or []:
        where = f" (field {item['field']})" if item.get("field") else ""
        reason = f"{item.get('code', 'rejected')}: {item.get('reason', '')}{where}"
        rejected.append((int(item["index"]), reason))
    duplicates = int(data.get("duplicates") or 0)
    accepted = data.get("accepted")
    accepted = len(events) - len(rejected) if accepted is None else int(accepted)
    return SinkResult(accepted, rejected, duplicates)
