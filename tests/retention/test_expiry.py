"""Retention end to end in one process, over each storage backend, with a clock the test
moves: the job deletes exactly the expired events (by arrival) of each source, and
replays, previews and imports say what retention took."""

from __future__ import annotations

import asyncio
import json

import pytest

from millpond.backfill.log_sink import LogSink
from millpond.errors import BadRequest
from millpond.retention.expiry import RetentionJob
from millpond.retention.policy import BadRetention, cutoff_ms, normalize, retention_seconds
from millpond.sources.service import SourceService
from millpond.storage import StorageConfig, open_storage
from millpond.timeutil import format_ms
from tests.replays.test_replay import make_world
from tests.storage.helpers import ev

DAY = 86_400_000
NOW = 1_800_000_000_000  # the test's "now", Unix ms


@pytest.fixture(params=["sqlite", "memory"])
def storage(request, tmp_path):
    opened = open_storage(StorageConfig(backend=request.param,
                                        data_dir=str(tmp_path / "data"), synchronous="NORMAL"))
    yield opened
    opened.close()


def keys(storage) -> set[tuple[str, str]]:
    rows = asyncio.run(storage.log.read(0, 100_000))
    return {(json.loads(e.body)["source_id"], json.loads(e.body)["messageId"]) for e in rows}


def test_retention_settings():
    assert retention_seconds("forever") is None and normalize(" Forever ") == "forever"
    assert retention_seconds("400d") == 400 * 86400 and normalize(" 26w ") == "26w"
    assert cutoff_ms("10d", NOW / 1000) == NOW - 10 * DAY
    for bad in ("400", "30m", "", "soon", 30):
        with pytest.raises(BadRetention, match="retention must"):
            retention_seconds(bad)


def test_the_job_removes_exactly_the_expired_events_of_each_source(storage):
    sources = SourceService(storage.sources)
    short = sources.create("short", retention="30d")
    gone_src = sources.create("gone", retention="10d")
    keep = sources.create("keep")  # forever
    events = []
    for age in (40, 31, 29, 5):  # days before NOW, by arrival
        for s in (short, gone_src, keep):
            # event times are unrelated to arrival: a backfill of old data arrives today
            events.append(ev(f"{s.name}-{age}", s.id, ts=NOW - 1000 * DAY,
                             received=NOW - age * DAY))
    storage.log.submit(events).result(10)
    sources.delete(gone_src.id)  # a tombstone's retention still applies
    clock = [NOW]
    job = RetentionJob(storage.log, sources, clock=lambda: clock[0], step=1)
    before = keys(storage)
    assert asyncio.run(job.run_once()) == {short.id: 2, gone_src.id: 3}
    expired = {(short.id, "short-40"), (short.id, "short-31"), (gone_src.id, "gone-40"),
               (gone_src.id, "gone-31"), (gone_src.id, "gone-29")}
    assert keys(storage) == before - expired
    assert asyncio.run(job.run_once()) == {}
    clock[0] += 25 * DAY  # "short-29" is now 54 days old, "short-5" 30 days: kept
    assert asyncio.run(job.run_once()) == {short.id: 1, gone_src.id: 1}
    assert {k for k in keys(storage) if k[0] != keep.id} == {(short.id, "short-5")}
    assert {k for k in keys(storage) if k[0] == keep.id} == {
        (keep.id, f"keep-{age}") for age in (40, 31, 29, 5)}


def test_a_bad_retention_is_refused_and_changes_nothing(storage):
    sources = SourceService(storage.sources)
    with pytest.raises(BadRequest, match="at least 1h") as exc:
        sources.create("web", retention="5m")
    assert exc.value.field == "retention" and sources.list() == []
    web = sources.create("web")
    with pytest.raises(BadRequest, match="missing unit"):
        sources.update("web", retention="400", name="renamed")
    # Saved once, it made a cutoff no integer column holds: every pass failed.
    with pytest.raises(BadRequest, match="at most 36500d"):
        sources.update("web", retention="99999999999999999999d")
    assert sources.get(web.id) == web
    nudged = []
    sources.on_retention_change = lambda: nudged.append(1)
    assert sources.update("web", retention="400d").retention == "400d" and nudged == [1]


def test_an_import_says_which_rows_retention_deleted(storage):
    sources = SourceService(storage.sources)
    src = sources.create("crm", kind="import", retention="1d")
    def rows(first: int, last: int) -> list[dict]:  # fresh dicts: the sink owns what it gets
        return [{"type": "identify", "userId": f"u{i}", "messageId": f"m{i}",
                 "traits": {"n": i}} for i in range(first, last)]

    sink = LogSink(storage.log, src.id, reader_process=False,
                   clock=lambda: NOW / 1000 - 3 * 86400)
    first = sink.send(rows(0, 2))
    assert (first.accepted, first.rejected, first.duplicates) == (2, [], 0)
    asyncio.run(RetentionJob(storage.log, sources, clock=lambda: NOW).run_once())
    sink.clock = lambda: NOW / 1000
    again = sink.send([{"bad": True}, *rows(0, 4)])
    assert (again.accepted, again.duplicates) == (2, 0)
    assert [(i, r.split(":")[0]) for i, r in again.rejected] == [
        (0, "missing_field"), (1, "out_of_retention"), (2, "out_of_retention")]
    assert "'m0' was stored before and has been deleted" in again.rejected[1][1]


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
def test_replays_and_previews_say_what_retention_took(tmp_path, backend):
    async def main():
        async with make_world(tmp_path, backend) as (log, sources, pumps, replays, _t):
            web = sources.create("web", retention="30d")
            hour = 3_600_000
            base = NOW - 100 * DAY
            log.append_sync([ev(f"m{i}", web.id, ts=base + i * hour,
                                received=NOW - (40 if i < 4 else 1) * DAY) for i in range(6)])
            await pumps.create({"name": "hook", "type": "webhook",
                                "settings": {"url": "http://vendor.invalid/"},
                                "rate_limit": {"events_per_second": 1000}})
            job = RetentionJob(log.log, sources, clock=lambda: NOW)
            assert await job.run_once() == {web.id: 4}
            window = {"destination": "hook", "from": format_ms(base),
                      "to": format_ms(base + 4 * hour)}
            for dry_run in (True, False):
                with pytest.raises(BadRequest) as exc:
                    await replays.create({**window, "dry_run": dry_run})
                assert "up to 4 events of this window arrived before" in exc.value.message
                assert "deleted by retention" in exc.value.message
            started = await replays.create({"destination": "hook", "from": format_ms(base),
                                            "to": format_ms(base + 6 * hour)})
            assert started["estimate"]["events"] == 2
            [gone] = started["out_of_retention"]
            assert (gone["source"], gone["events"], gone["retention"]) == (web.id, 4, "30d")
            assert gone["before"] == format_ms(NOW - 30 * DAY)

    asyncio.run(main())
