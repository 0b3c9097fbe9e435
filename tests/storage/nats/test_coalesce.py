"""Concurrent calls merged while one runs (the dedupe table's round trips per append)."""

from __future__ import annotations

import asyncio

import pytest

from millpond.storage.nats.coalesce import Coalescer


class Table:
    """Records each call it gets; each call holds until the test releases it."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail = False

    async def __call__(self, items: list[int]) -> set[int]:
        self.calls.append(list(items))
        await self.release.wait()
        if self.fail:
            raise RuntimeError("the table is gone")
        return set(items)


def test_calls_made_while_one_runs_go_together_in_the_next() -> None:
    asyncio.run(_calls_made_while_one_runs_go_together_in_the_next())


async def _calls_made_while_one_runs_go_together_in_the_next() -> None:
    table = Table()
    merged = Coalescer(table)
    first = asyncio.ensure_future(merged([1, 2]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first call is running now
    later = [asyncio.ensure_future(merged([n])) for n in (3, 4, 5)]
    await asyncio.sleep(0)
    table.release.set()
    assert await first == {1, 2}
    results = await asyncio.gather(*later)
    assert table.calls == [[1, 2], [3, 4, 5]]
    assert all(r == {3, 4, 5} for r in results)


def test_every_caller_of_a_failed_call_gets_its_error_and_the_next_call_runs() -> None:
    asyncio.run(_every_caller_of_a_failed_call_gets_its_error_and_the_next_call_runs())


async def _every_caller_of_a_failed_call_gets_its_error_and_the_next_call_runs() -> None:
    table = Table()
    table.fail = True
    merged = Coalescer(table)
    table.release.set()
    calls = [asyncio.ensure_future(merged([n])) for n in (1, 2)]
    for call in calls:
        with pytest.raises(RuntimeError, match="the table is gone"):
            await call
    table.fail = False
    assert await merged([7]) == {7}


def test_a_caller_that_gives_up_does_not_cancel_the_others() -> None:
    asyncio.run(_a_caller_that_gives_up_does_not_cancel_the_others())


async def _a_caller_that_gives_up_does_not_cancel_the_others() -> None:
    table = Table()
    merged = Coalescer(table)
    impatient = asyncio.ensure_future(merged([1]))
    patient = asyncio.ensure_future(merged([2]))
    await asyncio.sleep(0)
    impatient.cancel()
    await asyncio.sleep(0)
    table.release.set()
    assert await patient == {1, 2}
    assert table.calls == [[1, 2]]
