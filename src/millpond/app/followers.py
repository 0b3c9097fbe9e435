"""The profile follower and the segment engine, as a deletion drives them
(:class:`millpond.regulations.job.Followers`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from millpond.profiles.follower import ProfileFollower
from millpond.segments.engine import SegmentEngine


class LogFollowers:
    """Both followers of the server; see the protocol for when a deletion calls each."""

    def __init__(self, profiles: ProfileFollower, segments: SegmentEngine) -> None:
        self.profiles = profiles
        self.segments = segments

    async def catch_up(self) -> None:
        while await self.profiles.catch_up_once() >= self.profiles.chunk:
            pass

    def withhold(self, ids: Sequence[str]) -> None:
        self.segments.withhold(ids)

    async def settle(self, owners: Mapping[str, bool] | None) -> None:
        """Why the owners rather than reading the log again: remaking the segment engine's
        running state reads the whole log and every stored row while holding its lock
        (8.7 s at a million events and half a million rows, with no live update in any
        segment meanwhile; the owners' way held it 3 ms), and re-evaluates nobody, so
        another user whose event went with the person's anonymous id kept a membership
        only that event gave them."""
        await self.catch_up()  # the people are resolved through their profiles
        if owners is None:
            self.segments.invalidate()
        else:
            await self.segments.events_removed(owners)
        while await self.segments.catch_up_once() >= self.segments.chunk:
            pass

    async def rows_erased(self, ids: Sequence[str]) -> None:
        await self.segments.rows_erased(ids)

    def release(self, ids: Sequence[str]) -> None:
        self.segments.release(ids)
