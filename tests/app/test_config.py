"""ServerConfig: the schema documents itself, sources combine in order, and every bad
value or unknown name is one line naming the field, the value, its origin and an example."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec
import pytest

from millpond.app import ConfigError, ServerConfig, load_config, resolve
from millpond.app.config import by_env, settings
from millpond.app.render import docs_table, help_text, print_config
from millpond.validation import convert


def write(tmp_path: Path, text: str, name: str = "millpond.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error(flags=None, environ=None, config_file=None) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_config(flags or {}, environ or {}, config_file)
    message = err.value.message
    assert "\n" not in message and "Traceback" not in message
    return err.value


# -- the schema ---------------------------------------------------------------------------


def test_every_setting_is_documented_with_a_valid_example() -> None:
    for setting in settings():
        assert setting.description, setting.key
        assert convert(setting.example, setting.annotation) == setting.example, setting.key


def test_environment_names_are_derived_unique_and_keep_the_old_ones() -> None:
    names = [s.env for s in settings()]
    assert len(names) == len(set(names))
    for setting in settings():
        assert setting.env == "MILLPOND_" + setting.key.replace(".", "_").upper()
    for old in ("MILLPOND_DELIVERY_RETRY_CAP", "MILLPOND_DELIVERY_RETRY_BASE",
                "MILLPOND_DELIVERY_TIMEOUT", "MILLPOND_ADMIN_TOKEN"):
        assert old in by_env()


def test_defaults_are_the_old_defaults() -> None:
    config = load_config({}, {})
    assert (config.host, config.port, config.public_url, config.trust_proxy) == (
        "127.0.0.1", 8787, None, False)
    assert (config.storage.data_dir, config.storage.synchronous) == (".millpond", "FULL")
    assert (config.delivery.retry_base, config.delivery.retry_cap, config.delivery.timeout) == (
        0.5, 30.0, 30.0)
    assert (config.log_writer.max_pending, config.log_writer.max_group) == (200_000, 20_000)


def test_the_structs_refuse_unknown_keys_themselves() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `prot`"):
        msgspec.convert({"prot": 1}, ServerConfig)


# -- precedence ---------------------------------------------------------------------------


def test_file_then_env_then_flag(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 9001\nhost = "0.0.0.0"\n[delivery]\ntimeout = 5\n'
                           "retry_cap = 12\n")
    env = {"MILLPOND_PORT": "9002", "MILLPOND_DELIVERY_TIMEOUT": "7",
           "MILLPOND_CONFIG": str(path)}
    resolved = resolve({"port": "9003"}, env)
    config = resolved.config
    assert (config.port, config.host, config.delivery.timeout, config.delivery.retry_cap) == (
        9003, "0.0.0.0", 7.0, 12.0)
    origins = {key: str(origin) for key, origin in resolved.origins.items()}
    assert origins["port"] == "flag --port"
    assert origins["delivery.timeout"] == "env MILLPOND_DELIVERY_TIMEOUT"
    assert origins["delivery.retry_cap"] == f"{path} line 5"
    assert origins["host"] == f"{path} line 2"
    assert origins["delivery.retry_base"] == "default"
    assert load_config({}, {"MILLPOND_CONFIG": str(path)}).port == 9001
    assert load_config({}, env).port == 9002


def test_config_flag_beats_config_env(tmp_path: Path) -> None:
    one, two = write(tmp_path, "port = 1001\n", "one.toml"), write(tmp_path, "port = 1002\n",
                                                                   "two.toml")
    assert load_config({}, {"MILLPOND_CONFIG": str(one)}, two).port == 1002


def test_text_sources_read_types_and_choices_loosely() -> None:
    config = load_config({"storage.synchronous": "normal", "trust_proxy": True},
                         {"MILLPOND_LOGGING_ACCESS_LOG": "true", "MILLPOND_LOGGING_LEVEL": "DEBUG",
                          "MILLPOND_LOG_WRITER_MAX_GROUP": " 500 ", "MILLPOND_HOST": ""})
    assert config.storage.synchronous == "NORMAL" and config.trust_proxy is True
    assert config.logging.access_log is True and config.logging.level == "debug"
    assert config.log_writer.max_group == 500
    assert config.host == "127.0.0.1"  # an empty variable is unset


def test_a_false_flag_overrides_a_true_file(tmp_path: Path) -> None:
    path = write(tmp_path, "trust_proxy = true\n")
    assert load_config({}, {}, path).trust_proxy is True
    assert load_config({"trust_proxy": False}, {}, path).trust_proxy is False


def test_the_clis_own_variables_are_known() -> None:
    config = load_config({}, {"MILLPOND_URL": "http://x:1", "MILLPOND_ADMIN_TOKEN": "t0ken",
                              "MILLPOND_BENCH_QUICK": "1", "PATH": "/bin",
                              "MILLPONDX": "not ours"})
    assert config.admin_token == "t0ken"


# -- errors -------------------------------------------------------------------------------


def test_bad_type_from_a_flag() -> None:
    assert error({"port": "abc"}).message == (
        "port: expected an integer from 0 to 65535; got abc from flag --port; e.g. --port 8787")


def test_out_of_range_from_the_environment() -> None:
    err = error(environ={"MILLPOND_PORT": "70000"})
    assert err.message == ("port: expected an integer from 0 to 65535; got 70000 from env "
                           "MILLPOND_PORT; e.g. MILLPOND_PORT=8787")
    assert (err.field, err.origin) == ("port", "env MILLPOND_PORT")


def test_bad_type_in_the_file_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '# timeouts\n[delivery]\nretry_base = 1\ntimeout = "soon"\n')
    assert error(config_file=path).message == (
        f'delivery.timeout: expected a number > 0 and <= 3600; got "soon" from {path} line 4; '
        "e.g. [delivery] timeout = 30.0")


def test_numbers_in_the_file_must_be_toml_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = "9001"\n')
    assert 'got "9001" from' in error(config_file=path).message


def test_unknown_file_key_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 9001\n\n[delivery]\nretry_capp = 5\n")
    err = error(config_file=path)
    assert err.message == (
        f"unknown key delivery.retry_capp = 5 in {path} line 4; did you mean "
        "delivery.retry_cap? e.g. [delivery] retry_cap = 30.0")
    assert err.field == "delivery.retry_capp"


def test_a_key_in_the_wrong_section_is_found(tmp_path: Path) -> None:
    path = write(tmp_path, "timeout = 5\n")
    assert "did you mean delivery.timeout?" in error(config_file=path).message


def test_unknown_section_and_section_that_is_not_a_table(tmp_path: Path) -> None:
    assert "unknown key deliveryy.timeout = 5" in error(
        config_file=write(tmp_path, "[deliveryy]\ntimeout = 5\n", "a.toml")).message
    assert error(config_file=write(tmp_path, "delivery = 5\n", "b.toml")).message.startswith(
        "delivery: expected a table of settings; got 5 from")


def test_unknown_env_var_suggests_the_closest() -> None:
    err = error(environ={"MILLPOND_DELIVERY_RETRY_CAPP": "5"})
    assert err.message == (
        "unknown environment variable MILLPOND_DELIVERY_RETRY_CAPP (got 5); did you mean "
        "MILLPOND_DELIVERY_RETRY_CAP? e.g. MILLPOND_DELIVERY_RETRY_CAP=30.0")


def test_env_var_named_after_a_flag_points_to_its_setting() -> None:
    assert "did you mean MILLPOND_STORAGE_DATA_DIR?" in error(
        environ={"MILLPOND_DATA": "/srv"}).message


def test_unknown_env_var_without_a_close_name_lists_the_known_ones() -> None:
    message = error(environ={"MILLPOND_ZZZ": "1", "MILLPOND_QQQ": "2"}).message
    assert message.startswith("unknown environment variable MILLPOND_QQQ (got 2); known "
                              "variables: MILLPOND_ADMIN_TOKEN, MILLPOND_BENCH_QUICK, "
                              "MILLPOND_CONFIG,")
    assert message.endswith("; also unknown: MILLPOND_ZZZ")


def test_bad_public_url() -> None:
    assert error({"public_url": "events.example.com"}).message == (
        "public_url: expected an http(s)://host[:port][/path] URL without query, fragment or "
        "credentials; got events.example.com from flag --public-url; "
        "e.g. --public-url https://events.example.com")
    assert "got \"https://x.example/?a=1\" from env MILLPOND_PUBLIC_URL" in error(
        environ={"MILLPOND_PUBLIC_URL": "https://x.example/?a=1"}).message


def test_unreadable_toml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 9001\nhost 0.0.0.0\n")
    assert error(config_file=path).message == (
        f"{path} line 2: not valid TOML: expected '=' after a key in a key/value pair "
        '(the line reads "host 0.0.0.0"); e.g. host = "0.0.0.0"')


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert error(environ={"MILLPOND_CONFIG": str(missing)}).message == (
        f"config file {missing} (from env MILLPOND_CONFIG) cannot be read: No such file or "
        "directory; e.g. MILLPOND_CONFIG=/etc/millpond/millpond.toml")


def test_fields_that_go_together_blame_the_one_that_was_set(tmp_path: Path) -> None:
    path = write(tmp_path, "[delivery]\nretry_base = 60\n")
    assert error(config_file=path).message == (
        "delivery.retry_base: expected a number <= delivery.retry_cap (30.0 from default); "
        f"got 60.0 from {path} line 2; e.g. [delivery] retry_base = 0.5")
    err = error(environ={"MILLPOND_DELIVERY_RETRY_CAP": "1"}, config_file=path)
    assert err.field == "delivery.retry_cap"
    assert err.message.endswith("e.g. MILLPOND_DELIVERY_RETRY_CAP=60.0")  # an example that fits
    assert "log_writer.max_group: expected an integer <= log_writer.max_pending" in error(
        environ={"MILLPOND_LOG_WRITER_MAX_GROUP": "300000"}).message


SECRET = "s3cr3t-admin-token-value"


@pytest.mark.parametrize("source", ["env", "file", "unknown-env", "unknown-key", "toml"])
def test_secrets_are_never_echoed(tmp_path: Path, source: str) -> None:
    bad = SECRET + " with spaces"
    if source == "env":
        err = error(environ={"MILLPOND_ADMIN_TOKEN": bad})
    elif source == "file":
        err = error(config_file=write(tmp_path, f'admin_token = "{bad}"\n'))
    elif source == "unknown-env":
        err = error(environ={"MILLPOND_ADMIN_TOKN": SECRET})
    elif source == "unknown-key":
        err = error(config_file=write(tmp_path, f'admin_tokn = "{SECRET}"\n'))
    else:
        err = error(config_file=write(tmp_path, f'admin_token = "{SECRET}\n'))
    assert "admin_token" in err.message.lower() or "ADMIN_TOKEN" in err.message
    assert "s3cr3t" not in err.message and "(not shown)" in err.message


# -- showing it ---------------------------------------------------------------------------


def test_print_config_is_toml_annotated_with_origins_and_masks_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, "[delivery]\ntimeout = 5\n")
    resolved = resolve({"port": "9003"}, {"MILLPOND_ADMIN_TOKEN": SECRET}, path)
    text = print_config(resolved)
    assert SECRET not in text
    assert '# admin_token = "••••alue"  # env MILLPOND_ADMIN_TOKEN (secret, masked)' in text
    assert "port = 9003  # flag --port" in text
    assert f"timeout = 5.0  # {path} line 2" in text
    assert "# public_url is not set (default)" in text
    # What it prints reads back as the same configuration (the secret aside).
    assert load_config({}, {}, write(tmp_path, text, "again.toml")) == msgspec.structs.replace(
        resolved.config, admin_token=None)
    assert tomllib.loads(text)["delivery"]["timeout"] == 5.0


def test_docs_table_and_help_cover_every_setting() -> None:
    table = docs_table()
    for setting in settings():
        assert re.search(rf"^\| `{re.escape(setting.key)}` \|", table, re.M), setting.key
        assert f"`{setting.env}`" in table
        assert setting.description in help_text(setting)


def test_only_the_backend_the_server_opens_is_accepted() -> None:
    assert error(environ={"MILLPOND_STORAGE_BACKEND": "memory"}).message == (
        'storage.backend: expected "sqlite" (the only store millpond serve opens so far); '
        "got memory from env MILLPOND_STORAGE_BACKEND; e.g. MILLPOND_STORAGE_BACKEND=sqlite")
