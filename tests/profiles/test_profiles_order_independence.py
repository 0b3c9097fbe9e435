"""Property: the profiles are a function of the *set* of events, not of their arrival.

For any generated set of identify, alias and group calls (small id alphabet so joins happen,
traits with nulls, ``_timestamp`` in every accepted form with many ties, unique random
messageIds), every arrival order and every split into batches gives the same ``get()`` for every
id, and that result equals an independent from-scratch model of the documented rules.
"""

from __future__ import annotations

import hashlib
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millpond.storage.memory.profiles import MemoryProfileStore
from millpond.storage.sqlite.profiles import SQLiteProfileStore

USERS = ["u1", "u2", "u3"]
ANONS = ["a1", "a2", "a3"]
IDS = USERS + ANONS
GROUPS = ["g1", "g2"]
TRAIT_NAMES = ["plan", "email", "score"]
BASE = 1714564800  # 2024-05-01T12:00:00Z
TIES = st.integers(0, 3)  # seconds after BASE: few values, so times tie often

VALUES = st.one_of(
    st.none(), st.integers(0, 2), st.sampled_from(["x", "y"]), st.just({"k": [1, None]})
)


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def stamp_forms(k: int) -> st.SearchStrategy[object]:
    """Every way a sender may write the instant BASE + k as ``_timestamp``."""
    seconds = BASE + k
    return st.sampled_from(
        [
            seconds,
            float(seconds),
            str(seconds),
            iso(seconds),
            datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            datetime.fromtimestamp(seconds + 7200, UTC).strftime("%Y-%m-%dT%H:%M:%S+02:00"),
        ]
    )


@st.composite
def event_sets(draw: st.DrawFn) -> list[tuple[dict[str, Any], int]]:
    """Events paired with the effective time (seconds) the rules must give them."""
    count = draw(st.integers(1, 14))
    message_ids = draw(
        st.lists(
            st.text("abm0", min_size=1, max_size=3), min_size=count, max_size=count, unique=True
        )
    )
    out = []
    for seq, mid in enumerate(message_ids, start=1):
        kind = draw(st.sampled_from(["identify", "identify", "alias", "group"]))
        event_k = draw(TIES)
        event: dict[str, Any] = {
            "type": kind,
            "messageId": mid,
            "timestamp": iso(BASE + event_k),
            "seq": seq,
            "source_id": draw(st.sampled_from(["src_a", "src_b"])),
            "received_at": iso(BASE + 100),
        }
        if kind == "alias":
            event["previousId"] = draw(st.sampled_from(IDS))
            event["userId"] = draw(st.sampled_from(USERS))
            traits: dict[str, Any] = {}
        else:
            user = draw(st.sampled_from([None, *USERS]))
            anon = draw(st.sampled_from([None, *ANONS]))
            if user is None and anon is None:
                anon = ANONS[0]
            if user is not None:
                event["userId"] = user
            if anon is not None:
                event["anonymousId"] = anon
            traits = draw(st.dictionaries(st.sampled_from(TRAIT_NAMES), VALUES, max_size=3))
            if kind == "group":
                event["groupId"] = draw(st.sampled_from(GROUPS))
        effective = event_k
        override = draw(st.one_of(st.none(), st.just("junk"), TIES))
        if override == "junk":
            traits["_timestamp"] = "not a time"
        elif override is not None:
            traits["_timestamp"] = draw(stamp_forms(override))
            effective = override
        if kind != "alias" or traits:
            event["traits"] = traits
        out.append((event, BASE + effective))
    return out


# -- independent model ----------------------------------------------------------------------


