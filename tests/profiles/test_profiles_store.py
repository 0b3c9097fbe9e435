"""One test per profile-store rule; each out-of-order rule is checked in both arrival orders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from millpond.storage.sqlite.profiles import SQLiteProfileStore as ProfileStore

from .profile_events import alias, event, group, identify

T0 = 1714564800  # 2024-05-01T12:00:00Z


def both_orders(db_dir: Path, events: list[dict[str, Any]], lookup: str) -> dict[str, Any]:
    """Apply ``events`` forwards and backwards into fresh stores; both must agree."""
    results = []
    for name, ordered in (("fwd", events), ("rev", events[::-1])):
        with ProfileStore(db_dir / f"{name}.db") as ps:
            ps.apply_many(ordered)
            results.append(ps.get(lookup))
    assert results[0] == results[1]
    assert results[0] is not None
    return results[0]


# -- last writer wins ----------------------------------------------------------------------


def test_later_update_wins_whatever_the_arrival_order(tmp_path: Path) -> None:
    old = identify("m-old", "u1", traits={"plan": "free"}, timestamp="2024-05-01T12:00:00Z")
    new = identify("m-new", "u1", traits={"plan": "pro"}, timestamp="2024-05-02T12:00:00Z")
    profile = both_orders(tmp_path, [old, new], "u1")
    assert profile["traits"] == {"plan": "pro"}
    assert profile["trait_times"] == {"plan": "2024-05-02T12:00:00.000Z"}


def test_traits_are_resolved_one_by_one(tmp_path: Path) -> None:
    a = identify("m1", "u1", traits={"plan": "free", "email": "a@x"}, timestamp="2024-05-01")
    b = identify("m2", "u1", traits={"plan": "pro"}, timestamp="2024-05-02")
    profile = both_orders(tmp_path, [a, b], "u1")
    assert profile["traits"] == {"plan": "pro", "email": "a@x"}
    assert profile["trait_times"]["email"] == "2024-05-01T00:00:00.000Z"


def test_underscore_timestamp_beats_the_event_timestamp(tmp_path: Path) -> None:
    # Received later and stamped later by the SDK, but the update itself is older.
    backfill = identify(
        "m-b",
        "u1",
        traits={"plan": "free", "_timestamp": T0 - 86400},
        timestamp="2024-06-01T00:00:00Z",
    )
    live = identify("m-l", "u1", traits={"plan": "pro"}, timestamp="2024-05-01T12:00:00Z")
    profile = both_orders(tmp_path, [backfill, live], "u1")
    assert profile["traits"] == {"plan": "pro"}
    assert profile["trait_times"] == {"plan": "2024-05-01T12:00:00.000Z"}


def test_underscore_timestamp_is_not_a_trait(store: ProfileStore) -> None:
    store.apply_many([identify("m1", "u1", traits={"plan": "pro", "_timestamp": T0 + 5})])
    profile = store.get("u1")
    assert profile is not None
    assert profile["traits"] == {"plan": "pro"}
    assert profile["trait_times"] == {"plan": "2024-05-01T12:00:05.000Z"}


@pytest.mark.parametrize(
    "stamp",
    [T0 + 60, float(T0 + 60), str(T0 + 60), "2024-05-01T12:01:00Z", "2024-05-01T14:01:00+02:00"],
)
def test_underscore_timestamp_forms(tmp_path: Path, stamp: object) -> None:
    stamped = identify(
        "m-a", "u1", traits={"plan": "pro", "_timestamp": stamp}, timestamp="2024-01-01T00:00:00Z"
    )
    plain = identify("m-b", "u1", traits={"plan": "free"}, timestamp="2024-05-01T12:00:30Z")
    profile = both_orders(tmp_path, [stamped, plain], "u1")
    assert profile["traits"] == {"plan": "pro"}
    assert profile["trait_times"] == {"plan": "2024-05-01T12:01:00.000Z"}


def test_unparseable_underscore_timestamp_falls_back_to_event_timestamp(tmp_path: Path) -> None:
    junk = identify(
        "m-a",
        "u1",
        traits={"plan": "pro", "_timestamp": "last tuesday"},
        timestamp="2024-05-03T00:00:00Z",
    )
    other = identify("m-b", "u1", traits={"plan": "free", "_timestamp": "2024-05-02T00:00:00Z"})
    profile = both_orders(tmp_path, [junk, other], "u1")
    assert profile["traits"] == {"plan": "pro"}
    assert "_timestamp" not in profile["traits"]
    assert profile["trait_times"] == {"plan": "2024-05-03T00:00:00.000Z"}


def test_ties_go_to_the_greater_message_id(tmp_path: Path) -> None:
    # Same instant written three ways; "m-b" > "m-a" so m-b wins, in either order.
    a = identify("m-a", "u1", traits={"plan": "a", "_timestamp": T0})
    b = identify("m-b", "u1", traits={"plan": "b", "_timestamp": "2024-05-01T12:00:00.000Z"})
    c = identify("m-0", "u1", traits={"plan": "c", "_timestamp": str(T0)})
    profile = both_orders(tmp_path, [a, b, c], "u1")
    assert profile["traits"] == {"plan": "b"}
    assert profile["trait_sources"]["plan"]["messageId"] == "m-b"


def test_object_values_are_replaced_whole(tmp_path: Path) -> None:
    a = identify(
        "m1", "u1", traits={"address": {"city": "Oslo", "zip": "0150"}}, timestamp="2024-05-01"
    )
    b = identify("m2", "u1", traits={"address": {"city": "Bergen"}}, timestamp="2024-05-02")
    assert both_orders(tmp_path, [a, b], "u1")["traits"] == {"address": {"city": "Bergen"}}


# -- null ----------------------------------------------------------------------------------


def test_null_clears_and_older_values_do_not_resurrect(tmp_path: Path) -> None:
    set_old = identify("m1", "u1", traits={"plan": "free", "_timestamp": T0})
    clear = identify("m2", "u1", traits={"plan": None, "_timestamp": T0 + 10})
    set_older = identify("m3", "u1", traits={"plan": "pro", "_timestamp": T0 + 5})
    profile = both_orders(tmp_path, [set_old, clear, set_older], "u1")
    assert profile["traits"] == {}
    assert profile["trait_times"] == {}
    assert profile["trait_sources"] == {}
    assert profile["cleared_traits"] == {"plan": "2024-05-01T12:00:10.000Z"}


def test_a_newer_value_after_a_clear_comes_back(tmp_path: Path) -> None:
    clear = identify("m1", "u1", traits={"plan": None, "_timestamp": T0 + 10})
    newer = identify("m2", "u1", traits={"plan": "pro", "_timestamp": T0 + 20})
    profile = both_orders(tmp_path, [clear, newer], "u1")
    assert profile["traits"] == {"plan": "pro"}
    assert profile["cleared_traits"] == {}


def test_an_older_null_changes_nothing(tmp_path: Path) -> None:
    value = identify("m1", "u1", traits={"plan": "pro", "_timestamp": T0 + 10})
    old_null = identify("m2", "u1", traits={"plan": None, "_timestamp": T0})
    profile = both_orders(tmp_path, [value, old_null], "u1")
    assert profile["traits"] == {"plan": "pro"}
    assert profile["cleared_traits"] == {}


# -- identity ------------------------------------------------------------------------------


def test_identify_joins_user_and_anonymous_id(store: ProfileStore) -> None:
    store.apply_many(
        [
            identify("m1", anonymous_id="a1", traits={"seen": True}, timestamp="2024-05-01"),
            identify("m2", "u1", "a1", traits={"email": "u@x"}, timestamp="2024-05-02"),
        ]
    )
    by_user, by_anon = store.get("u1"), store.get("a1")
    assert by_user == by_anon
    assert by_user is not None
    assert by_user["user_id"] == "u1"
    assert by_user["user_ids"] == ["u1"]
    assert by_user["anonymous_ids"] == ["a1"]
    assert by_user["traits"] == {"seen": True, "email": "u@x"}
    assert store.get(by_user["id"]) == by_user
    assert store.get("nobody") is None
    assert store.get("prf_0000") is None


def test_alias_joins_transitively_in_any_order(tmp_path: Path) -> None:
    events = [
        identify("m1", anonymous_id="a1", traits={"plan": "free"}, timestamp="2024-05-01"),
        alias("m2", "a1", "u1", timestamp="2024-05-02"),
        identify("m3", "u2", "a2", traits={"plan": "pro"}, timestamp="2024-05-03"),
        alias("m4", "u1", "u2", timestamp="2024-05-04"),
    ]
    profile = both_orders(tmp_path, events, "a1")
    assert profile["user_ids"] == ["u1", "u2"]
    assert profile["anonymous_ids"] == ["a1", "a2"]
    assert profile["user_id"] == "u2"  # named by the latest alias
    assert profile["traits"] == {"plan": "pro"}
    with ProfileStore(tmp_path / "fwd.db") as ps:
        assert all(ps.get(i) == profile for i in ("a1", "a2", "u1", "u2", profile["id"]))


def test_merge_re_resolves_each_trait_across_both_profiles(tmp_path: Path) -> None:
    events = [
        identify("m1", "u1", traits={"plan": "free", "_timestamp": T0 + 30, "a": 1}),
        identify("m2", "u2", traits={"plan": "pro", "_timestamp": T0 + 20, "b": 2}),
        identify("m3", "u2", traits={"a": None, "_timestamp": T0 + 40}),
        alias("m4", "u1", "u2"),
    ]
    profile = both_orders(tmp_path, events, "u1")
    assert profile["traits"] == {"plan": "free", "b": 2}
    assert profile["cleared_traits"] == {"a": "2024-05-01T12:00:40.000Z"}


def test_user_id_is_named_by_the_latest_event(tmp_path: Path) -> None:
    renamed = [
        identify("m1", "u-old", timestamp="2024-05-01"),
        alias("m2", "u-old", "u-new", timestamp="2024-05-02"),
    ]
    assert (
        both_orders(tmp_path / "a", mkdir(tmp_path / "a", renamed), "u-old")["user_id"] == "u-new"
    )
    # A later identify with the old id names it again.
    again = [*renamed, identify("m3", "u-old", timestamp="2024-05-03")]
    assert both_orders(tmp_path / "b", mkdir(tmp_path / "b", again), "u-new")["user_id"] == "u-old"
    # Same time: the greater messageId names it.
    tie = [
        identify("m-b", "u-b", timestamp="2024-05-01"),
        identify("m-a", "u-a", timestamp="2024-05-01"),
        alias("m-0", "u-a", "u-b", timestamp="2024-04-01"),
    ]
    assert both_orders(tmp_path / "c", mkdir(tmp_path / "c", tie), "u-a")["user_id"] == "u-b"


def mkdir(path: Path, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    path.mkdir()
    return events


def test_profile_id_is_stable_when_newer_identities_merge_in(store: ProfileStore) -> None:
    store.apply_many([identify("m1", "u1", timestamp="2024-05-01")])
    first = store.get("u1")
    assert first is not None
    store.apply_many(
        [
            identify("m2", anonymous_id="a9", timestamp="2024-05-02"),
            identify("m3", "u9", "a9", timestamp="2024-05-03"),
            alias("m4", "u9", "u1", timestamp="2024-05-04"),
        ]
    )
    merged = store.get("a9")
    assert merged is not None
    assert merged["id"] == first["id"]
    assert store.get(first["id"]) == merged


def test_old_profile_ids_keep_resolving_after_a_merge(store: ProfileStore) -> None:
    store.apply_many([identify("m1", "u1", timestamp="2024-05-02")])
    store.apply_many([identify("m2", "u2", timestamp="2024-05-01")])
    pid1, pid2 = store.get("u1")["id"], store.get("u2")["id"]  # type: ignore[index]
    store.apply_many([alias("m3", "u1", "u2", timestamp="2024-05-03")])
    merged = store.get("u1")
    assert merged is not None
    assert merged["id"] == pid2  # u2 was seen first (in event time)
    assert store.get(pid1) == merged == store.get(pid2)


def test_numeric_ids_are_strings(store: ProfileStore) -> None:
    store.apply_many([event("identify", "m1", userId=42, anonymousId="", traits={"x": 1})])
    profile = store.get("42")
    assert profile is not None
    assert profile["user_id"] == "42"
    assert profile["anonymous_ids"] == []


# -- groups --------------------------------------------------------------------------------


def test_group_membership_and_group_traits(tmp_path: Path) -> None:
    events = [
        group("m1", "g1", "u1", traits={"name": "Acme", "tier": "gold", "_timestamp": T0 + 10}),
        group("m2", "g1", "u1", traits={"name": "Acme Inc", "tier": None, "_timestamp": T0 + 20}),
        group("m3", "g1", "u1", traits={"name": "Old name", "_timestamp": T0}),
        group("m4", "g2", anonymous_id="a1"),
        identify("m5", "u1", "a1", traits={"plan": "pro"}),
    ]
    profile = both_orders(tmp_path, events, "a1")
    assert profile["groups"] == {"g1": {"name": "Acme Inc"}, "g2": {}}
    assert profile["traits"] == {"plan": "pro"}  # group traits are not profile traits


def test_group_and_profile_traits_with_the_same_name_are_separate(store: ProfileStore) -> None:
    store.apply_many(
        [
            identify("m1", "u1", traits={"name": "Ada", "_timestamp": T0}),
            group("m2", "g1", "u1", traits={"name": "Acme", "_timestamp": T0 + 1}),
        ]
    )
    profile = store.get("u1")
    assert profile is not None
    assert profile["traits"] == {"name": "Ada"}
    assert profile["groups"] == {"g1": {"name": "Acme"}}


# -- provenance, idempotence, relevance -----------------------------------------------------


def test_each_trait_remembers_the_event_that_set_it(store: ProfileStore) -> None:
    store.apply_many(
        [
            identify(
                "m1",
                "u1",
                traits={"a": 1, "b": 1},
                timestamp="2024-05-01",
                seq=7,
                source_id="src_web",
            ),
            identify(
                "m2", "u1", traits={"b": 2}, timestamp="2024-05-02", seq=3, source_id="src_csv"
            ),
        ]
    )
    profile = store.get("u1")
    assert profile is not None
    assert profile["trait_sources"] == {
        "a": {"messageId": "m1", "seq": 7, "source_id": "src_web"},
        "b": {"messageId": "m2", "seq": 3, "source_id": "src_csv"},
    }


def test_events_without_seq_or_source(store: ProfileStore) -> None:
    store.apply_many(
        [
            {
                "type": "identify",
                "messageId": "m1",
                "userId": "u1",
                "timestamp": "2024-05-01T00:00:00Z",
                "traits": {"a": 1},
            }
        ]
    )
    profile = store.get("u1")
    assert profile is not None
    assert profile["trait_sources"] == {"a": {"messageId": "m1", "seq": None, "source_id": None}}


def test_reapplying_changes_nothing(store: ProfileStore) -> None:
    events = [
        identify("m1", "u1", "a1", traits={"plan": "pro", "gone": None}),
        alias("m2", "a2", "u1"),
        group("m3", "g1", "u1", traits={"n": 1}),
    ]
    assert store.apply_many(events) == 3
    before = store.get("u1")
    assert store.apply_many(events) == 3  # counted as applied, but no-ops
    assert store.apply_many(events + events[::-1]) == 6
    assert store.get("u1") == before


def test_other_events_are_ignored_and_not_counted(store: ProfileStore) -> None:
    events: list[Any] = [
        event("track", "m1", userId="u1", event="Signed Up", properties={"plan": "pro"}),
        event("page", "m2", userId="u1"),
        identify("m3"),  # no ids at all
        group("m4", "", "u1"),  # no group id
        event("identify", "m5", userId="", anonymousId=None, traits={"a": 1}),
        "not an event",
        identify("m6", "u1", traits={"plan": "pro"}),
    ]
    assert store.apply_many(events) == 1
    profile = store.get("u1")
    assert profile is not None
    assert profile["traits"] == {"plan": "pro"}
    assert store.apply_many([]) == 0


def test_small_internal_batches_give_the_same_result(tmp_path: Path) -> None:
    events = [
        identify("m1", anonymous_id="a1", traits={"x": 1}),
        identify("m2", "u1", "a2", traits={"x": 2, "_timestamp": T0 - 1}),
        alias("m3", "a1", "u1"),
        identify("m4", "u2", "a3", traits={"y": 1}),
        alias("m5", "a3", "u1"),
        group("m6", "g1", anonymous_id="a3", traits={"n": 1}),
    ]
    results = []
    for size in (1, 2, 3, 1000):
        with ProfileStore(tmp_path / f"b{size}.db", batch_size=size) as ps:
            ps.apply_many(events)
            results.append(ps.get("a1"))
    assert results[0] is not None
    assert all(r == results[0] for r in results)
    assert results[0]["anonymous_ids"] == ["a1", "a2", "a3"]
    assert results[0]["user_ids"] == ["u1", "u2"]
