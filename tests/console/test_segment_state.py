"""A building segment's badge polls its state (``/segments/{id}/state``) and shows the
progress and the time left; a ready one does not poll."""

from __future__ import annotations

from millpond.console.render import Renderer


def _badge(segment: dict) -> str:
    return Renderer().text("_segment_state.html", s=segment)


def test_a_building_badge_polls_and_shows_progress_a_ready_one_does_not() -> None:
    building = _badge({"id": "seg_1", "state": "building",
                       "progress": {"phase": "scanning", "done": 250_000, "total": 1_000_000,
                                    "unit": "events", "eta_seconds": 7.5}})
    assert 'hx-get="/console/segments/seg_1/state"' in building
    assert 'hx-trigger="every 2s"' in building and 'hx-swap="outerHTML"' in building
    assert "scanning 250,000 / 1,000,000 events, about 7.5 s left" in building
    ready = _badge({"id": "seg_1", "state": "ready"})
    assert "hx-get" not in ready and ">ready<" in ready
    listed = Renderer().text("_segment_state.html", in_list=True,
                             s={"id": "seg_1", "state": "building"})
    assert 'hx-get="/console/segments/seg_1/state?in=list"' in listed


def test_a_segment_waiting_for_the_build_running_now_says_so() -> None:
    waiting = _badge({"id": "seg_2", "state": "building",
                      "progress": {"phase": "waiting", "done": 0, "total": 0,
                                   "unit": "events", "eta_seconds": None}})
    assert "waiting for the build running now" in waiting and "0 / 0" not in waiting
    assert 'hx-trigger="every 2s"' in waiting  # it polls on, to show its own build
