"""The parts behind the server's log, in-process: formats, the data-dir lock, binding,
and each state change logged once (delivery, dead letters, overload, a failed import)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import sqlite3
import time

import httpx
import pytest
from click.testing import CliRunner

from millpond import datalock, logs
from millpond.backfill import ImportOptions
from millpond.backfill.jobs import ImportJobs
from millpond.cli.main import cli
from millpond.delivery import sender as deliver_module
from millpond.delivery.dead_log import DeadLetterLog
from millpond.delivery.rate_limit import RateLimiter
from millpond.delivery.retry import RetryPolicy
from millpond.delivery.sender import Deliverer
from millpond.delivery.transport import Response
from millpond.errors import Overloaded
from millpond.server import StartupError, bind
from millpond.sources.service import SourceService
from millpond.storage import StorageConfig, open_storage
from millpond.storage.models import DeadLetter, NewEvent
from millpond.storage.sqlite.log import SQLiteEventLog
from tests.delivery.helpers import ScriptedTransport, ScriptType
from tests.delivery.test_sender import batch


@pytest.fixture
def restore_loggers():
    """``logs.setup`` changes process-wide loggers; put them back for the other tests."""
    names = (*logs.TREES, "uvicorn.error", "uvicorn.access")
    saved = {n: (logging.getLogger(n).level, logging.getLogger(n).propagate,
                 list(logging.getLogger(n).handlers)) for n in names}
    yield
    for name, (level, propagate, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers


# formats ------------------------------------------------------------------------------------
def test_json_format_is_one_object_per_line_with_extras(restore_loggers):
    out = io.StringIO()
    logs.setup("info", "json", stream=out)
    logging.getLogger("millpond.test").info("replay %s done", "rpl_1",
                                            extra={"replay_id": "rpl_1", "sent": 3})
    logging.getLogger("millpond.test").debug("hidden at info")
    logging.getLogger("httpx").warning("not ours: another tree")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert list(record)[:4] == ["ts", "level", "logger", "message"]
    assert record["level"] == "INFO" and record["logger"] == "millpond.test"
    assert record["message"] == "replay rpl_1 done"
    assert record["replay_id"] == "rpl_1" and record["sent"] == 3
    assert time.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")


def test_text_format_and_exceptions(restore_loggers):
    out = io.StringIO()
    logs.setup("debug", "text", stream=out)
    logging.getLogger("millpond.test").debug("a %s", "detail", extra={"ignored": 1})
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("millpond.test").exception("failed")
    text = out.getvalue()
    first = text.splitlines()[0]
    assert first.endswith(" DEBUG   millpond.test: a detail") and first[23] == "Z"
    assert "ignored" not in text and "ValueError: boom" in text


def test_setup_twice_keeps_one_handler_and_uvicorn_is_quiet_below_warning(restore_loggers):
    out = io.StringIO()
    logs.setup("info", "text", stream=io.StringIO())
    logs.setup("info", "text", stream=out)
    logging.getLogger("millpond").info("once")
    logging.getLogger("uvicorn.error").info("Waiting for application startup.")
    logging.getLogger("uvicorn.access").info("%s - \"%s %s HTTP/%s\" %d", "c", "GET", "/", "1.1",
                                             200)
    assert out.getvalue().count("once") == 1
    assert "Waiting" not in out.getvalue() and "GET" not in out.getvalue()
    with pytest.raises(ValueError):
        logs.setup("loud", "text")
    with pytest.raises(ValueError):
        logs.setup("info", "xml")


def test_access_records_carry_request_fields(restore_loggers):
    out = io.StringIO()
    logs.setup("warning", "json", access_log=True, stream=out)
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "POST",
                                             "/v1/batch", "1.1", 503)
    record = json.loads(out.getvalue())
    assert (record["client"], record["method"], record["path"], record["status"]) == (
        "127.0.0.1:5", "POST", "/v1/batch", 503)
    assert record["message"] == '127.0.0.1:5 - "POST /v1/batch HTTP/1.1" 503'


@pytest.mark.parametrize("args", [["--log-level", "loud"], ["--log-format", "xml"]])
def test_bad_flag_values_are_usage_errors(tmp_path, args):
    result = CliRunner().invoke(cli, ["serve", "--data", str(tmp_path / "d"), *args])
    assert result.exit_code == 2 and f"from flag {args[0]}; e.g. {args[0]} " in result.output


# lock and bind ------------------------------------------------------------------------------
def test_the_data_dir_lock_is_exclusive_and_names_its_holder(tmp_path):
    held = datalock.acquire(tmp_path / "data")
    with pytest.raises(datalock.DataDirBusy) as busy:
        datalock.acquire(tmp_path / "data")
    assert busy.value.pid == os.getpid()
    assert str(tmp_path / "data") in str(busy.value) and f"pid {os.getpid()}" in str(busy.value)
    held.release()
    assert not held.held
    datalock.acquire(tmp_path / "data").release()  # free again


def test_bind_refuses_a_busy_port_in_one_line():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(StartupError) as exc:
            bind("127.0.0.1", port)
    assert str(exc.value) == (f"port {port} on 127.0.0.1 is already in use (another "
                              "millpond?); choose --port")
    with pytest.raises(StartupError, match="cannot listen on no-such-host.invalid:1"):
        bind("no-such-host.invalid", 1)
    sock = bind("127.0.0.1", 0)
    sock.close()


# delivery -----------------------------------------------------------------------------------
def delivery_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "millpond.delivery"]


def test_retrying_and_recovered_are_logged_once_per_episode(caplog):
    caplog.set_level(logging.INFO, logger="millpond")
    transport = ScriptedTransport(Response(503, {}, b"down\nfor maintenance"),
                                  httpx.ConnectError("refused"), Response(502, {}, b"bad gw"),
                                  Response(200, {}, b"ok"), Response(503, {}, b"again"))

    async def no_sleep(_d: float) -> None:
        return None

    d = Deliverer(ScriptType(), transport, RateLimiter(1e5), RetryPolicy(rng=lambda: 0.5),
                  sleep=no_sleep, name="hook")
    asyncio.run(d.deliver(batch(1, 2)))
    asyncio.run(d.deliver(batch(3)))  # fails once more, then the script sends 200
    records = delivery_records(caplog)
    assert [(r.levelname, r.phase) for r in records] == [
        ("WARNING", "retrying"), ("INFO", "recovered"), ("WARNING", "retrying"),
        ("INFO", "recovered")]
    first = records[0]
    assert first.destination == "hook" and first.status == 503
    assert first.error == "HTTP 503: down for maintenance"  # one line
    assert first.getMessage().startswith("destination hook is retrying: HTTP 503: down for")
    assert records[1].failed_attempts == 3 and records[3].failed_attempts == 1


def test_a_long_outage_is_reminded_rarely_not_per_attempt(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="millpond")
    now = [1000.0]
    failures = [Response(503, {}, b"down")] * 30

    async def sleep(_d: float) -> None:
        now[0] += 60.0  # each attempt a minute apart

    d = Deliverer(ScriptType(), ScriptedTransport(*failures, Response(200, {}, b"ok")),
                  RateLimiter(1e5), RetryPolicy(rng=lambda: 0.5), sleep=sleep, name="hook",
                  clock=lambda: now[0])
    asyncio.run(d.deliver(batch(1)))
    phases = [r.phase for r in delivery_records(caplog)]
    # 30 failed attempts over 30 minutes: the start, a reminder every 5 minutes, the end
    assert phases == ["retrying"] + ["still_failing"] * 5 + ["recovered"]
    assert delivery_records(caplog)[-1].failed_attempts == 30
    assert deliver_module.STILL_FAILING_EVERY == 300.0


def test_dead_letters_are_summed_between_lines(caplog):
    caplog.set_level(logging.INFO, logger="millpond")
    now = [0.0]
    dl = DeadLetterLog("destination hook", {"destination": "hook"}, every=10.0,
                       clock=lambda: now[0])
    def letter(reason: str) -> DeadLetter:
        return DeadLetter("d", "r", 1, "m1", "a", reason)

    dl.add([letter("HTTP 400: bad")] * 3)  # first: logged at once
    now[0] = 1.0
    dl.add([letter("HTTP 400: bad")] * 2 + [letter("mapping failed")])  # held back
    dl.flush()
    now[0] = 11.0
    dl.flush()  # due: the held-back ones
    dl.flush(force=True)  # nothing left
    lines = [r for r in caplog.records if r.name == "millpond.delivery"]
    assert [r.dead_lettered for r in lines] == [3, 3]
    assert lines[1].reasons == {"HTTP 400: bad": 2, "mapping failed": 1}
    assert lines[0].getMessage() == ("destination hook: 3 events dead-lettered "
                                     "(3 × HTTP 400: bad)")


# overload -----------------------------------------------------------------------------------
def test_an_overload_episode_is_two_lines_not_one_per_request(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="millpond")
    log = SQLiteEventLog(tmp_path / "log.db", max_pending=10)
    blocker = sqlite3.connect(tmp_path / "log.db", isolation_level=None,
                              check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")  # the writer waits for SQLite's lock
    events = [NewEvent("s", "track", f"m{i}", None, None, None, 0, 0, b'{"a":1}')
              for i in range(8)]
    try:
        waiting = log.submit(events)
        for _ in range(3):
            with pytest.raises(Overloaded):
                log.submit(events[:5])
        overload = [r for r in caplog.records if r.name == "millpond.log"]
        assert len(overload) == 1 and overload[0].levelname == "WARNING"
        assert overload[0].getMessage().startswith(
            "log writer is behind (8 events queued): answering 503 with Retry-After")
        blocker.execute("ROLLBACK")
        waiting.result(timeout=30)
        deadline = time.monotonic() + 10
        while len([r for r in caplog.records if r.name == "millpond.log"]) < 2:
            assert time.monotonic() < deadline, "no end-of-episode line"
            time.sleep(0.01)
        end = [r for r in caplog.records if r.name == "millpond.log"][1]
        assert end.phase == "caught_up" and end.refused == 3
        assert "3 writes were refused" in end.getMessage()
    finally:
        blocker.close()
        log.close()
    assert len([r for r in caplog.records if r.name == "millpond.log"]) == 2


# imports ------------------------------------------------------------------------------------
def test_a_failed_import_says_why(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="millpond")
    storage = open_storage(StorageConfig(data_dir=str(tmp_path)))
    jobs = ImportJobs(storage.imports, storage.log, tmp_path)
    source = SourceService(storage.sources).create("crm", kind="import")
    path = jobs.upload_path("imp_1", "people.csv")
    path.write_text("id,email\nu1,a@x.io\n")
    try:
        jobs.start("imp_1", path, source, ImportOptions(kind="people", id_column="nope"))
        deadline = time.monotonic() + 20
        while jobs.get("imp_1")["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        storage.close()
    records = [r for r in caplog.records if r.name == "millpond.imports"]
    assert [(r.levelname, r.phase) for r in records] == [("INFO", "started"),
                                                         ("ERROR", "failed")]
    assert records[1].import_id == "imp_1" and records[1].source == "crm"
    assert records[1].error and records[1].error in records[1].getMessage()
