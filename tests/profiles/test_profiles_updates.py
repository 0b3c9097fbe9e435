"""to_update: which events matter to profiles, which ids they join, and their effective time."""

from __future__ import annotations

from millpond.profiles.updates import to_update
from millpond.storage.sqlite.profiles import SQLiteProfileStore as ProfileStore

from .profile_events import alias, event, group, identify

T0 = 1714564800.0


def test_identify_names_user_and_anonymous_id() -> None:
    update = to_update(identify("m1", "u1", "a1", traits={"plan": "pro", "_timestamp": T0}))
    assert update is not None
    assert update.ids == ("u1", "a1")
    assert update.user_id == "u1"
    assert dict(update.traits) == {"plan": "pro"}
    assert update.time == T0
    assert update.message_id == "m1"


def test_alias_names_previous_and_new_id_and_carries_no_traits() -> None:
    update = to_update(alias("m1", "a1", "u1", anonymousId="a1", traits={"_timestamp": T0}))
    assert update is not None
    assert update.ids == ("a1", "u1")
    assert update.user_id == "u1"
    assert not update.traits
    assert update.time == T0  # _timestamp still dates the alias


def test_effective_time_fallbacks() -> None:
    no_ts = event(
        "identify", "m1", userId="u1", timestamp="garbage", received_at="2024-05-01T12:00:00Z"
    )
    assert to_update(no_ts).time == T0  # type: ignore[union-attr]
    nothing = {"type": "identify", "userId": "u1"}
    update = to_update(nothing)
    assert update is not None
    assert (update.time, update.message_id, update.seq, update.source_id) == (0.0, "", None, None)


def test_provenance_is_cleaned() -> None:
    update = to_update(identify("m1", "u1", seq=True, source_id=""))
    assert update is not None
    assert (update.seq, update.source_id) == (None, None)
    update = to_update(identify("m1", "u1", seq=-3))
    assert update is not None and update.seq is None


def test_irrelevant_events() -> None:
    assert to_update(event("track", "m1", userId="u1")) is None
    assert to_update(event("screen", "m1", userId="u1")) is None
    assert to_update(identify("m1")) is None
    assert to_update(group("m1", "", "u1")) is None
    assert to_update(None) is None
    assert to_update(["identify"]) is None


def test_group_with_both_ids_joins_them(store: ProfileStore) -> None:
    store.apply_many([group("m1", "g1", "u1", "a1", traits={"name": "Acme"})])
    assert store.get("a1") == store.get("u1")
    assert store.get("a1")["groups"] == {"g1": {"name": "Acme"}}  # type: ignore[index]
