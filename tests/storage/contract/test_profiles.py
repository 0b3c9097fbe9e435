"""The profile store's contract, over every backend: a few store-level cases. The rules
themselves (and their order independence) are tested in ``tests/profiles``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.profiles.profile_events import alias, group, identify


def both_orders(backend, events: list[dict[str, Any]], lookup: str) -> dict[str, Any]:
    """Apply ``events`` forwards into one store and backwards into another: equal."""
    results = []
    for name, ordered in (("fwd", events), ("rev", events[::-1])):
        storage = type(backend)(backend.tmp_path / name).open()
        try:
            storage.profiles.apply_many(ordered)
            results.append(storage.profiles.get(lookup))
        finally:
            storage.close()
    assert results[0] == results[1] and results[0] is not None
    return results[0]


def test_any_id_finds_the_profile_with_the_latest_traits(backend):
    events = [identify("m1", "u1", "a1", traits={"plan": "free", "email": "a@x"},
                       timestamp="2024-05-01T00:00:00Z"),
              identify("m2", "u1", traits={"plan": "pro"}, timestamp="2024-05-02T00:00:00Z"),
              alias("m3", "a2", "u1"),
              group("m4", "acme", "u1", traits={"size": 5})]
    profile = both_orders(backend, events, "a2")
    assert profile["user_ids"] == ["u1"] and profile["anonymous_ids"] == ["a1", "a2"]
    assert profile["traits"] == {"plan": "pro", "email": "a@x"}
    assert profile["trait_times"]["plan"] == "2024-05-02T00:00:00.000Z"
    assert profile["groups"] == {"acme": {"size": 5}}
    assert profile["id"].startswith("prf_")


def test_profile_ids_resolve_and_unknown_ids_do_not(storage):
    storage.profiles.apply_many([identify("m1", "u1", traits={"a": 1})])
    profile = storage.profiles.get("u1")
    assert storage.profiles.get(profile["id"]) == profile
    assert storage.profiles.get("nobody") is None
    assert storage.profiles.get("prf_0000") is None


def test_get_many_answers_each_id_as_get_does(storage):
    storage.profiles.apply_many([identify("m1", "u1", "a1", traits={"a": 1}),
                                 identify("m2", "u2", traits={"b": 2}), alias("m3", "a3", "u2")])
    one, two = storage.profiles.get("u1"), storage.profiles.get("a3")
    assert one["id"] != two["id"]
    # Many ids at once (more than one query's worth), repeated ids, profile ids, unknowns.
    ids = ["u1", "a1", one["id"], "u2", "a3", two["id"], "nobody", "prf_0000", "u1",
           *(f"x{n}" for n in range(600))]
    found = storage.profiles.get_many(ids)
    assert set(found) == set(ids)
    assert found["u1"] == found["a1"] == found[one["id"]] == one
    assert found["u2"] == found["a3"] == found[two["id"]] == two
    assert found["nobody"] is None and found["prf_0000"] is None and found["x599"] is None
    assert storage.profiles.get_many([]) == {}


def test_get_many_of_many_profiles_is_each_one_as_get_reads_it(storage):
    """Profiles read together (more than one query's worth, a build's case) keep their
    own ids, traits, cleared traits and groups."""
    storage.profiles.apply_many([
        *(identify(f"i{n}", f"u{n}", f"a{n}", traits={"n": n, "plan": "pro" if n % 2 else None})
          for n in range(700)),
        *(group(f"g{n}", f"team-{n % 3}", f"u{n}", traits={"seats": n}) for n in range(0, 700, 7)),
    ])
    ids = [f"u{n}" for n in range(700)]
    found = storage.profiles.get_many(ids)
    for n, any_id in enumerate(ids):
        assert found[any_id] == storage.profiles.get(any_id), any_id
        assert found[any_id]["traits"]["n"] == n
    assert found["u7"]["groups"] == {"team-1": {"seats": 7}}
    assert "plan" in found["u2"]["cleared_traits"]


def test_apply_counts_profile_events_and_moves_the_checkpoint_with_them(storage):
    profiles = storage.profiles
    assert profiles.checkpoint() == 0
    n = profiles.apply_many([identify("m1", "u1", traits={"a": 1}),
                             {"type": "track", "messageId": "t1", "userId": "u1", "seq": 2},
                             alias("m2", "u1", "u2")], checkpoint=3)
    assert n == 2 and profiles.checkpoint() == 3
    assert profiles.apply_many([identify("m1", "u1", traits={"a": 1})]) == 1  # re-applied
    assert profiles.get("u2")["traits"] == {"a": 1}
    profiles.set_checkpoint(1)  # it may move backwards: a re-sync
    assert profiles.checkpoint() == 1


def test_a_failing_batch_changes_nothing(storage):
    profiles = storage.profiles
    profiles.apply_many([identify("m0", "u1", traits={"plan": "free"})], checkpoint=1)

    def events():
        yield identify("m1", "u1", traits={"plan": "pro", "_timestamp": 1714564899})
        yield alias("m2", "u1", "u2")
        raise RuntimeError("log read failed")

    with pytest.raises(RuntimeError):
        profiles.apply_many(events(), checkpoint=3)
    assert profiles.get("u1")["traits"] == {"plan": "free"}
    assert profiles.get("u2") is None and profiles.checkpoint() == 1


def test_profiles_and_checkpoint_survive_a_reopen(durable_backend):
    storage = durable_backend.open()
    storage.profiles.apply_many([identify("m1", "u1", "a1", traits={"plan": "pro"}),
                                 alias("m2", "a1", "u2")], checkpoint=2)
    before = storage.profiles.get("u1")
    storage.close()
    storage = durable_backend.open()
    try:
        assert storage.profiles.checkpoint() == 2 and storage.profiles.get("a1") == before
        # cluster numbers keep counting after a reopen: a new profile must not collide
        storage.profiles.apply_many([identify("m3", "u3", traits={"plan": "free"})])
        assert storage.profiles.get("u3")["traits"] == {"plan": "free"}
        assert storage.profiles.get("u1") == before
    finally:
        storage.close()
