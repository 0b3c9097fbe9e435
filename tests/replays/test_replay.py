"""Replays in one process over each storage backend, the webhook type, a scripted vendor."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
import time

import pytest

from millpond.collector.validation import normalize
from millpond.connections.service import PumpManager
from millpond.delivery.retry import RetryPolicy
from millpond.delivery.slices import WindowSlice
from millpond.destinations.base import DestinationType
from millpond.errors import BadRequest, Conflict
from millpond.replays.plan import plan, plan_window
from millpond.replays.service import ReplayManager
from millpond.sources.service import SourceService
from millpond.storage import StorageConfig, open_storage
from millpond.storage.models import RunKind, WindowCursor
from millpond.timeutil import format_ms
from tests.delivery.helpers import ScriptedTransport

HOUR = 3_600_000
BASE = 1_700_000_000_000  # 2023-11-14


def ev(source_id: str, i: int, ts_ms: int, type: str = "track", **extra):
    msg = {"type": type, "messageId": f"m{i}", "userId": f"u{i % 3}",
           "timestamp": format_ms(ts_ms), **extra}
    if type == "track":
        msg.setdefault("event", "Clicked")
        msg.setdefault("properties", {"n": i})
    if type == "group":
        msg["groupId"] = "acme"
    return normalize(msg, source_id=source_id, received_ms=int(time.time() * 1000))


@pytest.fixture(params=["sqlite", "memory", "archived"])
def backend(request) -> str:
    """``archived``: SQLite with an archive tier of 6-event ranges, sealed after every
    append, so the older part of every test's log is read from Parquet files."""
    return request.param


def in_loop(fn):
    """Run an ``async def test_...(world)`` in a fresh event loop with a fresh world, once
    per storage backend."""

    @functools.wraps(fn)
    def run(tmp_path, backend):
        async def main():
            async with make_world(tmp_path, backend) as w:
                await fn(w)

        asyncio.run(main())

    run.__signature__ = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
         for name in ("tmp_path", "backend")])
    return run


class Log:
    """The log as these tests fill it (blocking appends)."""

    def __init__(self, log):
        self.log = log

    def append_sync(self, events):
        result = self.log.submit(events).result(10)
        archive = getattr(self.log, "archive", None)
        while archive is not None and archive.seal_once() is not None:
            pass
        return result


def open_test_storage(tmp_path, backend: str = "sqlite"):
    archived = backend == "archived"
    return open_storage(StorageConfig(backend="sqlite" if archived else backend,
                                      data_dir=str(tmp_path / "data"), synchronous="NORMAL",
                                      archive_range=6 if archived else 0))


@contextlib.asynccontextmanager
async def make_world(tmp_path, backend):
    storage = open_test_storage(tmp_path, backend)
    sources = SourceService(storage.sources)
    transport = ScriptedTransport()
    pumps = PumpManager(storage.log, storage.destinations, storage.runs, transport=transport,
                        policy=RetryPolicy(base=0.001, cap=0.01))
    replays = ReplayManager(pumps, sources, storage.runs, storage.index)
    await pumps.start()
    yield Log(storage.log), sources, pumps, replays, transport
    await pumps.stop()
    replays.close()
    storage.close()


async def wait_state(replays, rid, state="completed", timeout=60.0):
    deadline = time.monotonic() + timeout
    while (got := replays.get(rid))["state"] != state:
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.02)
    return got


def sent_ids(transport) -> list[str]:
    return [p["messageId"] for req in transport.sent
            for p in (req if isinstance(req, list) else [req])]


ONLY_TRACK = [{"name": "tracks", "trigger": 'type = "track"',
               "mapping": {"messageId": {"@path": "$.messageId"},
                           "userId": {"@path": "$.userId"}, "n": {"@path": "$.properties.n"}}}]


