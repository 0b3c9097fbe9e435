"""The profile follower: applies the profile events of the log whatever lies between them,
gaps in seq included, and saves its position with the profiles."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from millpond.profiles.follower import ProfileFollower
from millpond.storage import StorageConfig, open_storage
from millpond.storage.models import NewEvent


def stored(kind: str, i: int, **fields) -> NewEvent:
    body = {"type": kind, "messageId": f"m{i}", "timestamp": f"2024-05-01T12:00:{i:02d}.000Z",
            "source_id": "src", **fields}
    return NewEvent("src", kind, f"m{i}", None, fields.get("userId"), None, 0, 0,
                    msgspec.json.encode(body))


@pytest.fixture(params=["sqlite", "memory"])
def storage(request, tmp_path):
    opened = open_storage(StorageConfig(backend=request.param, data_dir=str(tmp_path)))
    yield opened
    opened.close()


def remove(storage, seqs: list[int]) -> None:
    """Take events out of the log as retention would (gaps in seq)."""
    if hasattr(storage.log, "forget"):
        storage.log.forget(seqs)
        return
    import sqlite3

    with sqlite3.connect(storage.data_dir / "log.db") as conn:
        conn.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])


def test_profile_events_are_applied_across_gaps_and_other_events(storage):
    events = []
    for i in range(40):
        if i % 4 == 0:
            events.append(stored("identify", i, userId=f"u{i % 3}", traits={"n": i}))
        else:
            events.append(stored("track", i, userId="x", event="E"))
    seqs = storage.log.submit(events).result().seqs
    remove(storage, [s for i, s in enumerate(seqs) if i % 8 == 4 or i in (1, 2, 39)])
    follower = ProfileFollower(storage.log, storage.profiles, chunk=2)

    async def follow() -> list[int]:
        reads = []
        while (read := await follower.catch_up_once()) or not reads:
            reads.append(read)
        return reads

    reads = asyncio.run(follow())
    assert reads[:-1] and all(r == 2 for r in reads[:-1])  # full chunks, then the rest
    applied = [i for i in range(0, 40, 8)]  # identify events that were not removed
    for user in ("u0", "u1", "u2"):
        mine = [i for i in applied if f"u{i % 3}" == user]
        profile = storage.profiles.get(user)
        assert (profile is None) == (not mine)
        if mine:
            assert profile["traits"] == {"n": max(mine)}
    assert storage.profiles.checkpoint() == storage.log.last_seq()


def test_a_restart_resumes_from_the_saved_position(storage):
    storage.log.submit([stored("identify", 1, userId="u1", traits={"a": 1}),
                        stored("track", 2, userId="u1", event="E")]).result()
    asyncio.run(ProfileFollower(storage.log, storage.profiles).catch_up_once())
    assert storage.profiles.checkpoint() == storage.log.last_seq()
    storage.log.submit([stored("identify", 3, userId="u1", traits={"b": 2})]).result()
    again = ProfileFollower(storage.log, storage.profiles)  # a new process
    assert asyncio.run(again.catch_up_once()) == 1
    assert storage.profiles.get("u1")["traits"] == {"a": 1, "b": 2}
