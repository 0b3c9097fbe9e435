"""The stream the log opens: created with millpond's settings, or refused, naming the
setting, when someone made it by hand with others."""

from __future__ import annotations

import asyncio

import msgspec
import nats
import pytest
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from millpond.storage.nats import LogSettings, StreamMisconfigured, open_log
from millpond.storage.nats.stream import stream_config


async def stream_info(settings: LogSettings) -> StreamConfig:
    nc = await nats.connect(list(settings.servers))
    try:
        return (await nc.jetstream().stream_info(settings.stream)).config
    finally:
        await nc.close()


async def create_by_hand(settings: LogSettings, **changes) -> None:
    nc = await nats.connect(list(settings.servers))
    try:
        config = stream_config(settings)
        for key, value in changes.items():
            setattr(config, key, value)
        await nc.jetstream().add_stream(config)
    finally:
        await nc.close()


def test_the_log_creates_its_stream_replicated_on_file_refusing_when_full(settings):
    open_log(settings).close()
    config = asyncio.run(stream_info(settings))
    assert config.num_replicas == 3 and config.storage == StorageType.FILE
    assert config.discard == DiscardPolicy.NEW and config.max_msg_size == 1 << 20
    assert config.subjects == [f"{settings.subject}.>"] and config.allow_direct
    open_log(settings).close()  # and opens it again as it is


@pytest.mark.parametrize(("changes", "named"), [
    ({"discard": DiscardPolicy.OLD}, "discard='old' (needs 'new'"),
    ({"num_replicas": 1}, "num_replicas=1 (needs 3"),
    ({"storage": StorageType.MEMORY}, "storage='memory' (needs 'file'"),
    ({"max_msg_size": -1}, "max_msg_size=-1 (needs 1048576"),
    ({"max_age": 3600.0}, "max_age=3600.0 (needs 0"),
])
def test_a_stream_made_by_hand_with_a_wrong_setting_is_refused_naming_it(settings, changes,
                                                                         named):
    asyncio.run(create_by_hand(settings, **changes))
    with pytest.raises(StreamMisconfigured) as refused:
        open_log(settings)
    assert named in refused.value.message and settings.stream in refused.value.message
    assert refused.value.field == next(iter(changes))
    # nothing was changed: the stream keeps the hand-made setting
    key, value = next(iter(changes.items()))
    assert getattr(asyncio.run(stream_info(settings)), key) == value


def test_every_setting_at_fault_is_named(settings):
    asyncio.run(create_by_hand(settings, discard=DiscardPolicy.OLD, num_replicas=1))
    with pytest.raises(StreamMisconfigured) as refused:
        open_log(settings)
    assert "num_replicas=1" in refused.value.message
    assert "discard='old'" in refused.value.message


def test_nats_unreachable_at_open_is_one_clear_error():
    from millpond.devcluster.ports import free_ports
    from millpond.storage.contracts import StorageUnavailable

    port = free_ports(1)[0]
    settings = LogSettings(servers=(f"nats://127.0.0.1:{port}",), connect_timeout=1)
    with pytest.raises(StorageUnavailable) as refused:
        open_log(settings)
    assert f"cannot reach NATS at nats://127.0.0.1:{port}" in str(refused.value)


def test_settings_reject_unknown_keys():
    with pytest.raises(msgspec.ValidationError, match="replica"):
        msgspec.convert({"servers": ["nats://x:4222"], "replica": 3}, LogSettings)


def test_an_event_over_max_msg_size_refuses_the_append_and_stores_nothing(settings):
    from millpond.errors import TooLarge
    from millpond.storage.models import NewEvent
    from tests.storage.helpers import ev

    log = open_log(settings)
    try:
        fits = ev("fits")
        big = NewEvent("src_a", "track", "big", None, None, None, 1, 1,
                       b'{"x":"' + b"a" * settings.max_msg_size + b'"}')
        with pytest.raises(TooLarge, match="over the log's max_msg_size"):
            log.submit([fits, big]).result(10)
        assert log.last_seq() == 0 and asyncio.run(log.read(0, 10)) == []
        assert log.submit([fits]).result(10).seqs == [1]
    finally:
        log.close()
