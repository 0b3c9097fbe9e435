"""The scale-out backend's settings (``--log``, ``--state``, ``--role``, ``storage.place``,
``lease_seconds``): validated like every other setting, one line naming the field."""

from __future__ import annotations

import pytest

from millpond.app import ConfigError, load_config

NATS = "nats://10.0.0.1:4222,10.0.0.2:4222"
PG = "postgresql://millpond:pw@10.0.0.4/millpond"


def test_log_and_state_pick_the_cluster_backend():
    config = load_config({"storage.log": NATS, "storage.state": PG, "role": "worker"}, {})
    assert config.storage.clustered and config.role == "worker"
    assert not load_config({}, {}).storage.clustered


def test_the_log_takes_bare_host_ports_after_the_first():
    from millpond.storage import nats_servers

    assert nats_servers("nats://a:4222,b:4223") == ("nats://a:4222", "nats://b:4223")


@pytest.mark.parametrize(("values", "field", "words"), [
    ({"storage.log": "nats://a", "storage.state": PG}, "storage.log", '(not "nats://a")'),
    ({"storage.log": "a:4222,http://b:1", "storage.state": PG}, "storage.log", "http://b:1"),
    ({"storage.log": NATS}, "storage.state", "required with storage.log"),
    ({"storage.state": PG}, "storage.log", "required with storage.state"),
    ({"storage.log": NATS, "storage.state": "mysql://x"}, "storage.state",
     "postgresql://"),
    ({"role": "collector"}, "role", "needs the scale-out backend"),
    ({"role": "boss"}, "role", 'one of "all", "collector", "worker"'),
])
def test_bad_cluster_settings_are_one_line_naming_the_field(values, field, words):
    with pytest.raises(ConfigError) as info:
        load_config(values, {})
    assert info.value.field == field
    assert words in info.value.message and "\n" not in info.value.message


def test_the_cluster_takes_an_archive_in_a_bucket():
    config = load_config({"storage.log": NATS, "storage.state": PG,
                          "storage.archive": "s3://b/p",
                          "storage.archive_endpoint": "http://127.0.0.1:9000",
                          "storage.archive_range": 500}, {})
    assert (config.storage.clustered, config.storage.archive, config.storage.archive_endpoint,
            config.storage.archive_range) == (True, "s3://b/p", "http://127.0.0.1:9000", 500)


def test_the_state_url_is_a_secret_never_echoed():
    with pytest.raises(ConfigError) as info:
        load_config({"storage.log": NATS, "storage.state": "mysql://u:hunter2@x"}, {})
    assert "hunter2" not in info.value.message


def test_place_and_lease_from_the_file(tmp_path):
    path = tmp_path / "millpond.toml"
    path.write_text(f'lease_seconds = 4.5\n[storage]\nlog = "{NATS}"\nstate = "{PG}"\n'
                    'place = "Bad-Name"\n')
    with pytest.raises(ConfigError) as info:
        load_config({}, {}, path)
    assert info.value.field == "storage.place" and "line 5" in info.value.message
    path.write_text(path.read_text().replace("Bad-Name", "eu_1"))
    config = load_config({}, {}, path)
    assert config.storage.place == "eu_1" and config.lease_seconds == 4.5