def model(events: list[tuple[dict[str, Any], int]]) -> dict[str, dict[str, Any] | None]:
    """Recompute every profile from scratch, straight from the documented rules."""
    parent = {i: i for i in IDS}

    def find(i: str) -> str:
        while parent[i] != i:
            i = parent[i]
        return i

    def named(e: dict[str, Any]) -> list[str]:
        return [e[k] for k in ("previousId", "userId", "anonymousId") if k in e]

    for e, _ in events:
        ids = named(e)
        for other in ids[1:]:
            ra, rb = find(ids[0]), find(other)
            if ra != rb:
                parent[rb] = ra

    mentioned = {i for e, _ in events for i in named(e)}
    result: dict[str, dict[str, Any] | None] = {i: None for i in IDS}
    for root in {find(i) for i in mentioned}:
        members = sorted(i for i in mentioned if find(i) == root)
        mine = [(e, t) for e, t in events if find(named(e)[0]) == root]
        users = sorted({e["userId"] for e, _ in mine if "userId" in e})
        canon = min((t, e["messageId"], i) for e, t in mine for i in named(e))[2]
        uid = max(
            ((t, e["messageId"], e["userId"]) for e, t in mine if "userId" in e), default=None
        )
        winners: dict[tuple[str, str], tuple[int, str, Any, dict[str, Any]]] = {}
        groups: dict[str, dict[str, Any]] = {}
        for e, t in mine:
            scope = ""
            if e["type"] == "group":
                scope = e["groupId"]
                groups.setdefault(scope, {})
            elif e["type"] == "alias":
                continue
            for name, value in e.get("traits", {}).items():
                if name == "_timestamp":
                    continue
                cand = (t, e["messageId"], value, e)
                best = winners.get((scope, name))
                if best is None or cand[:2] > best[:2]:
                    winners[(scope, name)] = cand
        profile: dict[str, Any] = {
            "id": "prf_" + hashlib.blake2b(canon.encode(), digest_size=10).hexdigest(),
            "user_id": None if uid is None else uid[2],
            "user_ids": users,
            "anonymous_ids": [i for i in members if i not in users],
            "traits": {},
            "trait_times": {},
            "trait_sources": {},
            "cleared_traits": {},
            "groups": groups,
        }
        for (scope, name), (t, mid, value, e) in sorted(winners.items()):
            if scope:
                if value is not None:
                    groups[scope][name] = value
            elif value is None:
                profile["cleared_traits"][name] = iso(t)
            else:
                profile["traits"][name] = value
                profile["trait_times"][name] = iso(t)
                profile["trait_sources"][name] = {
                    "messageId": mid,
                    "seq": e["seq"],
                    "source_id": e["source_id"],
                }
        for i in members:
            result[i] = profile
    return result


# -- the property ---------------------------------------------------------------------------


def split(events: list[dict[str, Any]], cuts: list[int]) -> list[list[dict[str, Any]]]:
    bounds = [0, *sorted(cuts), len(events)]
    return [events[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def run(batches: list[list[dict[str, Any]]], batch_size: int,
        memory: bool = False) -> dict[str, Any]:
    """Apply ``batches`` to a fresh store (SQLite, or the memory backend's); every profile."""
    with tempfile.TemporaryDirectory() as tmp:
        ps = MemoryProfileStore(batch_size=batch_size) if memory else \
            SQLiteProfileStore(Path(tmp) / "profiles.db", batch_size=batch_size)
        try:
            for batch in batches:
                ps.apply_many(batch)
            snapshot: dict[str, Any] = {i: ps.get(i) for i in IDS}
            for profile in list(snapshot.values()):
                if profile is not None:
                    snapshot[profile["id"]] = ps.get(profile["id"])
            return snapshot
        finally:
            ps.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated=event_sets(), data=st.data())
def test_any_arrival_order_and_batching_ends_in_the_same_profiles(
    generated: list[tuple[dict[str, Any], int]], data: st.DataObject
) -> None:
    events = [e for e, _ in generated]
    expected = model(generated)
    expected.update({p["id"]: p for p in list(expected.values()) if p is not None})

    first = data.draw(st.permutations(events), label="first order")
    second = data.draw(st.permutations(events), label="second order")
    cuts = data.draw(st.lists(st.integers(0, len(events)), max_size=4), label="cuts")
    runs = {
        "as generated, one batch": run([events], 5000),
        "first order, split at cuts": run(split(first, cuts), 5000),
        "second order, one event per call": run([[e] for e in second], 5000),
        "first order, internal chunks of 2": run([first], 2),
        "second order, then everything again reversed": run([second, second[::-1]], 3),
        "memory backend, first order, split at cuts": run(split(first, cuts), 5000, True),
        "memory backend, second order, chunks of 2": run([second], 2, True),
    }
    reference = runs["as generated, one batch"]
    assert reference == expected
    for label, snapshot in runs.items():
        assert snapshot == reference, label
