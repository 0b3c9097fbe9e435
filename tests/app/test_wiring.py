"""The composition root hands each part its settings: no part reads the environment."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from millpond.app import load_config
from millpond.app.services import Services, build_services
from millpond.collector.public_url import Address
from millpond.collector.validation import normalize
from millpond.storage.models import Segment
from millpond.timeutil import format_ms

DAY = 86_400_000


@pytest.fixture
def mp(tmp_path: Path):
    config = load_config(
        {"storage.data_dir": str(tmp_path / "data"), "public_url": "https://events.example.com"},
        {"MILLPOND_DELIVERY_RETRY_BASE": "0.25", "MILLPOND_DELIVERY_RETRY_CAP": "4",
         "MILLPOND_DELIVERY_TIMEOUT": "3.5", "MILLPOND_LOG_WRITER_MAX_PENDING": "5000",
         "MILLPOND_LOG_WRITER_MAX_GROUP": "700", "MILLPOND_ADMIN_TOKEN": "wiring-token"})
    server = build_services(config)
    yield server
    server.close()


def test_settings_reach_the_parts_that_use_them(mp: Services, monkeypatch) -> None:
    # A variable set after loading changes nothing: the parts hold the config's values.
    monkeypatch.setenv("MILLPOND_DELIVERY_TIMEOUT", "99")
    assert (mp.pumps.policy.base, mp.pumps.policy.cap) == (0.25, 4.0)
    assert mp.pumps.transport.timeout == 3.5
    assert (mp.log._max_pending, mp.log._max_group) == (5000, 700)
    assert mp.public.configured == Address("https", "events.example.com")
    assert (mp.admin_token, mp.token_generated) == ("wiring-token", False)
    assert mp.data_dir.name == "data" and (mp.data_dir / "log.db").exists()


def test_without_a_configured_token_one_is_generated_and_kept(tmp_path: Path) -> None:
    config = load_config({"storage.data_dir": str(tmp_path / "d")}, {})
    first = build_services(config)
    first.close()
    again = build_services(config)
    again.close()
    assert first.token_generated and not again.token_generated
    assert first.admin_token == again.admin_token


def test_retention_tells_the_segment_engine_whose_events_it_removed(mp: Services) -> None:
    """Wired, the retention job's removals reach the engine: a member whose only
    counting event expired leaves the segment."""
    now = int(time.time() * 1000)
    web = mp.sources.create("web", retention="30d")
    old = normalize({"type": "track", "event": "Order Completed", "userId": "ann",
                     "messageId": "o1", "timestamp": format_ms(now - 45 * DAY)},
                    source_id=web.id, received_ms=now - 40 * DAY)

    async def scenario() -> tuple[int, int]:
        await mp.log.append([old])
        mp.segment_engine.ensure_source()
        mp.storage.segments.create(Segment("s1", "buyers", "Buyers",
                                           {"event": "Order Completed"}, created_ms=now))
        await mp.segment_engine.build("s1")
        before = mp.storage.segments.count_members("s1")
        await mp.retention.run_once()
        return before, mp.storage.segments.count_members("s1")

    assert asyncio.run(scenario()) == (1, 0)
