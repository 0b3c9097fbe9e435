"""The source service: validation, new keys, the public shape, and the write-key cache that
changes made by another process reach within a second."""

from __future__ import annotations

import pytest

from millpond.errors import BadRequest, Conflict
from millpond.sources.service import CACHE_SECONDS, SourceService, source_dict
from millpond.storage import StorageConfig, open_storage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "memory"])
def store(request, tmp_path):
    storage = open_storage(StorageConfig(backend=request.param, data_dir=str(tmp_path)))
    yield storage.sources
    storage.close()


def test_create_validates_and_fills_in_keys_and_defaults(store):
    service = SourceService(store)
    web = service.create(" web ")
    track = service.create("crm", kind="track", allowed_origins=["HTTPS://Example.com:443/"])
    assert (web.name, web.kind, web.replayable, web.site_id) == ("web", "pipelines", True, None)
    assert track.replayable is False and len(track.site_id) == 20
    assert track.allowed_origins == ("https://example.com",)
    assert web.id.startswith("src_") and web.write_key != track.write_key
    for bad, field in ((dict(name=""), "name"), (dict(name="x" * 101), "name"),
                       (dict(name="k", kind="nope"), "kind"),
                       (dict(name="o", allowed_origins="https://a.com"), "allowed_origins"),
                       (dict(name="o", allowed_origins=["ftp://a"]), "allowed_origins")):
        with pytest.raises(BadRequest) as refused:
            service.create(**bad)
        assert refused.value.field == field
    with pytest.raises(Conflict):
        service.create("web")
    assert [s.name for s in service.list()] == ["web", "crm"]


def test_public_shape(store):
    service = SourceService(store)
    web = source_dict(service.create("web", allowed_origins=["https://a.com"]))
    track = source_dict(service.create("crm", kind="track"))
    assert list(web) == ["id", "name", "kind", "write_key", "replayable", "created_at",
                         "allowed_origins", "enabled", "retention"]
    assert web["allowed_origins"] == ["https://a.com"] and "site_id" in track


def test_changes_made_here_are_seen_at_once(store):
    service = SourceService(store, clock=Clock())
    source = service.create("web")
    assert service.by_write_key(source.write_key) == source
    rotated = service.rotate_key("web")
    assert service.by_write_key(source.write_key) is None
    assert service.by_write_key(rotated.write_key) == rotated
    disabled = service.update("web", enabled=False, allowed_origins=["https://a.com"])
    assert service.by_write_key(rotated.write_key) == disabled and not disabled.enabled
    assert service.update("web", allowed_origins=None).allowed_origins is None
    service.delete("web")
    assert service.by_write_key(rotated.write_key) is None


def test_changes_made_by_another_process_are_seen_within_a_second(store):
    clock = Clock()
    here, elsewhere = SourceService(store, clock=clock), SourceService(store)
    assert here.by_write_key("nope") is None  # loads the cache
    source = elsewhere.create("web")
    track = elsewhere.create("crm", kind="track")
    clock.now += CACHE_SECONDS / 2
    assert here.by_write_key(source.write_key) is None  # still the cached view
    clock.now += CACHE_SECONDS / 2
    assert here.by_write_key(source.write_key) == source
    assert here.by_site_id(track.site_id) == track
    elsewhere.delete("web")
    clock.now += CACHE_SECONDS
    assert here.by_write_key(source.write_key) is None
    assert CACHE_SECONDS <= 1.0


def test_two_servers_on_one_data_dir_see_each_others_sources(tmp_path):
    one = open_storage(StorageConfig(data_dir=str(tmp_path)))
    two = open_storage(StorageConfig(data_dir=str(tmp_path)))
    try:
        clock = Clock()
        reader = SourceService(two.sources, clock=clock)
        assert reader.by_write_key("x") is None
        created = SourceService(one.sources).create("web")
        clock.now += CACHE_SECONDS
        assert reader.by_write_key(created.write_key) == created
    finally:
        one.close()
        two.close()
