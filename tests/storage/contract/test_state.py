"""The state stores' contracts, over every backend: sources, destinations, delivery runs
with their atomic checkpoints and dead letters, import jobs, rejections."""

from __future__ import annotations

import threading
import time

import pytest
from msgspec.structs import replace

from millpond.errors import BadRequest, Conflict, NotFound
from millpond.storage.models import (
    DeadLetter,
    DeadLetterState,
    Destination,
    ImportJob,
    Rejection,
    Run,
    RunKind,
    RunState,
    Source,
    WindowCursor,
)

SENT = ("a", "sent", "")
SKIP = ("", "skipped", "no action handles x")
DEAD = ("a", "dead_lettered", "HTTP 400")


def source(n: int, **extra) -> Source:
    fields = {"id": f"src_{n}", "name": f"s{n}", "kind": "pipelines", "write_key": f"wk{n}",
              "replayable": True, "created_at": float(n), **extra}
    return Source(**fields)


def destination(n: int, **extra) -> Destination:
    fields = {"id": f"dst_{n}", "name": f"d{n}", "type": "webhook",
              "settings": {"url": "https://example.com", "headers": {"k": "v"}},
              "rate_limit": {"events_per_second": 10.0}, "actions": [{"name": "a"}],
              "enabled": True, "connected_at": float(n), "connected_seq": 7, **extra}
    return Destination(**fields)


def letter(seq: int, dest: str = "d", run: str = "r1", action: str = "a") -> DeadLetter:
    return DeadLetter(dest, run, seq, f"m{seq}", action, "HTTP 400: no", 400, "no",
                      {"x": seq})


def live_run(run_id: str = "r1", dest: str = "d", cursor=0) -> Run:
    return Run(run_id, dest, RunKind.LIVE, RunState.RUNNING, cursor=cursor)


# -- sources -------------------------------------------------------------------------------
def test_sources_by_id_name_write_key_and_site_id(storage):
    store = storage.sources
    created = [store.create(source(n)) for n in (2, 1)]
    track = store.create(source(3, kind="track", site_id="site3", allowed_origins=("https://a",),
                                enabled=False))
    assert store.get("src_1") == store.get("s1") == created[1]
    assert store.by_write_key("wk2") == created[0] and store.by_write_key("nope") is None
    assert store.by_site_id("site3") == track and store.by_site_id("nope") is None
    assert [s.id for s in store.list()] == ["src_1", "src_2", "src_3"]  # oldest first
    assert store.get("s3").allowed_origins == ("https://a",) and not store.get("s3").enabled
    with pytest.raises(NotFound) as missing:
        store.get("s9")
    assert missing.value.field == "source"


def test_source_names_are_unique_and_updates_replace_the_record(storage):
    store = storage.sources
    store.create(source(1))
    store.create(source(2))
    with pytest.raises(Conflict) as taken:
        store.create(source(3, name="s1"))
    assert taken.value.field == "name"
    with pytest.raises(Conflict):
        store.update(source(2, name="s1"))
    changed = store.update(source(2, name="renamed", write_key="wk-new", enabled=False))
    assert store.get("renamed") == changed and store.by_write_key("wk-new") == changed
    assert store.by_write_key("wk2") is None
    with pytest.raises(NotFound):
        store.update(source(9))
    assert store.delete("src_1").name == "s1"
    with pytest.raises(NotFound):
        store.delete("src_1")
    assert [s.id for s in store.list()] == ["src_2"]


def test_a_deleted_source_stays_as_a_tombstone_only_deleted_sees(storage):
    store = storage.sources
    store.create(source(1, kind="track", site_id="site1", replayable=False))
    store.create(source(2))
    before = time.time()
    tombstone = store.delete("src_1")
    assert tombstone.deleted_at is not None and tombstone.deleted_at >= before
    assert (tombstone.kind, tombstone.replayable, tombstone.name) == ("track", False, "s1")
    # gone for everything else: lists, look-ups, its write key and site id
    assert [s.id for s in store.list()] == ["src_2"]
    assert store.by_write_key("wk1") is None and store.by_site_id("site1") is None
    for ref in ("src_1", "s1"):
        with pytest.raises(NotFound):
            store.get(ref)
    with pytest.raises(NotFound):
        store.delete("src_1")
    # its name and write key can be taken again; the id never
    reused = store.create(source(3, name="s1", write_key="wk1"))
    assert store.get("s1") == reused and store.by_write_key("wk1") == reused
    with pytest.raises(Conflict):
        store.create(source(1, name="other", write_key="other"))
    store.delete("src_3")
    assert [(s.id, s.name, s.replayable) for s in store.deleted()] == [
        ("src_1", "s1", False), ("src_3", "s1", True)]


