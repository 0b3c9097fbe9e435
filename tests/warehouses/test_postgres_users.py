"""``users`` / ``accounts`` resolve each trait by its time (the profile rules), not arrival."""

from __future__ import annotations

import random

from millpond.storage.sqlite.profiles import SQLiteProfileStore as ProfileStore
from millpond.warehouses.batch import Loaded, StoredEvent

USERS = [f"u{i}" for i in range(12)]
TRAITS = ["plan", "email", "seats", "beta"]


def identify(n: int, user: str, traits: dict, ts: object | None = None,
             timestamp: str = "2026-11-20T09:00:00.000Z") -> StoredEvent:
    body = {"type": "identify", "messageId": f"id-{n:05d}", "userId": user,
            "timestamp": timestamp, "receivedAt": "2026-11-20T10:00:00.000Z",
            "traits": dict(traits, **({"_timestamp": ts} if ts is not None else {}))}
    return StoredEvent(n, "src", body)


def generate(rnd: random.Random, n: int) -> list[StoredEvent]:
    """Identifies with overlapping traits, trait times out of order, ties, and nulls."""
    out = []
    for i in range(1, n + 1):
        traits = {}
        for name in rnd.sample(TRAITS, rnd.randint(1, 3)):
            if name == "plan":
                traits[name] = rnd.choice(["free", "pro", "team", None])
            elif name == "email":
                traits[name] = f"e{rnd.randrange(1000)}@ex.com"
            elif name == "seats":
                traits[name] = rnd.randrange(100)
            else:
                traits[name] = rnd.random() < 0.5
        ts = rnd.choice([1_700_000_000 + rnd.randrange(50), None,
                         f"2023-11-14T22:13:{rnd.randrange(60):02d}Z", "not a time"])
        out.append(identify(i, rnd.choice(USERS), traits, ts,
                            timestamp=f"2023-11-14T22:14:{rnd.randrange(60):02d}.000Z"))
    return out


def users_table(sql) -> dict[str, dict]:
    cols = [r[0] for r in sql("SELECT column_name FROM information_schema.columns WHERE "
                              "table_schema = 'millpond' AND table_name = 'users'")]
    wanted = [c for c in cols if c in TRAITS]
    rows = sql(f"SELECT id, {', '.join(wanted)} FROM millpond.users")
    return {r[0]: {c: v for c, v in zip(wanted, r[1:], strict=True) if v is not None}
            for r in rows}


def profile_traits(events: list[StoredEvent], tmp_path) -> dict[str, dict]:
    """The profile store's verdict on the same events (one profile per userId here)."""
    store = ProfileStore(tmp_path / "profiles.db")
    try:
        store.apply_many([dict(e.event, seq=e.seq, source_id=e.source_id) for e in events])
        out = {}
        for user in {e.event["userId"] for e in events}:
            profile = store.get(user)
            out[user] = {k: v for k, v in (profile or {}).get("traits", {}).items()
                         if k in TRAITS}
        return out
    finally:
        store.close()


def test_shuffled_identifies_end_with_the_newest_traits(make_loader, sql, tmp_path):
    rnd = random.Random(16)
    events = generate(rnd, 600)
    expected = profile_traits(events, tmp_path)
    shuffled = events[:]
    rnd.shuffle(shuffled)
    loader = make_loader()
    start = 0
    while start < len(shuffled):
        size = rnd.randint(1, 90)
        assert isinstance(loader.load(shuffled[start:start + size]), Loaded)
        start += size
    got = users_table(sql)
    assert got == {u: t for u, t in expected.items()}
    assert sql("SELECT count(*) FROM millpond.identifies")[0][0] == len(events)
    # Loading everything again, in another order, changes nothing.
    before = sql("SELECT * FROM millpond.users ORDER BY id")
    assert isinstance(loader.load(list(reversed(events))), Loaded)
    assert sql("SELECT * FROM millpond.users ORDER BY id") == before


def test_trait_timestamp_beats_arrival_and_null_clears(make_loader, sql):
    loader = make_loader()
    newer = identify(1, "ann", {"plan": "pro", "email": "new@ex.com"}, ts=1_800_000_000)
    older = identify(2, "ann", {"plan": "free", "email": "old@ex.com", "seats": 3},
                     ts="2020-01-01T00:00:00Z")
    loader.load([newer])
    result = loader.load([older])  # arrives later, but is older
    assert isinstance(result, Loaded) and result.inserted["users"] == 1  # only seats changed
    assert users_table(sql) == {"ann": {"plan": "pro", "email": "new@ex.com", "seats": 3}}
    cleared = identify(3, "ann", {"plan": None}, ts=1_900_000_000)
    loader.load([cleared])
    assert users_table(sql)["ann"] == {"email": "new@ex.com", "seats": 3}
    # An older value cannot bring a cleared trait back.
    loader.load([identify(4, "ann", {"plan": "team"}, ts=1_850_000_000)])
    assert "plan" not in users_table(sql)["ann"]
    # Equal times: the greater messageId wins, whatever the order.
    a = identify(10, "bob", {"plan": "a"}, ts=1_700_000_000)
    b = identify(11, "bob", {"plan": "b"}, ts=1_700_000_000)
    loader.load([b])
    loader.load([a])
    assert users_table(sql)["bob"] == {"plan": "b"}


def test_accounts_hold_the_newest_group_traits(make_loader, sql):
    def group(n, org, traits, ts):
        return StoredEvent(n, "src", {"type": "group", "messageId": f"g{n}", "userId": "u",
                                      "groupId": org, "timestamp": ts, "traits": traits})

    loader = make_loader()
    loader.load([group(2, "acme", {"name": "Acme Inc", "employees": 50},
                       "2026-01-02T00:00:00Z")])
    loader.load([group(1, "acme", {"name": "Acme", "employees": 10, "industry": "toys"},
                       "2026-01-01T00:00:00Z")])
    assert sql("SELECT id, name, employees, industry FROM millpond.accounts") == [
        ("acme", "Acme Inc", 50, "toys")]
    assert sql("SELECT count(*) FROM millpond.groups")[0][0] == 2


