"""Building the :class:`~millpond.app.config.ServerConfig` from defaults, file, env and flags.

Precedence, lowest first: the defaults declared on the fields, ``millpond.toml`` (its
path from ``--config FILE`` or ``MILLPOND_CONFIG``), ``MILLPOND_*`` environment
variables, command-line flags. The nearer a source is to the one command being run,
the more it says about this run: a flag beats the environment that a service manager
set for every run, which beats the file shared by every host.

Why each value is validated where it came from, not only once at the end: the message
can then say where the bad value is (``flag --port``, ``env MILLPOND_PORT``,
``millpond.toml line 7``) and show the correct example in that source's own syntax
(``--port 8787``, ``MILLPOND_PORT=8787``, ``port = 8787``). Environment variables and
flags are text, so numbers and booleans are read from text there ("8787", "true");
in the file they must have their TOML type. An empty environment variable counts as
unset, as shells write ``MILLPOND_X= millpond serve`` to unset one for a run.

Unknown names are refused rather than ignored, with the closest known names: a typo
that silently keeps the default is the "why is my setting ignored?" this exists to
end. Secrets are never echoed, not even in the message about their own bad value.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from millpond.app.config import (
    ENV_CONFIG,
    ENV_PREFIX,
    OTHER_ENV,
    ConfigError,
    ServerConfig,
    Setting,
    by_env,
    by_key,
    sections,
    settings,
)
from millpond.collector.public_url import BadPublicURL, parse_public_url
from millpond.storage import nats_servers
from millpond.validation import Invalid, convert, show, suggest

#: Backends the composition root can open; every StorageConfig backend once it opens
#: storage through :func:`millpond.storage.open_storage` (the storage seam of #12).
SERVED_BACKENDS = ("sqlite",)
_PG_URL = re.compile(r"^postgres(ql)?://\S*$")
_PLACE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "KEY")
_PLAIN = re.compile(r"[\w.:/@+,-]+")
_TOML_AT = re.compile(r"^(?P<what>.*?) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")
_TOML_HEADER = re.compile(r"^\s*\[\s*(?P<key>[^\[\]]+?)\s*\]\s*(#.*)?$")
_TOML_KEY = re.compile(
    r"""^\s*(?P<key>[A-Za-z0-9_\-]+(\s*\.\s*[A-Za-z0-9_\-]+)*|"[^"]*"|'[^']*')\s*=""")


@dataclass(frozen=True)
class Origin:
    """Where a value came from, as messages and ``--print-config`` name it."""

    kind: Literal["default", "file", "env", "flag"]
    #: The environment variable, the flag, or the key in the file.
    name: str = ""
    file: str = ""
    line: int | None = None

    def __str__(self) -> str:
        if self.kind == "file":
            return f"{self.file} line {self.line}" if self.line else f"{self.file} ({self.name})"
        return self.kind if self.kind == "default" else f"{self.kind} {self.name}"

    def example(self, setting: Setting, value: Any = None) -> str:
        """A correct value for ``setting`` (its own example unless ``value`` is given),
        written the way this source writes it."""
        value = setting.example if value is None else value
        if self.kind == "env":
            return f"{setting.env}={_text(value)}"
        if self.kind == "flag" and setting.flag:
            if setting.is_bool:
                return setting.flag if value else "--no-" + setting.flag[2:]
            return f"{setting.flag} {_text(value)}"
        return toml_line(setting, value)


@dataclass(frozen=True)
class Resolved:
    """The configuration and where each of its settings came from (by dotted key)."""

    config: ServerConfig
    origins: dict[str, Origin]
    config_file: str | None = None


def load_config(flags: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None,
                config_file: str | Path | None = None) -> ServerConfig:
    """The validated configuration; raises :class:`ConfigError` (one line for people).

    ``flags`` maps dotted keys (``port``, ``storage.data_dir``) to what the command
    line gave, None meaning not given; ``environ`` defaults to ``os.environ``;
    ``config_file`` is ``--config`` (else ``MILLPOND_CONFIG`` names the file)."""
    return resolve(flags, environ, config_file).config