@in_loop
async def test_replay_plus_live_is_exactly_once_in_event_time_order(world):
    log, sources, pumps, replays, transport = world
    web = sources.create("web")
    old = [ev(web.id, i, BASE + (20 - i) * HOUR) for i in range(20)]  # timestamps descending
    log.append_sync(old)
    await pumps.create({"name": "hook", "type": "webhook",
                        "settings": {"url": "http://vendor.invalid/", "batch_size": 7},
                        "rate_limit": {"events_per_second": 50_000}})
    live = [ev(web.id, 100 + i, BASE) for i in range(5)]
    log.append_sync(live)
    answer = await replays.create({"destination": "hook"})
    assert answer["state"] == "running" and answer["estimate"]["events"] == 20
    done = await wait_state(replays, answer["id"])
    for _ in range(100):  # live batches linger up to 1 s
        if len(sent_ids(transport)) >= 25:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)
    ids = sent_ids(transport)
    assert sorted(ids) == sorted(f"m{i}" for i in [*range(20), *range(100, 105)])
    assert len(ids) == len(set(ids))
    replayed = [i for i in ids if int(i[1:]) < 100]
    assert replayed == [f"m{i}" for i in reversed(range(20))]  # event-time order
    assert done["progress"] == {"scanned": 20, "sent": 20, "skipped": {}, "dead_lettered": 0,
                                "retried": 0}
    assert done["report"]["sent"] == 20 and "20 sent" in done["report"]["summary"]
    assert done["cursor"]["seq"] == 1  # the oldest-arrived event is the newest in time


@in_loop
async def test_default_window_includes_future_dated_events_that_arrived_before_connection(
        world):
    log, sources, pumps, replays, transport = world
    web = sources.create("web")
    future = int(time.time() * 1000) + 24 * HOUR  # a device clock a day ahead
    log.append_sync([ev(web.id, 1, BASE), ev(web.id, 2, future)])
    await pumps.create({"name": "hook", "type": "webhook",
                        "settings": {"url": "http://vendor.invalid/"},
                        "rate_limit": {"events_per_second": 50_000}})
    answer = await replays.create({"destination": "hook"})
    await wait_state(replays, answer["id"])
    assert sorted(sent_ids(transport)) == ["m1", "m2"]


@in_loop
async def test_preview_counts_group_events_no_action_handles(world):
    log, sources, pumps, replays, transport = world
    web, track = sources.create("web"), sources.create("crm", kind="track")
    log.append_sync([ev(web.id, i, BASE + i) for i in range(10)]
                    + [ev(web.id, 100 + i, BASE + i, type="group") for i in range(4)]
                    + [ev(web.id, 200, BASE, type="identify", traits={"a": 1})]
                    + [ev(track.id, 300 + i, BASE) for i in range(3)])
    await pumps.create({"name": "hook", "type": "webhook", "actions": ONLY_TRACK,
                        "settings": {"url": "http://vendor.invalid/"},
                        "rate_limit": {"events_per_second": 1000}})
    got = await replays.create({"destination": "hook", "sources": ["web", "crm"],
                                "dry_run": True})
    pv = got["preview"]
    assert got["id"] is None and transport.sent == []
    assert pv["events"] == 15 and pv["by_type"] == {"track": 10, "group": 4, "identify": 1}
    assert pv["by_event"] == {"Clicked": 10}
    assert pv["actions"] == [{"action": "tracks", "would_send": 10}]
    assert {u["type"]: u["message"] for u in pv["unhandled"]} == {
        "group": "4 group events: no action of this destination handles group",
        "identify": "1 identify events: no action of this destination handles identify"}
    assert pv["excluded"][0]["events"] == 3
    assert "source crm is not replayable" in pv["excluded"][0]["reason"]
    assert len(pv["samples"]) == 3 and pv["samples"][0]["payload"]["messageId"] == "m0"
    assert got["estimate"]["events"] == 10 and got["estimate"]["seconds"] == 0.01