def test_tombstones_survive_a_reopen(durable_backend):
    first = durable_backend.open()
    first.sources.create(source(1, kind="track", replayable=False))
    first.sources.delete("src_1")
    first.close()
    again = durable_backend.open()
    try:
        assert [(s.id, s.kind, s.replayable) for s in again.sources.deleted()] == [
            ("src_1", "track", False)]
        assert again.sources.list() == []
    finally:
        again.close()


def test_sources_from_several_threads(storage):
    errors: list[Exception] = []

    def create(n: int) -> None:
        try:
            storage.sources.create(source(n))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors and len(storage.sources.list()) == 20


# -- destinations ----------------------------------------------------------------------------
def test_destinations_crud(storage):
    store = storage.destinations
    first = store.create(destination(1))
    store.create(destination(2))
    assert store.get("dst_1") == store.get("d1") == first
    assert first.settings == {"url": "https://example.com", "headers": {"k": "v"}}
    with pytest.raises(Conflict) as taken:
        store.create(destination(3, name="d2"))
    assert taken.value.field == "name"
    store.update(destination(1, settings={"url": "x"}, enabled=False, updated_at=5.0))
    again = store.get("d1")
    assert again.settings == {"url": "x"} and not again.enabled and again.updated_at == 5.0
    assert [d.id for d in store.list()] == ["dst_1", "dst_2"]
    assert store.delete("dst_1").id == "dst_1"
    with pytest.raises(NotFound) as missing:
        store.get("d1")
    assert missing.value.field == "destination"


def test_a_returned_destination_is_a_copy(storage):
    storage.destinations.create(destination(1))
    got = storage.destinations.get("d1")
    got.settings["url"] = "changed"
    assert storage.destinations.get("d1").settings["url"] == "https://example.com"


# -- runs ---------------------------------------------------------------------------------------
def test_runs_by_destination_kind_and_state(storage):
    runs = storage.runs
    runs.create(live_run("r1", "d1"))
    runs.create(Run("r2", "d1", RunKind.REPLAY, RunState.RUNNING, {"rate": 5.0}))
    runs.create(Run("r3", "d2", RunKind.REDRIVE, RunState.PAUSED, {"ids": [1, 2]}))
    with pytest.raises(BadRequest):
        runs.create(live_run("r1", "d9"))
    assert [r.id for r in runs.list()] == ["r1", "r2", "r3"]
    assert [r.id for r in runs.list("d1")] == ["r1", "r2"]
    assert [r.id for r in runs.list(kinds=[RunKind.REPLAY, RunKind.REDRIVE])] == ["r2", "r3"]
    assert [r.id for r in runs.list(states=[RunState.PAUSED])] == ["r3"]
    assert runs.list("d2", kinds=[RunKind.LIVE]) == []
    got = runs.get("r3")
    assert (got.kind, got.state, got.spec, got.cursor) == (RunKind.REDRIVE, RunState.PAUSED,
                                                           {"ids": [1, 2]}, None)
    with pytest.raises(NotFound) as missing:
        runs.get("nope")
    assert missing.value.field == "id"


def test_set_state_keeps_error_and_report_unless_given(storage):
    runs = storage.runs
    runs.create(Run("r1", "d", RunKind.REPLAY, RunState.RUNNING))
    failed = runs.set_state("r1", RunState.FAILED, error="boom")
    assert failed.error == "boom" and failed.finished_at is not None
    resumed = runs.set_state("r1", RunState.RUNNING)
    assert resumed.error == "boom" and resumed.report is None
    done = runs.set_state("r1", RunState.COMPLETED, report={"sent": 3, "summary": "ok"})
    assert done.report == {"sent": 3, "summary": "ok"} and done.error == "boom"
    assert runs.get("r1").state == RunState.COMPLETED
    with pytest.raises(NotFound):
        runs.set_state("nope", RunState.RUNNING)