def resolve(flags: Mapping[str, Any] | None = None,
            environ: Mapping[str, str] | None = None,
            config_file: str | Path | None = None) -> Resolved:
    """:func:`load_config`, also saying where each value came from (``--print-config``)."""
    environ = os.environ if environ is None else environ
    known = by_key()
    values: dict[str, tuple[Any, Origin]] = {
        s.key: (s.default, Origin("default")) for s in settings()}

    env = read_env(environ)
    path, path_origin = None, None
    if config_file:
        path, path_origin = str(config_file), Origin("flag", "--config")
    elif environ.get(ENV_CONFIG):
        path, path_origin = environ[ENV_CONFIG], Origin("env", ENV_CONFIG)
    if path is not None and path_origin is not None:
        for key, (raw, origin) in read_file(path, path_origin).items():
            values[key] = (_value(known[key], raw, origin, strict=True), origin)
    for key, (raw, origin) in env.items():
        values[key] = (_value(known[key], raw, origin, strict=False), origin)
    for key, raw in (flags or {}).items():
        if raw is None:
            continue
        if key not in known:
            raise ConfigError(f"unknown setting {key} given as a flag", field=key)
        origin = Origin("flag", _flag_name(known[key], raw))
        values[key] = (_value(known[key], raw, origin, strict=False), origin)

    config = _build(values)
    _check(config, values)
    return Resolved(config, {key: origin for key, (_, origin) in values.items()}, path)


# -- sources ---------------------------------------------------------------------------


def read_env(environ: Mapping[str, str]) -> dict[str, tuple[str, Origin]]:
    """Settings given as ``MILLPOND_*`` variables, by dotted key; unknown names refused."""
    names = by_env()
    unknown = sorted(n for n, v in environ.items()
                     if n.startswith(ENV_PREFIX) and v != "" and n not in names
                     and n not in OTHER_ENV)
    if unknown:
        raise _unknown_env(unknown, environ)
    return {names[n].key: (v, Origin("env", n)) for n, v in environ.items()
            if n in names and v != ""}


def read_file(path: str, origin: Origin) -> dict[str, tuple[Any, Origin]]:
    """Settings in the TOML file at ``path``, by dotted key; unknown keys refused."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"config file {path} (from {origin}) cannot be read: {why}; "
                          f"e.g. {origin.name}{'=' if origin.kind == 'env' else ' '}"
                          "/etc/millpond/millpond.toml", field="config", origin=str(origin)
                          ) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _bad_toml(path, text, str(exc)) from None
    lines = key_lines(text)
    out: dict[str, tuple[Any, Origin]] = {}
    known, parts = by_key(), sections()
    for name, value in document.items():
        if name in parts and isinstance(value, dict):
            items = [(f"{name}.{k}", v) for k, v in value.items()]
        elif name in parts:
            where = Origin("file", name, path, _line(lines, name))
            first = next(s for s in settings() if s.path[0] == name)
            raise ConfigError(f"{name}: expected a table of settings; got "
                              f"{toml_value(value)} from {where}; "
                              f"e.g. {toml_line(first, first.example)}",
                              field=name, origin=str(where))
        elif name not in known and isinstance(value, dict) and value:
            # An unknown table: its keys, so "deliveryy.timeout" can be told "delivery.timeout".
            items = [(f"{name}.{k}", v) for k, v in value.items()]
        else:
            items = [(name, value)]
        for key, item in items:
            where = Origin("file", key, path, _line(lines, key))
            if key not in known:
                raise _unknown_key(key, item, where)
            out[key] = (item, where)
    return out


def key_lines(text: str) -> dict[str, int]:
    """The line each dotted key (and table) is first written on: for messages only, so a
    key this simple scan cannot place is reported by name instead."""
    lines: dict[str, int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        if m := _TOML_HEADER.match(line):
            table = _split_key(m["key"])
            lines.setdefault(".".join(table), number)
        elif m := _TOML_KEY.match(line):
            lines.setdefault(".".join((*table, *_split_key(m["key"]))), number)
    return lines


def _split_key(key: str) -> tuple[str, ...]:
    if key[:1] in "\"'":
        return (key[1:-1],)
    return tuple(part.strip().strip("\"'") for part in key.split("."))


def _line(lines: Mapping[str, int], key: str) -> int | None:
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        if (line := lines.get(".".join(parts[:n]))) is not None:
            return line
    return None


# -- values ----------------------------------------------------------------------------


def _value(setting: Setting, raw: Any, origin: Origin, *, strict: bool) -> Any:
    """``raw`` converted to the setting's type, or a :class:`ConfigError` naming ``origin``."""
    value = raw
    if isinstance(value, str) and setting.choices and value not in setting.choices:
        same = [c for c in setting.choices if c.casefold() == value.strip().casefold()]
        value = same[0] if len(same) == 1 else value
    if isinstance(value, str) and not strict and setting.base is not str:
        value = value.strip()
    try:
        return convert(value, setting.annotation, strict=strict)
    except Invalid:
        raise invalid(setting, raw, origin) from None


