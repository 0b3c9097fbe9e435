"""The server's configuration: one typed tree, every field documented where it is declared.

Why one tree of msgspec Structs instead of constructor arguments and environment
variables read where they are used: a setting then has one name, one type, one default
and one description, checked before anything starts. A typo is an error naming the
closest setting (``forbid_unknown_fields``), a bad value an error naming the field, the
value, where it came from and a correct example, and the docs table, the ``--help``
text and ``millpond serve --print-config`` are generated from the same declarations
(Vector's rule: the field comments are the docs).

Each field carries ``Meta(description=..., examples=[...])`` and, in ``extra``, its
command-line ``flag`` (only the settings people change per run have one) and its
``metavar``, ``secret``
(never shown) and ``expected`` (what fits, in words, when the constraint reads badly).
Its environment variable is derived from its path: ``delivery.retry_cap`` is
``MILLPOND_DELIVERY_RETRY_CAP``. How values from defaults, ``millpond.toml``, the
environment and flags are combined is :mod:`millpond.app.loading`'s job.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from millpond.storage import StorageConfig
from millpond.validation import (
    describe,
    is_struct,
    metadata,
    struct_fields,
    unwrap,
    without_none,
)

ENV_PREFIX = "MILLPOND_"
#: Environment variables that are not settings but belong to millpond: the config
#: file's path, the CLI client's server URL and the benchmarks' quick mode (a shell set
#: up for the CLI or ``make test`` must not stop the server).
ENV_CONFIG = "MILLPOND_CONFIG"
OTHER_ENV = {ENV_CONFIG: "path of the millpond.toml to read",
             "MILLPOND_URL": "the CLI's server URL (not read by the server)",
             "MILLPOND_BENCH_QUICK": "the benchmarks' --quick (not read by the server)"}


class DeliveryConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """How pumps treat vendors that fail or are slow."""

    retry_base: Annotated[float, Meta(
        gt=0, le=3600, examples=[0.5],
        description="Seconds: the longest random wait after a destination's first failed "
                    "attempt; it doubles with each further failure, up to retry_cap.")] = 0.5
    retry_cap: Annotated[float, Meta(
        gt=0, le=86400, examples=[30.0],
        description="Seconds: the longest random wait between two attempts (a vendor's "
                    "Retry-After is honoured up to 10 minutes).")] = 30.0
    timeout: Annotated[float, Meta(
        gt=0, le=3600, examples=[30.0],
        description="Seconds a vendor may take to answer one request before the attempt "
                    "counts as failed and is retried (connecting gets at most 10 s).")] = 30.0
    outcome_retention_days: Annotated[int, Meta(
        ge=1, le=36_500, examples=[30],
        description="Days the events behind each delivery count stay listed (the "
                    "console's funnel links, GET /api/destinations/{ref}/outcomes); the "
                    "counts themselves are kept for ever.")] = 30


class LogWriterConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The event log's writer thread: how much it queues and how much one commit takes."""

    max_pending: Annotated[int, Meta(
        ge=1, le=100_000_000, examples=[200_000],
        description="Events waiting for their commit before the collector answers 503 with "
                    "Retry-After (backpressure instead of unbounded memory).")] = 200_000
    max_group: Annotated[int, Meta(
        ge=1, le=10_000_000, examples=[20_000],
        description="Events one commit (one fsync) takes at most; at most "
                    "max_pending.")] = 20_000


class LoggingConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """What the server writes to stderr."""

    level: Annotated[Literal["debug", "info", "warning", "error"], Meta(
        examples=["info"], extra={"flag": "--log-level"},
        description="Least severe log records written to stderr.")] = "info"
    format: Annotated[Literal["text", "json"], Meta(
        examples=["json"], extra={"flag": "--log-format"},
        description="text: one line per record for people; json: one JSON object per "
                    "line for log shippers.")] = "text"
    access_log: Annotated[bool, Meta(
        examples=[True], extra={"flag": "--access-log"},
        description="Also log one line per HTTP request (in the same format).")] = False


class HttpConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Limits on HTTP connections, so idle or slow clients cannot exhaust the server."""

    head_timeout: Annotated[float, Meta(
        gt=0, le=600, examples=[10.0],
        description="Seconds a connection has to send a complete request head (request "
                    "line and headers) once it opens or starts a request; slower ones are "
                    "closed (checked four times per timeout, so up to half of it late)."
                    )] = 10.0
    idle_timeout: Annotated[float, Meta(
        gt=0, le=3600, examples=[5.0],
        description="Seconds a kept-alive connection may wait between requests before it "
                    "is closed.")] = 5.0
    max_connections: Annotated[int, Meta(
        ge=1, le=1_000_000, examples=[4096],
        description="Open connections at most; beyond it new ones are closed at once (the "
                    "SDKs retry). Keep it under the process's file-descriptor limit.")] = 4096


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Everything ``millpond serve`` can be told; see the module docstring."""

    host: Annotated[str, Meta(
        min_length=1, examples=["0.0.0.0"], extra={"flag": "--host"},
        description="Address to listen on: 127.0.0.1 for this machine only, 0.0.0.0 for "
                    "every interface.")] = "127.0.0.1"
    port: Annotated[int, Meta(
        ge=0, le=65535, examples=[8787], extra={"flag": "--port"},
        description="TCP port to listen on (0: any free port).")] = 8787
    public_url: Annotated[str, Meta(
        examples=["https://events.example.com"], extra={
            "flag": "--public-url", "metavar": "URL",
            "expected": "an http(s)://host[:port][/path] URL without query, fragment or "
                        "credentials"},
        description="How browsers and apps reach this server; SDK settings and snippets "
                    "name it (default: the request's Host).")] | None = None
    trust_proxy: Annotated[bool, Meta(
        examples=[True], extra={"flag": "--trust-proxy"},
        description="Take the public host and scheme from X-Forwarded-Host/-Proto (only "
                    "behind a proxy that sets them).")] = False
    admin_token: Annotated[str, Meta(
        pattern=r"^\S+$", examples=["mpa_8Zq3vT1xR0kLw2"], extra={
            "secret": True, "expected": "a non-empty string without spaces"},
        description="Bearer token of the admin API (default: the one stored in "
                    "DATA_DIR/admin_token, generated on first start).")] | None = None
    metrics_auth: Annotated[bool, Meta(
        examples=[True], extra={"flag": "--metrics-auth"},
        description="Require the admin token (Authorization: Bearer) on /metrics as well; "
                    "off by default, for scrapers on loopback.")] = False
    role: Annotated[Literal["all", "collector", "worker"], Meta(
        examples=["all"], extra={"flag": "--role"},
        description="What this process runs on the scale-out backend: collector (the "
                    "collector, admin API and console; no delivery or background jobs), "
                    "worker (delivery and background jobs: the HTTP port answers too), or "
                    "all (both). The embedded store is always all.")] = "all"
    lease_seconds: Annotated[float, Meta(
        ge=1, le=600, examples=[10.0],
        description="On the scale-out backend, how long a worker's lease on a destination "
                    "(or on the background jobs) lasts without renewal: a killed worker's "
                    "work is taken over this long after its last renewal. Renewed every "
                    "third of it.")] = 10.0
    storage: Annotated[StorageConfig, Meta(
        description="Where events and state are kept.")] = StorageConfig()
    http: Annotated[HttpConfig, Meta(description=HttpConfig.__doc__)] = HttpConfig()
    delivery: Annotated[DeliveryConfig, Meta(
        description=DeliveryConfig.__doc__)] = DeliveryConfig()
    log_writer: Annotated[LogWriterConfig, Meta(
        description=LogWriterConfig.__doc__)] = LogWriterConfig()
    logging: Annotated[LoggingConfig, Meta(
        description=LoggingConfig.__doc__)] = LoggingConfig()