def test_checkpoints_accumulate_counters_and_move_cursors(storage):
    runs = storage.runs
    runs.create(live_run())
    runs.create(Run("rp", "d", RunKind.REPLAY, RunState.RUNNING))
    runs.checkpoint("r1", cursor=5, counts={SENT: 3})
    runs.checkpoint("r1", cursor=9, counts={SENT: 2, SKIP: 1, DEAD: 0})
    runs.checkpoint("r1", counts={SENT: 1})  # no cursor: it stays
    runs.checkpoint("rp", cursor=WindowCursor(100, 7), scanned=3, counts={SENT: 3},
                    durable=False)
    runs.checkpoint("rp", scanned=2, counts={SENT: 1, DEAD: 1}, dead=[letter(9, run="rp")],
                    durable=False)
    live, replay = runs.get("r1"), runs.get("rp")
    assert (live.cursor, live.counts) == (9, {SENT: 6, SKIP: 1})
    assert (replay.cursor, replay.scanned, replay.counts) == (WindowCursor(100, 7), 5,
                                                              {SENT: 4, DEAD: 1})
    [dead] = runs.dead_letters("d")
    assert (dead.run_id, dead.seq, dead.payload, dead.state) == ("rp", 9, {"x": 9},
                                                                 DeadLetterState.DEAD)
    with pytest.raises(NotFound):
        runs.checkpoint("nope", cursor=1)


def test_outcome_events_list_the_events_behind_each_count_newest_first(storage):
    runs = storage.runs
    runs.create(live_run())
    runs.create(live_run("r2"))
    runs.checkpoint("r1", cursor=4, counts={SENT: 3, SKIP: 1},
                    outcomes={SENT: [1, 2, 4], SKIP: [3]})
    runs.checkpoint("r1", cursor=9, counts={SENT: 2, DEAD: 1},
                    outcomes={SENT: [5, 9], DEAD: [7], SKIP: []})
    runs.checkpoint("r2", cursor=20, counts={SENT: 1}, outcomes={SENT: [20]})
    assert runs.outcome_events(["r1"], [SENT]).seqs == [9, 5, 4, 2, 1]
    assert runs.outcome_events(["r1"], [DEAD]).seqs == [7]
    assert runs.outcome_events(["r1"], [SKIP]).seqs == [3]
    # several keys (everything an action matched) and several runs (live + redrives)
    assert runs.outcome_events(["r1"], [SENT, DEAD]).seqs == [7, 9, 5, 4, 2, 1]
    assert runs.outcome_events(["r1", "r2"], [SENT]).seqs == [20, 9, 5, 4, 2, 1]
    assert runs.outcome_events(["nope"], [SENT]).seqs == []
    assert runs.outcome_events(["r1"], [("b", "sent", "")]).seqs == []


def test_outcome_events_page_through_every_event_once(storage):
    runs = storage.runs
    runs.create(live_run())
    for start in range(0, 100, 10):  # ten checkpoints of ten events, a gap in each
        runs.checkpoint("r1", cursor=start + 10, counts={SENT: 9},
                        outcomes={SENT: [s for s in range(start, start + 10) if s != start + 3],
                                  SKIP: [start + 3]})
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = runs.outcome_events(["r1"], [SENT], cursor=cursor, limit=7)
        seen.extend(page.seqs)
        pages += 1
        if page.next_cursor is None:
            break
        assert len(page.seqs) == 7
        cursor = page.next_cursor
    assert seen == sorted((s for s in range(100) if s % 10 != 3), reverse=True)
    assert pages == 13
    with pytest.raises(BadRequest) as bad:
        runs.outcome_events(["r1"], [SENT], cursor="x")
    assert bad.value.field == "cursor"


def test_outcomes_are_part_of_the_checkpoint_transaction(backend, storage, monkeypatch):
    runs = storage.runs
    runs.create(live_run())
    backend.break_checkpoints(storage, monkeypatch)
    with pytest.raises(Exception, match="injected failure"):
        runs.checkpoint("r1", cursor=2, counts={SENT: 1, DEAD: 1}, dead=[letter(2)],
                        outcomes={SENT: [1], DEAD: [2]})
    assert runs.outcome_events(["r1"], [SENT, DEAD]).seqs == []