def invalid(setting: Setting, raw: Any, origin: Origin, expected: str = "", *,
            example: Any = None) -> ConfigError:
    """The one-line error for a bad value of ``setting``."""
    return ConfigError(
        f"{setting.key}: expected {expected or setting.expected}; "
        f"got {_shown(setting, raw, origin)} from {origin}; "
        f"e.g. {origin.example(setting, example)}", field=setting.key, origin=str(origin))


def _build(values: Mapping[str, tuple[Any, Origin]]) -> ServerConfig:
    tree: dict[str, Any] = {}
    for key, (value, _) in values.items():
        if value is None:
            continue
        *parents, name = key.split(".")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[name] = value
    try:
        return convert(tree, ServerConfig)
    except Invalid as exc:  # each value fits its field; this would be a schema mistake
        key = exc.problem.field
        origin = values[key][1] if key in values else Origin("default")
        raise ConfigError(f"{exc.message} (from {origin})", field=key,
                          origin=str(origin)) from None


def _check(config: ServerConfig, values: Mapping[str, tuple[Any, Origin]]) -> None:
    """Checks beyond one field's type: the public URL's shape, fields that go together."""
    known = by_key()
    if config.public_url is not None:
        try:
            parse_public_url(config.public_url)
        except BadPublicURL:
            raise invalid(known["public_url"], *values["public_url"]) from None
    if config.storage.backend not in SERVED_BACKENDS:
        raise invalid(known["storage.backend"], *values["storage.backend"],
                      expected=" or ".join(f'"{b}"' for b in SERVED_BACKENDS)
                      + " (the only store millpond serve opens so far)", example="sqlite")
    _cluster(config, values)
    _ordered(values, "delivery.retry_base", "delivery.retry_cap")
    _ordered(values, "log_writer.max_group", "log_writer.max_pending")


def _cluster(config: ServerConfig, values: Mapping[str, tuple[Any, Origin]]) -> None:
    """The scale-out backend's settings: well-formed, and the log and state together."""
    known, storage = by_key(), config.storage
    if storage.log:
        try:
            nats_servers(storage.log)
        except ValueError as exc:
            raise invalid(known["storage.log"], *values["storage.log"],
                          f"nats://host:port[,host:port...] (not {show(str(exc))})") from None
    if storage.state and not _PG_URL.match(storage.state):
        raise invalid(known["storage.state"], *values["storage.state"])
    if not _PLACE.fullmatch(storage.place):
        raise invalid(known["storage.place"], *values["storage.place"])
    for given, missing in (("storage.log", "storage.state"), ("storage.state", "storage.log")):
        if values[given][0] and not values[missing][0]:
            setting = known[missing]
            raise ConfigError(
                f"{missing}: required with {given} (from {values[given][1]}): the scale-out "
                f"backend needs both; e.g. {values[given][1].example(setting)}",
                field=missing, origin=str(values[given][1]))
    if config.role != "all" and not storage.clustered:
        raise ConfigError(
            f"role: {config.role} (from {values['role'][1]}) needs the scale-out backend "
            "(storage.log and storage.state): the embedded store is one process that "
            f"does everything; e.g. {values['role'][1].example(known['role'], 'all')}",
            field="role", origin=str(values["role"][1]))


