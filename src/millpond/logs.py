"""What the server says it is doing: the ``millpond`` logger tree (and uvicorn's) to stderr.

Why only these trees, not the root logger: libraries log at INFO too (httpx logs every
request a pump sends), and one line per delivery request would drown the lines that
matter. Why stderr: stdout keeps the few lines meant for a person or a script (the
generated admin token, "millpond serving on ..."), so ``2>server.log`` captures the log
alone.

Two formats, one record each line:

- ``text``: ``2025-01-31T12:00:00.123Z INFO    millpond.server: message``;
- ``json``: ``{"ts": ..., "level": ..., "logger": ..., "message": ..., <extras>}``, where
  the extras are what the call passed in ``extra=`` (destination, replay id, counts...),
  so a log shipper can filter and aggregate without parsing messages. Formatted by
  python-json-logger, which already handles exceptions, non-JSON values and the list of
  LogRecord attributes that are not extras.

Both stamp times in UTC with milliseconds (ISO 8601), so lines from several servers or
from the vendors' logs sort together.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

#: Loggers given the handler. ``uvicorn`` is the parent of ``uvicorn.error`` (its startup
#: failures) and ``uvicorn.access`` (the optional access log).
TREES = ("millpond", "uvicorn")
#: Record attributes that are not the caller's extras: the LogRecord's own, plus what
#: uvicorn adds for its coloured console output.
_NOT_EXTRAS = (*RESERVED_ATTRS, "color_message")


def utc_iso(created: float) -> str:
    """``2025-01-31T12:00:00.123Z`` for a record's ``created`` time."""
    whole = int(created)
    millis = int((created - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


class TextFormatter(logging.Formatter):
    """The human format: UTC timestamp, level, logger, message (extras stay in JSON)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return utc_iso(record.created)


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: ts, level, logger, message, then the record's extras."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s",
                         rename_fields={"asctime": "ts", "levelname": "level",
                                        "name": "logger"},
                         reserved_attrs=_NOT_EXTRAS)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return utc_iso(record.created)


class AccessFields(logging.Filter):
    """Adds uvicorn's access-log arguments as fields (client, method, path, status), so
    the JSON format carries them like any other record's extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            record.client, record.method, record.path, _, record.status = args
        return True


def formatter(fmt: str) -> logging.Formatter:
    """The formatter for ``--log-format`` ``fmt`` (``text`` or ``json``)."""
    if fmt == "json":
        return JsonLineFormatter()
    if fmt == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {fmt!r}; expected one of {', '.join(FORMATS)}")


def setup(level: str = "info", fmt: str = "text", *, access_log: bool = False,
          stream: IO[str] | None = None) -> logging.Handler:
    """Send the ``millpond`` and ``uvicorn`` trees to ``stream`` (stderr) in ``fmt``.

    ``level`` applies to millpond's own loggers. uvicorn's chatter ("Started server
    process", "Waiting for application startup"...) repeats what millpond says, so its
    loggers show warnings and errors only, unless ``level`` is debug. ``access_log``
    turns on one line per HTTP request (``uvicorn.access``, INFO). Calling it again
    replaces the handler it installed before (tests, or a second ``serve`` in-process).
    """
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.set_name("millpond")
    numeric = logging.getLevelName(level.upper())
    for name in TREES:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == "millpond"]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False
    logging.getLogger("millpond").setLevel(numeric)
    logging.getLogger("uvicorn").setLevel(numeric)
    logging.getLogger("uvicorn.error").setLevel(logging.DEBUG if level == "debug"
                                                else logging.WARNING)
    access = logging.getLogger("uvicorn.access")
    access.setLevel(logging.INFO if access_log else logging.CRITICAL + 1)
    if not any(isinstance(f, AccessFields) for f in access.filters):
        access.addFilter(AccessFields())
    return handler
