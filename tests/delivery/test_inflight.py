"""OrderedLanes: batches run concurrently, but never before an earlier batch of one of
their users finished; the window behind the oldest unfinished batch is bounded."""

from __future__ import annotations

import asyncio
import random

import pytest

from millpond.delivery.inflight import OrderedLanes


def test_per_user_order_holds_under_random_delays_and_batches_really_overlap():
    rng = random.Random(3)
    started: list[tuple[str, int]] = []
    running: set[str] = set()
    overlaps: list[str] = []
    peak = 0

    async def batch(users: frozenset[str], n: int) -> None:
        nonlocal peak
        for u in users:
            if u in running:
                overlaps.append(u)
            running.add(u)
            started.append((u, n))
        peak = max(peak, len(running))
        await asyncio.sleep(rng.random() * 0.01)
        running.difference_update(users)

    async def main() -> None:
        async with OrderedLanes(8) as lanes:
            for n in range(400):
                users = frozenset(f"u{rng.randrange(12)}" for _ in range(rng.randint(1, 3)))
                await lanes.submit(users, lambda users=users, n=n: batch(users, n))

    asyncio.run(main())
    assert not overlaps
    by_user: dict[str, list[int]] = {}
    for user, n in started:
        by_user.setdefault(user, []).append(n)
    assert all(ns == sorted(ns) for ns in by_user.values())
    assert peak > 3  # several users' batches were in flight at once


def test_a_slow_batch_lets_others_run_ahead_by_at_most_the_window():
    release = asyncio.Event
    started: list[int] = []

    async def main() -> None:
        gate = release()

        async def slow() -> None:
            started.append(0)
            await gate.wait()

        async def fast(n: int) -> None:
            started.append(n)

        async with OrderedLanes(4) as lanes:
            await lanes.submit({"slow"}, slow)

            async def feed() -> None:
                for n in range(1, 20):
                    await lanes.submit({f"u{n}"}, lambda n=n: fast(n))

            feeder = asyncio.create_task(feed())
            await asyncio.sleep(0.05)
            assert started == [0, 1, 2, 3]  # three past the slow one, then it waits
            gate.set()
            await feeder

    asyncio.run(main())
    assert sorted(started) == list(range(20))


def test_batches_behind_a_failed_one_of_the_same_user_never_start():
    ran: list[str] = []

    async def boom() -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("vendor type bug")

    async def later() -> None:
        ran.append("later")

    async def main() -> None:
        async with OrderedLanes(4) as lanes:
            await lanes.submit({"u1"}, boom)
            await lanes.submit({"u1"}, later)

    with pytest.raises(ExceptionGroup):
        asyncio.run(main())
    assert ran == []