#: Docs of fields declared elsewhere (``StorageConfig`` belongs to :mod:`millpond.storage`,
#: whose contract it is), in the form the fields above carry them.
BORROWED: dict[str, dict[str, Any]] = {
    "storage.backend": {
        "examples": ["sqlite"], "expected": '"sqlite"',
        "description": "sqlite: the embedded store in data_dir (the scale-out backend is "
                       "chosen by storage.log and storage.state)."},
    "storage.data_dir": {
        "examples": ["/var/lib/millpond"], "flag": "--data", "metavar": "DIR",
        "description": "Directory of the embedded stores, the admin token and uploaded "
                       "imports (created if missing)."},
    "storage.archive": {
        "examples": ["s3://bucket/millpond"], "flag": "--archive", "metavar": "DIR|S3URL",
        "description": "Where the log's Parquet archive (sealed seq ranges) goes: a "
                       "directory or s3://bucket/prefix (credentials from AWS_ACCESS_KEY_ID "
                       "/ AWS_SECRET_ACCESS_KEY); empty: the data dir's archive/ (on the "
                       "scale-out backend: no archive tier; give a bucket every process "
                       "reaches)."},
    "storage.archive_endpoint": {
        "examples": ["http://127.0.0.1:9000"], "flag": "--archive-endpoint",
        "description": "The S3-compatible endpoint of an s3:// archive (MinIO, R2, ...); "
                       "empty: AWS."},
    "storage.archive_range": {
        "examples": [1000000], "flag": "--archive-range",
        "description": "Events per archived range: once the log is past a range's end, "
                       "it moves to a Parquet file; 0: no archive tier."},
    "storage.log": {
        "examples": ["nats://10.0.0.1:4222,10.0.0.2:4222,10.0.0.3:4222"], "flag": "--log",
        "metavar": "NATS_URLS", "expected": "nats://host:port[,host:port...]",
        "description": "The scale-out backend's log: the NATS JetStream servers (any of "
                       "the cluster's; comma-separated). Set together with storage.state; "
                       "empty: the embedded store."},
    "storage.state": {
        "examples": ["postgresql://millpond@10.0.0.4/millpond"], "flag": "--state",
        "metavar": "POSTGRES_URL", "secret": True,
        "expected": "a postgresql://user[:password]@host[:port]/database URL",
        "description": "The scale-out backend's state (destinations, cursors, dedupe, "
                       "profiles, segments): a PostgreSQL URL. Set together with "
                       "storage.log."},
    "storage.place": {
        "examples": ["millpond"], "expected": "a lowercase name: a-z, 0-9 and _ (at most "
                                               "40, starting with a letter)",
        "description": "On the scale-out backend, the JetStream stream's name and the "
                       "PostgreSQL schema's: millpond clusters with different places can "
                       "share the engines."},
    "storage.synchronous": {
        "examples": ["NORMAL"], "flag": "--sync",
        "description": "FULL: an acknowledged event survives a power loss; NORMAL: only a "
                       "process crash (faster commits)."},
}


@dataclass(frozen=True)
class Setting:
    """One leaf of :class:`ServerConfig`: what the loader, the CLI and the docs need."""

    path: tuple[str, ...]
    #: The field's type without ``| None`` (an unset optional is simply not given).
    annotation: Any
    default: Any
    description: str
    example: Any
    flag: str | None = None
    #: The flag's placeholder in ``--help`` when the type's own would say too little.
    metavar: str = ""
    secret: bool = False
    expected: str = ""

    @property
    def key(self) -> str:
        """``delivery.retry_cap``: its name in ``millpond.toml`` and in messages."""
        return ".".join(self.path)

    @property
    def env(self) -> str:
        """``MILLPOND_DELIVERY_RETRY_CAP``."""
        return ENV_PREFIX + "_".join(self.path).upper()

    @property
    def base(self) -> Any:
        """The type without ``Annotated`` (``int``, ``bool``, a ``Literal``...)."""
        return unwrap(self.annotation)[0]

    @property
    def is_bool(self) -> bool:
        return self.base is bool

    @property
    def choices(self) -> tuple[str, ...]:
        """The allowed strings of a ``Literal`` field, else ()."""
        return typing.get_args(self.base) if typing.get_origin(self.base) is Literal else ()


class ConfigError(ValueError):
    """The configuration cannot be used; the message is one line, meant for people as is.

    ``field`` is the setting's dotted key (or the unknown key or variable), ``origin``
    where the value came from (``env MILLPOND_PORT``, ``flag --port``,
    ``millpond.toml line 7``)."""

    def __init__(self, message: str, *, field: str = "", origin: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.origin = origin


@cache
def settings() -> tuple[Setting, ...]:
    """Every leaf setting of :class:`ServerConfig`, in declaration order."""
    return tuple(_leaves(ServerConfig, (), msgspec.to_builtins(ServerConfig())))


@cache
def sections() -> dict[str, str]:
    """Each section's key (``delivery``) and description."""
    return {name: metadata(annotation).get("description", "")
            for name, annotation in struct_fields(ServerConfig).items()
            if is_struct(annotation)}


def by_key() -> dict[str, Setting]:
    return {s.key: s for s in settings()}


def by_env() -> dict[str, Setting]:
    return {s.env: s for s in settings()}


def _leaves(cls: type[msgspec.Struct], prefix: tuple[str, ...],
            defaults: dict[str, Any]) -> list[Setting]:
    out: list[Setting] = []
    for name, annotation in struct_fields(cls).items():
        path = (*prefix, name)
        if is_struct(annotation):
            out.extend(_leaves(unwrap(annotation)[0], path, defaults.get(name) or {}))
            continue
        meta = {**metadata(annotation), **BORROWED.get(".".join(path), {})}
        examples = meta.get("examples") or []
        out.append(Setting(
            path=path,
            annotation=without_none(annotation),
            default=defaults.get(name),
            description=meta.get("description", ""),
            example=examples[0] if examples else defaults.get(name),
            flag=meta.get("flag"),
            metavar=meta.get("metavar", ""),
            secret=bool(meta.get("secret")),
            expected=meta.get("expected") or describe(without_none(annotation)),
        ))
    return out
