"""Turning records into Segment events: people CSV, events CSV, events JSONL.

Each converter is a generator yielding ``(row, event)`` or ``(row, RowError)``
for data rows after ``skip_through`` (the resume point). Column lookups are
resolved once from the header, so the per-row loop only indexes lists, strips
strings and looks typed-looking cells up in their column's memo (inference runs
on a miss only); a timestamp cell of plain digits skips the general parser.
That loop is most of what the producer side of ``bench/import.py`` measures.

Events share the ``context.library`` dict between rows (one object, not ten
million); sinks must treat events as read-only below the top level.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from millpond.backfill.csvfile import Record
from millpond.backfill.ids import LineId, RowId
from millpond.backfill.model import (
    EVENTS_NAME_CANDIDATES,
    EVENTS_TIME_CANDIDATES,
    EVENTS_USER_CANDIDATES,
    LIBRARY_NAME,
    LIBRARY_VERSION,
    PEOPLE_ID_CANDIDATES,
    ImportInputError,
    ImportOptions,
    RowError,
)
from millpond.backfill.values import (
    MAYBE_TYPED,
    MEMO_SIZE,
    iso_from_epoch,
    iso_from_whole_seconds,
    parse_timestamp,
    remember,
    trait_timestamp,
    unix_seconds_cell,
)

Converted = tuple[int, "dict[str, Any] | RowError"]
SEGMENT_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
_SKIP_TICK = 65_536
_MISSING = object()


@dataclass
class StreamStats:
    """Counters the converters keep for rows they do not yield."""

    blank: int = 0
    skipped: int = 0
    on_skip: Callable[[], None] | None = field(default=None, repr=False)


def resolve_column(
    header: Sequence[str], requested: str | None, candidates: Sequence[str], what: str, flag: str
) -> int:
    """Index of the column named ``requested`` (or the first default candidate).

    Exact match first, then case-insensitive. The error lists the columns found
    so the user can fix the option without opening the file.
    """
    lowered = {name.lower(): i for i, name in reversed(list(enumerate(header))) if name}
    wanted = [requested] if requested is not None else list(candidates)
    for name in wanted:
        if name in header:
            return header.index(name)
        if name.lower() in lowered:
            return lowered[name.lower()]
    found = ", ".join(repr(name) for name in header if name) or "(none)"
    if requested is not None:
        raise ImportInputError(f"unknown {what} column {requested!r}; columns found: {found}")
    names = " / ".join(candidates)
    raise ImportInputError(
        f"no {what} column (looked for {names}); columns found: {found}; use {flag}"
    )


def check_header(header: Sequence[str]) -> list[str]:
    """Refuse duplicate column names; return warnings (unnamed columns are ignored)."""
    seen: set[str] = set()
    warnings = []
    for position, name in enumerate(header, start=1):
        if not name:
            warnings.append(f"column {position} has no name in the header and is ignored")
        elif name in seen:
            raise ImportInputError(f"duplicate column name {name!r} in the header")
        seen.add(name)
    return warnings


def _all_blank(cells: list[str]) -> bool:
    return not any(cell.strip() for cell in cells)


def _record_problem(row: int, line: int, cells: list[str] | csv.Error, ncols: int) -> Any:
    """Classify a record that is not a well-formed data row: None (blank) or a RowError."""
    if isinstance(cells, csv.Error):
        return RowError(row, line, "", "malformed_csv", f"malformed CSV record: {cells}")
    if _all_blank(cells):
        return None
    return RowError(
        row, line, "", "column_count", f"expected {ncols} columns, found {len(cells)}"
    )


def _timestamp_cell(raw: str, row: int, line: int, column: str) -> tuple[float, str] | RowError:
    raw = raw.strip()
    if not raw:
        return RowError(row, line, column, "missing_timestamp", "timestamp is empty")
    try:
        seconds = parse_timestamp(raw)
    except ValueError as exc:
        return RowError(row, line, column, "bad_timestamp", str(exc))
    return seconds, iso_from_epoch(seconds)


@dataclass
class ColumnPlan:
    """Which column plays which part, resolved once from the header."""

    header: list[str]
    key_idx: int
    name_idx: int | None
    ts_idx: int | None
    payload: list[tuple[int, str]]

    def shaping(self) -> dict[str, Any]:
        """The column choices that change the events (part of the import fingerprint)."""
        def name(idx: int | None) -> str | None:
            return None if idx is None else self.header[idx]

        return {"key": name(self.key_idx), "event": name(self.name_idx),
                "timestamp": name(self.ts_idx), "payload": [n for _, n in self.payload]}


def plan_columns(header: list[str], options: ImportOptions) -> ColumnPlan:
    """Resolve the id / event / timestamp columns; everything else is traits or properties.

    Raises :class:`ImportInputError` (listing the columns found) when a column
    is missing, so nothing is sent for a file that cannot be imported.
    """
    if options.kind == "people":
        key_idx = resolve_column(
            header, options.id_column, PEOPLE_ID_CANDIDATES, "id", "--id-column"
        )
        name_idx = None
        ts_idx = (
            None
            if options.timestamp_column is None
            else resolve_column(header, options.timestamp_column, (), "timestamp", "")
        )
        # The id is the userId, not a trait -- except an email, which is both.
        excluded = set() if header[key_idx].lower() == "email" else {key_idx}
    else:
        key_idx = resolve_column(
            header, options.user_column, EVENTS_USER_CANDIDATES, "user id", "--user-column"
        )
        name_idx = resolve_column(
            header, options.event_column, EVENTS_NAME_CANDIDATES, "event name", "--event-column"
        )
        ts_idx = resolve_column(
            header, options.timestamp_column, EVENTS_TIME_CANDIDATES, "timestamp",
            "--timestamp-column",
        )
        excluded = {key_idx, name_idx, ts_idx}
    payload = [(i, name) for i, name in enumerate(header) if name and i not in excluded]
    return ColumnPlan(list(header), key_idx, name_idx, ts_idx, payload)


def csv_events(
    records: Iterator[Record],
    plan: ColumnPlan,
    options: ImportOptions,
    message_id: RowId,
    file_name: str,
    skip_through: int,
    stats: StreamStats,
) -> Iterator[Converted]:
    """People CSV → identify events, or events CSV → track events (``options.kind``).

    Checks run in a fixed order (id, event name, timestamp) and the payload is built
    only for a row that passed them; a row's fate is the first failing check.
    """
    people = options.kind == "people"
    header = plan.header
    key_idx, name_idx, ts_idx, columns = plan.key_idx, plan.name_idx, plan.ts_idx, plan.payload
    key_col = header[key_idx]
    ts_col = header[ts_idx] if ts_idx is not None else ""
    name_col = header[name_idx] if name_idx is not None else ""
    ncols = len(header)
    text_mode = options.types == "text"
    # One memo per column: a column of plans repeats, a column of emails never does,
    # and one shared memo would let the second evict the first.
    typed = [(i, name, {}) for i, name in columns]
    # A people file's timestamp column is also a trait. Its cells are all different, so
    # its memo never hits; the row loop stores the value it already has instead.
    ts_memo: dict[str, Any] | None = next(
        (memo for i, _, memo in typed if i == ts_idx and not text_mode), None)
    clear = options.empty == "clear"
    library = {"name": LIBRARY_NAME, "version": LIBRARY_VERSION}
    missing_key = "missing_id" if people else "missing_user_id"
    payload_key = "traits" if people else "properties"
    on_skip = stats.on_skip
    maybe_typed = MAYBE_TYPED
    missing = _MISSING

    for row, line, cells in records:
        if row <= skip_through:
            if cells:
                stats.skipped += 1
                if on_skip is not None and stats.skipped % _SKIP_TICK == 0:
                    on_skip()
            continue
        if type(cells) is not list or len(cells) != ncols:
            problem = _record_problem(row, line, cells, ncols)
            if problem is None:
                stats.blank += 1
            else:
                yield row, problem
            continue
        key = cells[key_idx].strip()
        if not key:
            if _all_blank(cells):
                stats.blank += 1
            else:
                yield row, RowError(row, line, key_col, missing_key, f"{key_col} is empty")
            continue
        if people:
            event: dict[str, Any] = {"type": "identify", "messageId": message_id(cells),
                                     "userId": key}
        else:
            name = cells[name_idx].strip()  # type: ignore[index]
            if not name:
                yield row, RowError(row, line, name_col, "missing_event", f"{name_col} is empty")
                continue
            event = {"type": "track", "event": name, "messageId": message_id(cells),
                     "userId": key}
        if ts_idx is not None:
            raw = cells[ts_idx]
            whole = unix_seconds_cell(raw)
            if whole is not None:
                event["timestamp"] = iso_from_whole_seconds(whole)
                trait_time: int | float = whole
                if ts_memo is not None:
                    # infer_value of a digit string: the int, unless a leading zero keeps it text
                    if len(ts_memo) >= MEMO_SIZE:
                        ts_memo.clear()
                    ts_memo[raw] = whole if raw[0] != "0" or len(raw) == 1 else raw
            else:
                parsed = _timestamp_cell(raw, row, line, ts_col)
                if type(parsed) is RowError:
                    yield row, parsed
                    continue
                seconds, event["timestamp"] = parsed  # type: ignore[misc]
                trait_time = trait_timestamp(seconds)
        payload: dict[str, Any] = {}
        if text_mode:
            for i, name in columns:
                value = cells[i]
                if value and not value.isspace():
                    payload[name] = value
                elif clear:
                    payload[name] = None
        else:
            for i, name, memo in typed:
                value = cells[i].strip()
                if value:
                    # Only cells starting like a number, a date or true/false can be
                    # typed; the rest (names, emails, ids) skip the memo and inference.
                    if value[0] in maybe_typed:
                        typed_value = memo.get(value, missing)
                        payload[name] = (remember(memo, value) if typed_value is missing
                                         else typed_value)
                    else:
                        payload[name] = value
                elif clear:
                    payload[name] = None
        if ts_idx is not None and people:
            payload["_timestamp"] = trait_time
        event[payload_key] = payload
        event["context"] = {"library": library, "import": {"file": file_name, "row": row}}
        yield row, event


def _check_message(msg: dict[str, Any]) -> tuple[str, str, str] | None:
    """Validate one Segment message in place (normalising ids and timestamps).

    Returns ``(code, field, reason)`` when the message cannot be imported.
    """
    kind = msg.setdefault("type", "track")
    if kind not in SEGMENT_TYPES:
        return "invalid_type", "type", f"type must be one of {', '.join(sorted(SEGMENT_TYPES))}"
    for key in ("userId", "anonymousId", "groupId", "previousId"):
        value = msg.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            msg[key] = str(value)
        elif value is not None and not isinstance(value, str):
            return "invalid_field", key, f"{key} must be a string"
    if not (msg.get("userId") or msg.get("anonymousId")):
        return "missing_id", "userId", "userId or anonymousId is required"
    if kind == "track" and not (isinstance(msg.get("event"), str) and msg["event"].strip()):
        return "missing_event", "event", "track messages need a non-empty event name"
    if kind == "group" and not msg.get("groupId"):
        return "missing_field", "groupId", "group messages need a groupId"
    if kind == "alias" and not (msg.get("userId") and msg.get("previousId")):
        return "missing_field", "previousId", "alias messages need userId and previousId"
    for key in ("properties", "traits", "context", "integrations"):
        if key in msg and not isinstance(msg[key], dict):
            return "invalid_field", key, f"{key} must be an object"
    if "timestamp" in msg:
        stamp = msg["timestamp"]
        try:
            if not isinstance(stamp, str | int | float):
                raise ValueError("timestamp must be an ISO 8601 string or Unix seconds")
            seconds = parse_timestamp(stamp)
        except ValueError as exc:
            return "bad_timestamp", "timestamp", str(exc)
        if not isinstance(stamp, str) or _is_number(stamp):
            msg["timestamp"] = iso_from_epoch(seconds)  # Unix seconds → ISO, as the spec wants
    mid = msg.get("messageId")
    if mid is not None and not (isinstance(mid, str) and mid):
        return "invalid_field", "messageId", "messageId must be a non-empty string"
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def jsonl_events(
    handle: BinaryIO,
    message_id: LineId,
    file_name: str,
    skip_through: int,
    stats: StreamStats,
) -> Iterator[Converted]:
    """One Segment message per line → validated events; line number = row number.

    ``type`` defaults to ``track``; a ``messageId`` in the line is kept, else one made
    from the line's content (:func:`~millpond.backfill.ids.jsonl_line_ids`).
    ``context.import`` records the provenance and ``context.library`` is filled in only
    when the message has none.
    """
    decode = msgspec.json.Decoder().decode
    library = {"name": LIBRARY_NAME, "version": LIBRARY_VERSION}
    row = 0
    for raw in handle:
        row += 1
        if row <= skip_through:
            if not raw.isspace():
                stats.skipped += 1
                if stats.on_skip is not None and stats.skipped % _SKIP_TICK == 0:
                    stats.on_skip()
            continue
        if raw.isspace() or not raw:
            stats.blank += 1
            continue
        if row == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            msg = decode(raw)
        except msgspec.DecodeError as exc:
            yield row, RowError(row, row, "", "invalid_json", f"invalid JSON: {exc}")
            continue
        if not isinstance(msg, dict):
            yield row, RowError(row, row, "", "invalid_message", "line is not a JSON object")
            continue
        problem = _check_message(msg)
        if problem is not None:
            code, column, reason = problem
            yield row, RowError(row, row, column, code, reason)
            continue
        if "messageId" not in msg:
            msg["messageId"] = message_id(raw)
        context = msg.get("context")
        context = dict(context) if context else {}
        context.setdefault("library", library)
        context["import"] = {"file": file_name, "row": row}
        msg["context"] = context
        yield row, msg


def open_jsonl(path: Path) -> BinaryIO:
    """Open a JSONL file for line iteration with a large buffer."""
    return path.open("rb", buffering=1024 * 1024)
