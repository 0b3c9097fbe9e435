"""A deletion (``millpond.regulations``) over what an uploaded import keeps in the data dir:
the upload of a failed, interrupted or cancelled import (kept so it can resume) and the
error report of any import.

Why the person's rows are *blanked* (their record replaced by an empty line) rather than
cut out: rows are numbered by position (a spreadsheet's rows, a JSONL file's lines), and
the import's checkpoint says "every row up to N is settled". An empty line is still a row,
read as blank, so every other row keeps its number, the checkpoint stays true, and a
resume continues where it stopped; it only needs the new file's fingerprint, which this
module writes into it (the rows before the checkpoint were settled, and the person's among
them were removed from the log by the deletion's ``events`` step). Every other row keeps
its bytes, so its messageId (a function of its cells) is unchanged and nothing is imported
twice. Which rows are the person's: a CSV row whose user id column (``--id-column`` for
people, ``--user-column`` for events, as the import resolved it) is one of the ids; a JSON
line whose ``userId``, ``anonymousId`` or ``previousId`` is; and, in a file the import could
not read at all, any line that holds one of the ids.

The error report loses the lines of those rows and any line holding one of the ids; the
checkpoint's record of the report's size follows, so a resume truncates it at the right
byte. Each file is written whole under a temporary name and renamed over the old one: a
crash leaves the old file or the new one. Running the step again finds nothing more to
blank and brings a checkpoint a crash left behind up to date with the file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from millpond.backfill import checkpoint as ckpt
from millpond.backfill.csvfile import CsvInput
from millpond.backfill.model import ImportInputError, ImportOptions
from millpond.backfill.runner import fingerprint, preflight

__all__ = ["forget_import"]

_decode = msgspec.json.Decoder().decode
_ID_FIELDS = ("userId", "anonymousId", "previousId")


def forget_import(path: Path, options: ImportOptions, ids: Sequence[str]) -> int:
    """Blank the people's rows in the upload ``path`` (if it is still there) and drop them
    from the import's error report; how many rows and report lines went."""
    wanted = {one for one in ids if one}
    if not wanted:
        return 0
    report, checkpoint_path = ckpt.default_paths(path, options.errors_path, options.state_dir)
    blanked: set[int] = set()
    if path.is_file():
        blanked = _blank_upload(path, options, wanted)
    removed_lines, kept_bytes = _filter_report(report, blanked, wanted,
                                               _report_bytes(checkpoint_path, report))
    _update_checkpoint(checkpoint_path, path, options, report, kept_bytes)
    return len(blanked) + removed_lines


# -- the upload -------------------------------------------------------------------------
def _blank_upload(path: Path, options: ImportOptions, wanted: set[str]) -> set[int]:
    """Blank the people's rows of ``path``; their row numbers."""
    try:
        plan = preflight(path, options)
    except ImportInputError:
        plan = None
    if plan is not None and plan.format == "csv" and plan.plan is not None:
        try:
            ranges = _csv_ranges(path, plan.delimiter, plan.plan.key_idx, wanted)
            if ranges:
                _rewrite_text(path, ranges, wanted)
            return set(ranges)
        except UnicodeDecodeError:  # not UTF-8 past the header: the import failed on it
            plan = None
    rows = _line_rows(path, wanted, parse=plan is not None)
    if rows:
        _rewrite_lines(path, rows)
    return rows


def _csv_ranges(path: Path, delimiter: str | None, key_idx: int, wanted: set[str],
                ) -> dict[int, tuple[int, int | None, bool]]:
    """row -> (first line, last line or None for the end of the file, sure) of each
    record to blank: ``sure`` when its id cell names a person; a malformed record (no
    cells) only when its text holds an id, which the rewrite checks."""
    found: dict[int, tuple[int, int | None, bool]] = {}
    with CsvInput(path, delimiter) as source:
        last: tuple[int, int, bool] | None = None
        for row, start, cells in source.records():
            if last is not None:
                found[last[0]] = (last[1], start - 1, last[2])
                last = None
            if isinstance(cells, csv.Error):
                last = (row, start, False)
            elif len(cells) > key_idx and cells[key_idx].strip() in wanted:
                last = (row, start, True)
        if last is not None:
            found[last[0]] = (last[1], None, last[2])
    return found


def _rewrite_text(path: Path, ranges: dict[int, tuple[int, int | None, bool]],
                  wanted: set[str]) -> None:
    """Copy ``path`` line by line (the csv module's lines), each record of ``ranges`` as
    one empty line; a malformed one only when its text holds an id (else dropped from
    ``ranges``)."""
    spans = sorted((first, last, sure, row) for row, (first, last, sure) in ranges.items())
    with path.open("rb") as raw:
        bom = raw.read(3) == b"\xef\xbb\xbf"

    def lines(out: io.TextIOBase) -> None:
        if bom:
            out.write("\ufeff")
        with path.open(encoding="utf-8-sig", newline="") as text:
            numbered = enumerate(text, start=1)
            held: list[str] = []
            i = 0
            for number, line in numbered:
                while i < len(spans) and _ends_before(spans[i][1], number):
                    i += 1
                if i < len(spans) and spans[i][0] <= number and \
                        not _ends_before(spans[i][1], number):
                    held.append(line)
                    if spans[i][1] == number:
                        _settle(out, held, spans[i], ranges, wanted)
                        held = []
                    continue
                out.write(line)
            if held:
                _settle(out, held, spans[i], ranges, wanted)

    def write(handle: Any) -> None:
        text = io.TextIOWrapper(handle, "utf-8", newline="")
        lines(text)
        text.flush()
        text.detach()

    _replace_file(path, write)


