"""The composition root hands each part its settings: no part reads the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from millpond.app import load_config
from millpond.app.services import Services, build_services
from millpond.collector.public_url import Address


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