@in_loop
async def test_preview_reports_mapping_errors_with_three_samples(world):
    log, sources, pumps, replays, _ = world
    web = sources.create("web")
    log.append_sync([ev(web.id, i, BASE + i) for i in range(5)])
    bad = [{"name": "nested", "trigger": 'type = "track"',
            "mapping": {"@path": "$.properties.nested"}}]
    await pumps.create({"name": "hook", "type": "webhook", "actions": bad,
                        "settings": {"url": "http://vendor.invalid/"}})
    pv = (await replays.create({"destination": "hook", "dry_run": True}))["preview"]
    [err] = pv["mapping_errors"]
    assert err["action"] == "nested" and err["events"] == 5 and len(err["samples"]) == 3
    assert err["reason"].startswith("mapping error")
    assert err["samples"][0]["event"]["messageId"] == "m0"


@in_loop
async def test_filter_rate_and_window(world):
    log, sources, pumps, replays, transport = world
    web = sources.create("web")
    log.append_sync([ev(web.id, i, BASE + i * HOUR) for i in range(10)])
    await pumps.create({"name": "hook", "type": "webhook",
                        "settings": {"url": "http://vendor.invalid/", "batch_size": 3},
                        "rate_limit": {"events_per_second": 1000}})
    with pytest.raises(BadRequest, match="above the destination's rate limit"):
        await replays.create({"destination": "hook", "rate": 5000})
    answer = await replays.create({"destination": "hook", "from": (BASE + 2 * HOUR) / 1000,
                                   "to": (BASE + 8 * HOUR) / 1000, "rate": 500,
                                   "filter": 'properties.n != 4'})
    done = await wait_state(replays, answer["id"])
    assert sorted(sent_ids(transport)) == sorted(f"m{i}" for i in (2, 3, 5, 6, 7))
    assert done["progress"]["skipped"] == {"filtered out by the replay filter": 1}


class Warehouse(DestinationType):
    name = "warehouse"
    replayable = False


@in_loop
async def test_refusals_say_why(world):
    log, sources, pumps, replays, _ = world
    web, crm = sources.create("web"), sources.create("crm", kind="track")
    log.append_sync([ev(web.id, 1, BASE)])
    dest = await pumps.create({"name": "hook", "type": "webhook",
                               "settings": {"url": "http://vendor.invalid/"}})
    with pytest.raises(BadRequest, match=r"hook \(warehouse\) is not replayable: its first "
                       "sync already includes history; create a new destination to load again"):
        plan({}, dest, Warehouse, [web])
    with pytest.raises(BadRequest, match="only non-replayable sources in scope.*crm"):
        await replays.create({"destination": "hook", "sources": ["crm"]})
    with pytest.raises(BadRequest, match="empty window: from"):
        await replays.create({"destination": "hook", "from": "2024-01-02T00:00:00Z",
                              "to": "2024-01-01T00:00:00Z"})
    with pytest.raises(BadRequest, match="empty window: no events"):
        await replays.create({"destination": "hook", "to": "2000-01-01T00:00:00Z"})
    with pytest.raises(BadRequest, match="not valid FQL"):
        await replays.create({"destination": "hook", "filter": "type = = 1"})
    first = await replays.create({"destination": "hook", "rate": 0.5})
    with pytest.raises(Conflict, match=f"replay {first['id']} is already active"):
        await replays.create({"destination": "hook"})
    await replays.cancel(first["id"])
    await pumps.set_enabled("hook", False)
    with pytest.raises(Conflict, match="disabled"):
        await replays.create({"destination": "hook"})
    assert crm.replayable is False