def test_prune_outcomes_forgets_the_oldest_rows_in_steps_and_keeps_the_counts(storage):
    runs = storage.runs
    runs.create(live_run())
    for start in range(0, 50, 10):  # five old checkpoints: ten rows (sent and skipped)
        runs.checkpoint("r1", cursor=start + 9, counts={SENT: 9, SKIP: 1},
                        outcomes={SENT: list(range(start, start + 9)), SKIP: [start + 9]})
    cut = time.time()
    while time.time() <= cut:  # the next rows are written strictly after ``cut``
        pass
    runs.checkpoint("r1", cursor=60, counts={SENT: 10}, outcomes={SENT: list(range(50, 61))})
    counts = runs.get("r1").counts
    assert runs.prune_outcomes(cut - 3600) == 0  # nothing that old
    steps = [runs.prune_outcomes(cut, limit=4) for _ in range(4)]
    assert steps == [4, 4, 2, 0]  # bounded steps, then done: the new row stays
    assert runs.outcome_events(["r1"], [SENT], limit=100).seqs == list(range(60, 49, -1))
    assert runs.outcome_events(["r1"], [SKIP]).seqs == []
    assert runs.get("r1").counts == counts  # the counts stay exact
    assert runs.prune_outcomes(time.time()) == 1


def test_counters_and_cursors_survive_a_reopen(durable_backend):
    storage = durable_backend.open()
    storage.runs.create(live_run())
    storage.runs.checkpoint("r1", cursor=5, counts={SENT: 3})
    storage.runs.checkpoint("r1", cursor=9, counts={SENT: 2, SKIP: 1}, dead=[letter(7)],
                            outcomes={SENT: [8, 9], SKIP: [6]})
    storage.close()
    storage = durable_backend.open()
    try:
        again = storage.runs.get("r1")
        assert (again.cursor, again.counts) == (9, {SENT: 5, SKIP: 1})
        assert [d.seq for d in storage.runs.dead_letters("d")] == [7]
        assert storage.runs.outcome_events(["r1"], [SENT, SKIP]).seqs == [6, 9, 8]
    finally:
        storage.close()


@pytest.mark.parametrize("durable", [True, False])
def test_a_checkpoint_that_fails_half_way_changes_nothing(backend, storage, monkeypatch,
                                                          durable):
    runs = storage.runs
    runs.create(live_run())
    runs.checkpoint("r1", cursor=1, counts={SENT: 1}, scanned=1, dead=[letter(1)],
                    durable=durable)
    [first] = runs.dead_letters("d")
    runs.claim_dead_letters("d", [first.id])
    backend.break_checkpoints(storage, monkeypatch)
    with pytest.raises(Exception, match="injected failure"):
        runs.checkpoint("r1", cursor=2, counts={SENT: 1, DEAD: 1}, scanned=4,
                        dead=[letter(2)], redriven=[first.id], durable=durable)
    run = runs.get("r1")
    assert (run.cursor, run.counts, run.scanned) == (1, {SENT: 1}, 1)
    assert [(d.seq, d.state) for d in runs.dead_letters("d", state=None)] == [
        (1, DeadLetterState.REDRIVING)]


def test_concurrent_checkpoints_all_count(storage):
    runs = storage.runs
    for n in range(4):
        runs.create(live_run(f"r{n}"))

    def worker(n: int) -> None:
        for i in range(25):
            runs.checkpoint(f"r{n % 4}", cursor=i, counts={SENT: 1, SKIP: 2},
                            dead=[letter(i, run=f"r{n % 4}")] if i % 5 == 0 else ())

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for n in range(4):
        assert runs.get(f"r{n}").counts == {SENT: 50, SKIP: 100}
    assert runs.count_dead_letters("d") == 8 * 5


