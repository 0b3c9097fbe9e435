"""A regulation's deletion in the PostgreSQL warehouse: every row of the person (by user
id and anonymous id, in every table of the schema, ``users`` by id) goes, in one
transaction, and nobody else's; running it again removes nothing more."""

from __future__ import annotations

import threading

from millpond.warehouses.batch import StoredEvent
from tests.support.regulations import deletion


def _event(n: int, body: dict) -> StoredEvent:
    return StoredEvent(n, "src", {"messageId": f"m-{n}", "timestamp": "2026-11-20T09:00:00Z",
                                  "receivedAt": "2026-11-20T10:00:00Z", **body})


def test_forget_deletes_every_row_of_the_person_and_only_theirs(make_loader, sql):
    loader = make_loader()
    loader.load([
        _event(1, {"type": "identify", "userId": "ada", "anonymousId": "anon-ada",
                   "traits": {"email": "ada@example.com"}}),
        _event(2, {"type": "track", "userId": "ada", "event": "Order Completed",
                   "properties": {"total": 5}}),
        _event(3, {"type": "track", "anonymousId": "anon-ada", "event": "Viewed"}),
        _event(4, {"type": "page", "userId": "ada", "name": "Home"}),
        _event(5, {"type": "identify", "userId": "bob", "traits": {"email": "b@example.com"}}),
        _event(6, {"type": "track", "userId": "bob", "event": "Order Completed"}),
    ])

    def rows(user: str) -> int:
        tables = sql("SELECT table_name FROM information_schema.columns WHERE table_schema ="
                     " 'millpond' AND column_name = 'user_id'")
        return sum(sql(f'SELECT count(*) FROM millpond."{t}" WHERE user_id = %s', user)[0][0]
                   for (t,) in tables)

    assert rows("ada") >= 4 and sql("SELECT count(*) FROM millpond.users WHERE id = 'ada'")
    removed = loader.forget(["ada", "anon-ada"])
    assert removed >= 6  # identifies, tracks (2 tables each), pages, users
    assert rows("ada") == 0
    assert sql("SELECT count(*) FROM millpond.users WHERE id = 'ada'") == [(0,)]
    assert sql("SELECT count(*) FROM millpond.tracks WHERE anonymous_id = 'anon-ada'") == [(0,)]
    assert rows("bob") >= 3
    assert sql("SELECT count(*) FROM millpond.users WHERE id = 'bob'") == [(1,)]
    assert loader.forget(["ada", "anon-ada"]) == 0


def test_forget_deletes_the_discards_of_the_persons_events(make_loader, sql):
    """A discard keeps the value that did not fit (here a trait and a property of the
    person's own): the person's discards go with their rows, nobody else's do."""
    loader = make_loader()
    loader.load([
        _event(1, {"type": "identify", "userId": "ada", "anonymousId": "anon-ada",
                   "traits": {"email": "ada@example.com", "Email": "ada@private.example",
                              "received_at": "ada-secret"}}),
        _event(2, {"type": "track", "anonymousId": "anon-ada", "event": "Viewed",
                   "properties": {"note": "x", "Note": "ada's note"}}),
        _event(3, {"type": "identify", "userId": "bob",
                   "traits": {"email": "b@example.com", "Email": "bob@private.example"}}),
    ])
    discarded = "SELECT seq, value FROM millpond.millpond_discards ORDER BY seq, value"
    held = sql(discarded)
    assert {seq for seq, _ in held} == {1, 2, 3}
    assert any("ada@private.example" in (value or "") for _, value in held)

    loader.forget(["ada", "anon-ada"])

    left = sql(discarded)
    assert {seq for seq, _ in left} == {3}
    assert not any("ada" in (value or "") for _, value in left)
    assert loader.forget(["ada", "anon-ada"]) == 0


def _batch(first: int) -> list[StoredEvent]:
    return [
        _event(first, {"type": "identify", "userId": "ada", "anonymousId": "anon-ada",
                       "traits": {"email": "ada@example.com"}}),
        _event(first + 1, {"type": "track", "userId": "ada", "event": "Order Completed"}),
        _event(first + 2, {"type": "track", "anonymousId": "anon-ada", "event": "Viewed"}),
        _event(first + 3, {"type": "track", "userId": "bob", "event": "Order Completed"}),
    ]


def test_a_batch_committing_after_the_deletion_leaves_the_person_out(pg_dsn, sql,
                                                                     monkeypatch):
    """A batch the pump let through before the deletion was accepted: held in its
    transaction, rows written, not committed, while the deletion runs (which must wait
    for it, else it deletes nothing it can see and the commit brings her back); then a
    batch handed to the loader only after the deletion. None of her rows stays."""
    from millpond.regulations.blocklist import Blocklist
    from millpond.warehouses.postgres import PostgresLoader, parse_settings, run

    blocklist = Blocklist()
    held, release = threading.Event(), threading.Event()
    write_discards = run.merge.write_discards

    def holding(*args, **kwargs):  # the batch's last write, inside its transaction
        if not held.is_set():
            held.set()
            assert release.wait(60)
        return write_discards(*args, **kwargs)

    monkeypatch.setattr(run.merge, "write_discards", holding)
    settings = parse_settings({"dsn": pg_dsn})
    outcomes: dict[str, object] = {}
    with PostgresLoader(settings, screen=blocklist) as loading, \
            PostgresLoader(settings) as forgetting:
        first = threading.Thread(target=lambda: outcomes.update(a=loading.load(_batch(1))))
        first.start()
        assert held.wait(60), "the batch never reached its last write"
        blocklist.load([deletion(["ada", "anon-ada"], 100)])  # the deletion is accepted
        forget = threading.Thread(
            target=lambda: outcomes.update(f=forgetting.forget(["ada", "anon-ada"])))
        forget.start()
        while forget.is_alive() and not sql(  # done, or waiting for the batch
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"):
            held.wait(0.05)
        release.set()
        first.join(60)
        forget.join(60)
        late = loading.load(_batch(10))  # built before the deletion, loaded after it

    assert sql("SELECT count(*) FROM millpond.tracks WHERE user_id = 'ada'"
               " OR anonymous_id = 'anon-ada'") == [(0,)]
    assert sql("SELECT count(*) FROM millpond.identifies") == [(0,)]
    assert sql("SELECT count(*) FROM millpond.users WHERE id = 'ada'") == [(0,)]
    assert sql("SELECT count(*) FROM millpond.tracks WHERE user_id = 'bob'") == [(2,)]
    assert outcomes["f"] and late.screened == {10: "deleted", 11: "deleted", 12: "deleted"}  # type: ignore[union-attr]