@in_loop
async def test_pause_resume_cancel_and_resume_after_restart(world):
    log, sources, pumps, replays, transport = world
    web = sources.create("web")
    log.append_sync([ev(web.id, i, BASE + i) for i in range(60)])
    await pumps.create({"name": "hook", "type": "webhook",
                        "settings": {"url": "http://vendor.invalid/"},
                        "rate_limit": {"events_per_second": 40}})
    answer = await replays.create({"destination": "hook"})
    await asyncio.sleep(0.5)
    paused = await replays.pause(answer["id"])
    assert paused["state"] == "paused" and 0 < paused["progress"]["scanned"] < 60
    n = len(transport.sent)
    await asyncio.sleep(0.3)
    assert len(transport.sent) == n
    # a server restart keeps it paused; a resumed one continues from its cursor
    await pumps.stop()
    pumps._transport = transport
    await pumps.start()
    assert replays.get(answer["id"])["state"] == "paused"
    await replays.resume(answer["id"])
    await asyncio.sleep(0.3)
    await pumps.stop()  # stop mid-way (state stays running), start again: it resumes
    pumps._transport = transport
    await pumps.start()
    done = await wait_state(replays, answer["id"], timeout=20)
    ids = sent_ids(transport)
    assert set(ids) == {f"m{i}" for i in range(60)}
    # per stop, at most the batches going at once: 2 x max_in_flight (4 for the script
    # type) batches of at most 3 events
    assert len(ids) - len(set(ids)) <= 2 * (2 * 4 * 3)
    assert done["progress"]["scanned"] == 60 and done["progress"]["sent"] == 60
    again = await replays.create({"destination": "hook", "rate": 1})
    cancelled = await replays.cancel(again["id"])
    assert cancelled["state"] == "cancelled" and "cancelled" in cancelled["report"]["summary"]
    with pytest.raises(Conflict):
        await replays.resume(again["id"])


def test_window_source_cursor_is_last_finished_ts_seq(tmp_path, backend):
    storage = open_test_storage(tmp_path, backend)
    try:
        storage.log.submit([ev("s", i, BASE + (5 - i)) for i in range(5)]).result()
        p = {"ts_from": 0, "ts_to": 1 << 62, "max_seq": None, "sources": ["s"],
             "all_sources": True}

        async def chunks(after, chunk, n):
            source = WindowSlice(storage.index, plan_window(p), after, chunk=chunk)
            got = [await source.next_chunk(0) for _ in range(n)]
            await source.aclose()
            return source, got

        src, [(keys, rows), (more_keys, more)] = asyncio.run(chunks(None, 2, 2))
        assert (list(keys), [e.seq for e in rows]) == ([0, 1], [5, 4])
        assert (list(more_keys), [e.seq for e in more]) == ([2, 3], [3, 2])
        assert src.cursor_at(-1) is None
        cursor = src.cursor_at(0)
        assert cursor == WindowCursor(BASE + 1, 5)
        assert src.cursor_at(2) == WindowCursor(BASE + 3, 3)
        assert src.cursor_at(2) == WindowCursor(BASE + 3, 3)  # asked again after a failure
        assert src.cursor_at(3) == WindowCursor(BASE + 4, 2)
        _, [(keys, rows)] = asyncio.run(chunks(cursor, 10, 1))
        assert (list(keys), [e.seq for e in rows]) == ([0, 1, 2, 3], [4, 3, 2, 1])
    finally:
        storage.close()


@in_loop
async def test_a_replay_of_a_disabled_destination_is_paused_with_the_reason_until_enabled(
        world):
    log, sources, pumps, replays, transport = world
    web = sources.create("web")
    log.append_sync([ev(web.id, i, BASE + i) for i in range(40)])
    await pumps.create({"name": "hook", "type": "webhook",
                        "settings": {"url": "http://vendor.invalid/"},
                        "rate_limit": {"events_per_second": 40}})
    answer = await replays.create({"destination": "hook"})
    await asyncio.sleep(0.3)
    await pumps.set_enabled("hook", False)
    paused = replays.get(answer["id"])
    assert paused["state"] == "paused"
    assert "destination hook is disabled" in paused["reason"]
    n = len(transport.sent)
    await asyncio.sleep(0.3)
    assert len(transport.sent) == n
    with pytest.raises(Conflict, match="disabled"):
        await replays.resume(answer["id"])
    await pumps.set_enabled("hook", True)
    done = await wait_state(replays, answer["id"], timeout=20)
    assert done["reason"] is None and done["progress"]["sent"] == 40
    assert set(sent_ids(transport)) == {f"m{i}" for i in range(40)}