def _ordered(values: Mapping[str, tuple[Any, Origin]], low: str, high: str) -> None:
    """Require ``low <= high``; blame the one the user set (the higher one if both), with
    an example that fits the other's value."""
    (low_value, low_origin), (high_value, high_origin) = values[low], values[high]
    if low_value <= high_value:
        return
    known = by_key()
    if high_origin.kind != "default" or low_origin.kind == "default":
        setting, value, origin = known[high], high_value, high_origin
        relation, other = f">= {low}", f"{show(low_value)} from {low_origin}"
        example = max(setting.example, low_value)
    else:
        setting, value, origin = known[low], low_value, low_origin
        relation, other = f"<= {high}", f"{show(high_value)} from {high_origin}"
        example = min(setting.example, high_value)
    noun = setting.expected.split(" ", 2)
    raise invalid(setting, value, origin, f"{' '.join(noun[:2])} {relation} ({other})",
                  example=example)


# -- messages --------------------------------------------------------------------------


def _unknown_env(names: list[str], environ: Mapping[str, str]) -> ConfigError:
    name, env_names = names[0], [*by_env(), *OTHER_ENV]
    # A variable named after a flag (MILLPOND_DATA for --data) means that flag's setting.
    as_flag = [s.env for s in settings()
               if s.flag and ENV_PREFIX + s.flag[2:].upper().replace("-", "_") == name]
    near = as_flag or suggest(name, env_names, sep="_", prefix=ENV_PREFIX)
    setting = by_env().get(near[0]) if near else None
    secret = any(w in name for w in _SECRET_WORDS) or (setting is not None and setting.secret)
    value = "(not shown)" if secret else _text(environ[name])
    parts = [f"unknown environment variable {name} (got {value})"]
    if setting is not None:
        parts.append(f"did you mean {' or '.join(near)}? "
                     f"e.g. {Origin('env', setting.env).example(setting)}")
    elif near:
        parts.append(f"did you mean {' or '.join(near)}?")
    else:
        parts.append(f"known variables: {', '.join(sorted(env_names))}")
    if len(names) > 1:
        parts.append(f"also unknown: {', '.join(names[1:])}")
    return ConfigError("; ".join(parts), field=name, origin=f"env {name}")


def _unknown_key(key: str, value: Any, where: Origin) -> ConfigError:
    known = by_key()
    near = suggest(key, list(known))
    setting = known[near[0]] if near else None
    secret = setting is not None and setting.secret
    shown = "(not shown)" if secret else toml_value(value)
    hint = (f"did you mean {' or '.join(near)}? e.g. {toml_line(setting, setting.example)}"
            if setting else f"known keys: {', '.join(known)}")
    return ConfigError(f"unknown key {key} = {shown} in {where}; {hint}", field=key,
                       origin=str(where))


def _bad_toml(path: str, text: str, message: str) -> ConfigError:
    what, line = message, None
    if m := _TOML_AT.match(message):
        what, line = m["what"], int(m["line"])
    lines = text.splitlines()
    source = lines[line - 1].strip() if line and line <= len(lines) else ""
    secret = any(s.secret and s.path[-1] in source for s in settings()) or any(
        w in source.upper() for w in _SECRET_WORDS)
    quoted = f" (the line reads {'(not shown)' if secret else show(source)})" if source else ""
    where = f"{path} line {line}" if line else path
    setting = next((s for s in settings() if source.startswith(s.path[-1])), None) \
        or by_key()["port"]
    return ConfigError(f"{where}: not valid TOML: {what[:1].lower() + what[1:]}{quoted}; "
                       f"e.g. {toml_line(setting, setting.example)}", field="config",
                       origin=where)


def _flag_name(setting: Setting, raw: Any) -> str:
    flag = setting.flag or "--" + setting.key.replace(".", "-").replace("_", "-")
    return "--no-" + flag[2:] if setting.is_bool and raw is False else flag


def _shown(setting: Setting, raw: Any, origin: Origin) -> str:
    if setting.secret:
        return "(not shown)"
    return _text(raw) if origin.kind in ("env", "flag") else toml_value(raw)


def _text(value: Any) -> str:
    """A value as it is typed on a command line or in an environment variable."""
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value)
    return text if _PLAIN.fullmatch(text) else show(text)


def toml_value(value: Any) -> str:
    """A value as TOML writes it (tables and arrays inline)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float | str):
        return show(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return show(str(value))


def toml_line(setting: Setting, value: Any) -> str:
    """``port = 8787``, or ``[delivery] timeout = 30.0`` for a setting in a section."""
    line = f"{setting.path[-1]} = {toml_value(value)}"
    return f"[{'.'.join(setting.path[:-1])}] {line}" if len(setting.path) > 1 else line


