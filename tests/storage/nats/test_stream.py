"""The stream the log opens: created with millpond's settings, or refused, naming the
setting, when someone made it by hand with others."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import msgspec
import nats
import pytest
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from millpond.devcluster.nats import NatsCluster, NatsNode, find_nats_server
from millpond.devcluster.ports import free_ports
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



async def ensure_replicas(servers: list[str], settings: LogSettings, wait: float,
                          meanwhile: Callable[[], None] | None = None,
                          after: float = 1.5) -> int:
    """``ensure_stream`` for ``settings``, with ``meanwhile`` run in a thread ``after``
    seconds in."""
    from millpond.storage.nats.stream import ensure_stream

    nc = await nats.connect(servers)
    try:
        async def later() -> None:
            await asyncio.sleep(after)
            if meanwhile is not None:
                await asyncio.to_thread(meanwhile)
        started = asyncio.create_task(later())
        seq = await ensure_stream(nc.jetstream(), settings, placement_wait=wait)
        await started
        return seq
    finally:
        await nc.close()


@pytest.mark.slow
def test_a_stream_is_created_once_enough_servers_for_its_replicas_are_up(tmp_path, caplog):
    """JetStream refuses to place a stream on more servers than it has up ("no suitable
    peers for placement", as while a cluster starts or a node restarts): the log retries
    and opens once a fourth server joins."""
    caplog.set_level("WARNING", logger="millpond.storage.nats")
    cluster = NatsCluster(root=tmp_path).start()
    fourth = NatsNode("n4", *free_ports(3), root=tmp_path / "n4")
    try:
        fourth.root.mkdir()
        routes = [n.cluster_port for n in cluster.nodes] + [fourth.cluster_port]
        (fourth.root / "nats.conf").write_text(fourth.config(routes, cluster.name))
        settings = LogSettings(servers=tuple(cluster.urls), stream="FOUR", subject="four",
                               replicas=4)
        assert asyncio.run(ensure_replicas(
            cluster.urls, settings, 30.0, lambda: fourth.start(find_nats_server()))) == 0
        assert asyncio.run(stream_info(settings)).num_replicas == 4
    finally:
        fourth.stop()
        cluster.stop()
    assert "stream FOUR: cannot place 4 replicas yet" in caplog.text


@pytest.mark.slow
def test_a_stream_that_cannot_be_placed_is_one_clear_error(dev_cluster, settings):
    from millpond.storage.contracts import StorageUnavailable

    settings = msgspec.structs.replace(settings, replicas=4)
    with pytest.raises(StorageUnavailable) as refused:
        asyncio.run(ensure_replicas(list(settings.servers), settings, 1.0))
    assert (f"NATS cannot place stream {settings.stream} on 4 servers after 1 s "
            "(no suitable peers for placement)") in str(refused.value)


@pytest.mark.slow
def test_the_stream_opens_once_the_cluster_has_a_quorum_again(tmp_path, caplog):
    """With two of three servers stopped, JetStream first holds them for offline ("no
    suitable peers"), then loses its meta leader (its API answers 503, or nothing): the
    log retries through both and opens once they are back 8 s later, as when millpond
    starts beside a cluster that is still starting. (Which of the two it meets depends
    on how fast the leader steps down: on a busy machine, only the first.)"""
    caplog.set_level("WARNING", logger="millpond.storage.nats")
    cluster = NatsCluster(root=tmp_path).start()
    try:
        up, *down = cluster.nodes
        for node in down:
            node.stop()
        settings = LogSettings(servers=(up.url,), stream="QUORUM", subject="quorum")

        def restart() -> None:
            for node in down:
                cluster.restart(node.name)

        assert asyncio.run(ensure_replicas([up.url], settings, 40.0, restart, 8.0)) == 0
        assert asyncio.run(stream_info(settings)).num_replicas == 3
    finally:
        cluster.stop()
    assert "stream QUORUM: " in caplog.text and "; retrying" in caplog.text


@pytest.fixture
def lone_nats_server(tmp_path) -> Iterator[str]:
    """One nats-server with JetStream and no cluster; its URL."""
    port = free_ports(1)[0]
    proc = subprocess.Popen([str(find_nats_server()), "-js", "-sd", str(tmp_path / "js"),
                             "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            assert time.monotonic() < deadline and proc.poll() is None, "no nats-server"
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)


def test_a_stream_the_server_refuses_is_one_clear_error(lone_nats_server):
    from millpond.storage.contracts import StorageUnavailable

    settings = LogSettings(servers=(lone_nats_server,), stream="LONE", subject="lone")
    with pytest.raises(StorageUnavailable) as refused:
        open_log(settings)
    assert str(refused.value) == ("NATS refused stream LONE (3 replicas): replicas > 1 not "
                                  "supported in non-clustered mode")
    lone = open_log(msgspec.structs.replace(settings, replicas=1))  # what the error asks
    lone.close()
