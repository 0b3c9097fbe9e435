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