@in_loop
async def test_a_paused_replay_stays_paused_when_its_destination_is_enabled_again(world):
    log, sources, pumps, replays, _ = world
    web = sources.create("web")
    log.append_sync([ev(web.id, i, BASE + i) for i in range(40)])
    await pumps.create({"name": "hook", "type": "webhook",
                        "settings": {"url": "http://vendor.invalid/"},
                        "rate_limit": {"events_per_second": 40}})
    answer = await replays.create({"destination": "hook"})
    await replays.pause(answer["id"])
    await pumps.set_enabled("hook", False)
    await pumps.set_enabled("hook", True)
    got = replays.get(answer["id"])
    assert got["state"] == "paused" and got["reason"] is None


@in_loop
async def test_deleting_a_destination_keeps_its_replay_history(world):
    log, sources, pumps, replays, _ = world
    web = sources.create("web")
    log.append_sync([ev(web.id, i, BASE + i) for i in range(40)])
    await pumps.create({"name": "hook", "type": "webhook",
                        "settings": {"url": "http://vendor.invalid/"},
                        "rate_limit": {"events_per_second": 1000}})
    done = await wait_state(replays, (await replays.create({"destination": "hook"}))["id"])
    slow = await replays.create({"destination": "hook", "rate": 1})
    await pumps.delete("hook")
    old, cut = replays.get(done["id"]), replays.get(slow["id"])
    assert old["state"] == "completed" and old["progress"]["sent"] == 40
    assert old["destination_deleted"] is True and old["destination_name"] == "hook"
    assert cut["state"] == "cancelled" and cut["reason"] == "destination deleted"
    assert {r["id"] for r in replays.list()} >= {done["id"], slow["id"]}


@in_loop
async def test_the_default_window_shows_its_real_bounds(world):
    log, sources, pumps, replays, _ = world
    web = sources.create("web")
    log.append_sync([ev(web.id, i, BASE + (5 - i) * HOUR) for i in range(5)])
    dest = await pumps.create({"name": "hook", "type": "webhook",
                               "settings": {"url": "http://vendor.invalid/"},
                               "rate_limit": {"events_per_second": 1000}})
    connected = format_ms(int(dest.connected_at * 1000))
    preview = await replays.create({"destination": "hook", "dry_run": True})
    assert preview["window"]["from"] == format_ms(BASE + HOUR)  # the oldest event time
    assert preview["window"]["to"] == connected
    started = await replays.create({"destination": "hook"})
    assert (started["window"]["from"], started["window"]["to"]) == (format_ms(BASE + HOUR),
                                                                     connected)
    await wait_state(replays, started["id"])
    live = await replays.create({"destination": "hook", "include_live": True,
                                 "from": format_ms(BASE), "dry_run": True})
    assert (live["window"]["from"], live["window"]["to"]) == (format_ms(BASE), None)


@in_loop
async def test_follow_leaves_alone_a_replay_started_here_after_its_read(world):
    """On a cluster the owner acts on what other processes saved (``follow``), from a
    list of the replays read a moment before: one resumed here meanwhile, which the list
    still says is paused, is not stopped."""
    log, sources, pumps, replays, _transport = world
    web = sources.create("web")
    log.append_sync([ev(web.id, i, BASE + i) for i in range(60)])
    dest = await pumps.create({"name": "hook", "type": "webhook",
                               "settings": {"url": "http://vendor.invalid/"},
                               "rate_limit": {"events_per_second": 20}})
    rid = (await replays.create({"destination": "hook"}))["id"]
    await replays.pause(rid)
    runs = replays.runs
    stale = runs.list(kinds=[RunKind.REPLAY])  # says paused
    reading, read = threading.Event(), threading.Event()

    class SlowRuns:
        """The run store, whose list for ``follow`` is read before the resume below and
        comes back after it."""

        def __getattr__(self, name):
            return getattr(runs, name)

        def list(self, destination_id=None, **kw):
            if destination_id is not None:
                return runs.list(destination_id, **kw)
            reading.set()
            read.wait(10)
            return [r for r in stale if r.state in kw["states"]]

    replays.runs = SlowRuns()
    following = asyncio.create_task(replays.follow({dest.id: pumps.live(dest.id)}))
    await asyncio.to_thread(reading.wait, 10)
    await replays.resume(rid)
    read.set()
    await following
    replays.runs = runs
    assert rid in replays.running() and replays.get(rid)["state"] == "running"
