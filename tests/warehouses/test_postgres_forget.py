"""A regulation's deletion in the PostgreSQL warehouse: every row of the person (by user
id and anonymous id, in every table of the schema, ``users`` by id) goes, in one
transaction, and nobody else's; running it again removes nothing more."""

from __future__ import annotations

from millpond.warehouses.batch import StoredEvent


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