def test_anonymous_identifies_do_not_make_users(make_loader, sql):
    anon = StoredEvent(1, "src", {"type": "identify", "messageId": "a1", "anonymousId": "x",
                                  "traits": {"plan": "free"}})
    result = make_loader().load([anon])
    assert isinstance(result, Loaded) and "users" not in result.rows
    assert sql("SELECT anonymous_id, plan FROM millpond.identifies") == [("x", "free")]


#: The trait-times table of versions before the times moved onto the rows (their DDL, as is).
OLD_TIMES_TABLE = (
    "CREATE TABLE millpond.millpond_trait_times ("
    "table_name text NOT NULL, id text NOT NULL, column_name text NOT NULL, "
    't double precision NOT NULL, mid text COLLATE "C" NOT NULL, seq bigint NOT NULL, '
    "PRIMARY KEY (table_name, id, column_name))"
)


def to_old_layout(sql) -> None:
    """Turn the schema into what an older version left: times in a table of their own, one
    row per (table, key, column), and no times column on users / accounts."""
    sql(OLD_TIMES_TABLE)
    for table in ("users", "accounts"):
        if sql(f"SELECT to_regclass('millpond.{table}')") == [(None,)]:
            continue
        sql(f"INSERT INTO millpond.millpond_trait_times SELECT '{table}', u.id, e.key, "
            "(e.value ->> 0)::float8, e.value ->> 1, (e.value ->> 2)::bigint "
            f"FROM millpond.{table} u, jsonb_each(u.millpond_trait_times) e")
        sql(f"ALTER TABLE millpond.{table} DROP COLUMN millpond_trait_times")


def test_a_destination_with_the_older_times_table_is_converted(make_loader, sql, tmp_path):
    """Times kept by an older version still decide: an older identify arriving after the
    conversion changes nothing, a newer one wins, ties still go by messageId; the old
    table is gone and the times are on the rows."""
    rnd = random.Random(61)
    events = generate(rnd, 400)
    # A time that needs all 17 digits of a double, and a tie on it decided by messageId.
    events += [identify(401, "u0", {"plan": "exact"}, ts=1_800_000_000.123456789),
               identify(402, "u0", {"plan": "tied"}, ts=1_800_000_000.123456789)]
    first, rest = events[:249] + events[-1:], events[249:-1]
    loader = make_loader()
    assert isinstance(loader.load(first), Loaded)
    assert isinstance(loader.load([StoredEvent(
        9000, "src", {"type": "group", "messageId": "g1", "userId": "u0", "groupId": "acme",
                      "timestamp": "2026-01-02T00:00:00Z", "traits": {"name": "Acme Inc"}})]),
        Loaded)
    loader.close()
    before = sql("SELECT id, millpond_trait_times FROM millpond.users ORDER BY id")
    to_old_layout(sql)
    assert sql("SELECT count(*) FROM millpond.millpond_trait_times")[0][0] > len(before)
    loader = make_loader()
    page = StoredEvent(8000, "src", {"type": "page", "messageId": "p1", "userId": "u0"})
    assert isinstance(loader.load([page]), Loaded)  # converts, touches no users row
    # The converted times are the very ones the rows had (floats and messageIds exact).
    assert sql("SELECT id, millpond_trait_times FROM millpond.users ORDER BY id") == before
    assert sql("SELECT to_regclass('millpond.millpond_trait_times')") == [(None,)]

    rnd.shuffle(rest)
    for start in range(0, len(rest), 40):
        assert isinstance(loader.load(rest[start:start + 40]), Loaded)
    assert isinstance(loader.load([StoredEvent(
        8999, "src", {"type": "group", "messageId": "g0", "userId": "u0", "groupId": "acme",
                      "timestamp": "2026-01-01T00:00:00Z", "traits": {"name": "Acme"}})]),
        Loaded)
    assert users_table(sql) == profile_traits(events, tmp_path)
    assert sql("SELECT id, name FROM millpond.accounts") == [("acme", "Acme Inc")]


def test_a_failed_batch_leaves_the_older_layout_as_it_was(make_loader, sql):
    loader = make_loader()
    assert isinstance(loader.load([identify(1, "ann", {"plan": "pro"})]), Loaded)
    loader.close()
    to_old_layout(sql)
    sql("ALTER TABLE millpond.identifies ALTER COLUMN user_id TYPE integer USING 0")
    result = make_loader().load([identify(2, "ann", {"plan": "team"})])
    assert not isinstance(result, Loaded)  # the hand-made change rejects the batch...
    assert sql("SELECT count(*) FROM millpond.millpond_trait_times") == [(1,)]  # ...all of it
    assert sql("SELECT count(*) FROM information_schema.columns WHERE table_schema = "
               "'millpond' AND column_name = 'millpond_trait_times'") == [(0,)]


def test_a_trait_named_like_the_times_column_is_a_discard(make_loader, sql):
    result = make_loader().load([identify(1, "ann", {"plan": "pro",
                                                     "millpond_trait_times": "x"})])
    assert isinstance(result, Loaded)
    assert [(d.table, d.column, d.reason) for d in result.discards] == [
        ("identifies", "millpond_trait_times",
         "traits.millpond_trait_times would write the reserved column millpond_trait_times")]
    assert sql("SELECT id, plan, millpond_trait_times ? 'plan' FROM millpond.users") == [
        ("ann", "pro", True)]