# -- dead letters --------------------------------------------------------------------------------
def test_dead_letters_claim_release_recover_and_redriven(storage):
    runs = storage.runs
    runs.create(live_run())
    runs.create(live_run("r2", "other"))
    runs.checkpoint("r1", dead=[letter(3), letter(1), letter(2)])
    runs.checkpoint("r2", dead=[letter(9, "other", "r2")])
    ids = [d.id for d in runs.dead_letters("d")]
    assert ids == sorted(ids)
    claimed = runs.claim_dead_letters("d", None)
    assert [d.seq for d in claimed] == [1, 2, 3] and runs.count_dead_letters("d") == 0
    assert all(d.state == DeadLetterState.REDRIVING for d in claimed)
    assert runs.count_dead_letters("d", DeadLetterState.REDRIVING) == 3
    with pytest.raises(BadRequest, match="not in state dead") as busy:
        runs.claim_dead_letters("d", [ids[0]])
    assert busy.value.field == "ids"
    other = runs.dead_letters("other")[0].id
    with pytest.raises(NotFound, match="for this destination"):
        runs.claim_dead_letters("d", [other])
    with pytest.raises(NotFound, match="for this destination"):
        runs.claim_dead_letters("d", [99_999])
    runs.release_dead_letters([ids[0]])
    assert runs.count_dead_letters("d") == 1
    assert runs.recover_dead_letters() == 2 and runs.count_dead_letters("d") == 3
    runs.claim_dead_letters("d", [ids[1]])
    runs.checkpoint("r1", redriven=[ids[1]])
    row = runs.dead_letter(ids[1])
    assert row.state == DeadLetterState.REDRIVEN and row.redriven_at is not None
    assert row.payload == {"x": 1} and row.status == 400 and row.response == "no"
    assert [d.id for d in runs.dead_letters("d", state=DeadLetterState.REDRIVEN)] == [ids[1]]
    assert [d.id for d in runs.dead_letters("d", state=None, after_id=ids[0], limit=1)] == [
        ids[1]]
    with pytest.raises(NotFound) as missing:
        runs.dead_letter(99_999)
    assert missing.value.field == "id"


# -- imports and rejections ---------------------------------------------------------------------
def test_import_jobs(storage):
    jobs = storage.imports
    for n in range(3):
        jobs.create(ImportJob(f"imp_{n}", "src_1", "people", f"/x/{n}.csv", "running",
                              {"kind": "people", "delimiter": None}, created_at=float(n)))
    assert [j.id for j in jobs.list()] == ["imp_2", "imp_1", "imp_0"]  # newest first
    assert [j.id for j in jobs.list(limit=2)] == ["imp_2", "imp_1"]
    job = jobs.get("imp_1")
    job.state, job.summary, job.progress = "completed", {"rows": 3}, None
    jobs.update(job)
    again = jobs.get("imp_1")
    assert (again.state, again.summary, again.options) == (
        "completed", {"rows": 3}, {"kind": "people", "delimiter": None})
    job.progress = {"rows_read": 10}
    jobs.update(job)
    assert jobs.get("imp_1").progress == {"rows_read": 10}
    with pytest.raises(NotFound) as missing:
        jobs.get("imp_9")
    assert missing.value.field == "id"
    with pytest.raises(NotFound):
        jobs.update(ImportJob("imp_9", "s", "people", "f", "running", {}))


def test_rejections_in_order_by_source(storage):
    store = storage.rejections
    batch = [Rejection("src_a", 3, "missing_field", "why", "event", 7, b'{"type":"track"}'),
             Rejection("src_b", 0, "bad", "no", None, 8, b"{}")]
    store.add(batch)
    store.add([Rejection("src_a", 1, "bad", "again", None, 9, b"[]")])
    assert batch[0].id < batch[1].id
    rows = store.list("src_a", 0, 10)
    assert [(r.index, r.code, r.reason, r.field, r.body) for r in rows] == [
        (3, "missing_field", "why", "event", b'{"type":"track"}'),
        (1, "bad", "again", None, b"[]")]
    assert [r.source_id for r in store.list(None, 0, 10)] == ["src_a", "src_b", "src_a"]
    assert store.list(None, rows[0].id, 1) == [store.list(None, 0, 10)[1]]
    assert store.list("src_other", 0, 10) == []


def test_a_sources_retention_is_kept_and_changed_and_outlives_it(storage):
    assert storage.sources.create(source(1)).retention == "forever"
    storage.sources.update(replace(storage.sources.get("src_1"), retention="400d"))
    assert storage.sources.get("s1").retention == "400d"
    storage.sources.delete("src_1")
    assert [s.retention for s in storage.sources.deleted()] == ["400d"]