def _ends_before(last: int | None, number: int) -> bool:
    """Whether a span ending at ``last`` (None: the end of the file) ends before line
    ``number``."""
    return last is not None and last < number


def _settle(out: io.TextIOBase, held: list[str], span: tuple, ranges: dict,
            wanted: set[str]) -> None:
    """Write a record's lines, or one empty line in its place (see ``_rewrite_text``)."""
    text = "".join(held)
    _first, _last, sure, row = span
    if sure or any(one in text for one in wanted):
        out.write(_ending(held[-1]) or "\n")
    else:
        out.write(text)
        ranges.pop(row, None)


def _ending(line: str) -> str:
    for end in ("\r\n", "\n", "\r"):
        if line.endswith(end):
            return end
    return ""


def _line_rows(path: Path, wanted: set[str], parse: bool) -> set[int]:
    """Line numbers (= rows) of the people's JSON lines; with ``parse`` false (a file the
    import could not read), of every line holding one of the ids."""
    needles = [one.encode() for one in wanted]
    rows: set[int] = set()
    with path.open("rb") as handle:
        for row, line in enumerate(handle, start=1):
            if not any(n in line for n in needles):
                continue
            if parse:
                try:
                    message = _decode(line.removeprefix(b"\xef\xbb\xbf"))
                except msgspec.DecodeError:
                    message = None  # refused by the import anyway: blank it
                if isinstance(message, dict) and not any(
                        str(message.get(key)) in wanted for key in _ID_FIELDS
                        if isinstance(message.get(key), str | int)):
                    continue
            rows.add(row)
    return rows


def _rewrite_lines(path: Path, rows: set[int]) -> None:
    def lines(out: io.BufferedIOBase) -> None:
        with path.open("rb") as handle:
            for row, line in enumerate(handle, start=1):
                out.write(b"\n" if row in rows else line)

    _replace_file(path, lines)


def _replace_file(path: Path, write: Callable) -> None:
    """Write a new ``path`` with ``write(binary file)``, durably, then rename it over the
    old one (a crash leaves one of the two whole)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


# -- the error report and the checkpoint ------------------------------------------------
def _report_bytes(checkpoint_path: Path, report: Path) -> int | None:
    """The report's size the checkpoint settled (a resume truncates to it), or None."""
    state = ckpt.load(checkpoint_path)
    if state is None or state.error_report != str(report):
        return None
    return state.error_report_bytes


def _records(text: str) -> Iterator[tuple[list[str], str]]:
    """The report's records with their text as the import's csv writer wrote them."""
    for cells in csv.reader(io.StringIO(text, newline="")):
        buffer = io.StringIO(newline="")
        csv.writer(buffer).writerow(cells)
        yield cells, buffer.getvalue()


def _filter_report(report: Path, blanked: set[int], wanted: set[str],
                   settled: int | None) -> tuple[int, int | None]:
    """Drop the report's lines of ``blanked`` rows and those holding an id; (lines
    dropped, the new settled size or None)."""
    try:
        data = report.read_bytes()
    except FileNotFoundError:
        return 0, settled
    valid = data if settled is None else data[:settled]  # a resume truncates the rest
    kept: list[str] = []
    removed = 0
    for i, (cells, text) in enumerate(_records(valid.decode("utf-8"))):
        row = int(cells[0]) if i and cells and cells[0].isdigit() else None
        if i and (row in blanked or any(one in text for one in wanted)):
            removed += 1
        else:
            kept.append(text)
    if not removed and len(valid) == len(data):
        return 0, settled
    out = "".join(kept).encode("utf-8")
    _replace_file(report, lambda f: f.write(out))
    return removed, None if settled is None else len(out)


def _update_checkpoint(checkpoint_path: Path, path: Path, options: ImportOptions,
                       report: Path, report_bytes: int | None) -> None:
    """Bring the checkpoint up to date with the rewritten upload and report."""
    state = ckpt.load(checkpoint_path)
    if state is None or state.completed:
        if state is not None and report_bytes is not None \
                and state.error_report_bytes != report_bytes:
            state.error_report_bytes = report_bytes
            ckpt.save(checkpoint_path, state)
        return
    changed = False
    if report_bytes is not None and state.error_report == str(report) \
            and state.error_report_bytes != report_bytes:
        state.error_report_bytes, changed = report_bytes, True
    if path.is_file() and state.file == str(path.resolve()):
        try:
            current = fingerprint(path, options)
        except ImportInputError:
            current = state.fingerprint
        if current != state.fingerprint:
            state.fingerprint, changed = current, True
    if changed:
        ckpt.save(checkpoint_path, state)
