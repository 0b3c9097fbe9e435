"""A real PostgreSQL server for the local cluster, tests and benchmarks: ``initdb`` + ``pg_ctl``
in a temp dir.

Why a real server and not a mock: the warehouse loader's guarantees (one merge transaction per
batch, ``ON CONFLICT`` idempotence, what a hand-altered table does to a load, what a dropped
connection leaves behind) are properties of PostgreSQL itself; only a real server can show them.

Where the binaries come from: Debian's ``postgresql`` package (``make test`` installs it when
missing) puts them in ``/usr/lib/postgresql/<version>/bin/``, which is not on ``PATH``; other
systems put them on ``PATH``. :func:`find_pg_bin` looks in both, newest version first.

Running as root: PostgreSQL refuses to run as root (it would let SQL reach the whole machine).
CI runs as root, so the server then runs as a dedicated system user (:data:`PG_USER`, created on
first use with ``useradd --system``) that owns the temp dir. The dir is made with ``mkdtemp``
directly under the system temp dir, because pytest's own temp dirs are private to root.

Authentication: local socket connections are trusted (for the fixture's own set-up), TCP
connections need the password (``scram-sha-256``), so tests can show what a wrong password says.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PG_USER", "PASSWORD", "PostgresServer", "find_pg_bin", "free_port"]

PG_USER = "millpond-pg"
PASSWORD = "millpond-test-pw"
SUPERUSER = "postgres"


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _version_key(path: str) -> tuple[int, ...]:
    parts = Path(path).parts
    try:
        return tuple(int(p) for p in parts[parts.index("postgresql") + 1].split("."))
    except (ValueError, IndexError):
        return (0,)


def find_pg_bin() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (``MILLPOND_PG_BIN`` when set); raises
    with the fix when missing."""
    override = os.environ.get("MILLPOND_PG_BIN")
    if override:
        if (Path(override) / "initdb").exists() and (Path(override) / "pg_ctl").exists():
            return Path(override)
        raise RuntimeError(f"MILLPOND_PG_BIN={override} holds no initdb and pg_ctl; point it "
                           "at PostgreSQL's bin directory, e.g. /usr/lib/postgresql/17/bin")
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin "
        "or on PATH; `make test` installs Debian's `postgresql` package, or run "
        "`apt-get install -y postgresql`"
    )


def _ensure_user() -> tuple[int, int] | None:
    """(uid, gid) to run the server as, or None to run as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True, capture_output=True,
        )
        entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, entry.pw_gid


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in a temp dir on a free loopback port.

    ``start()`` runs ``initdb`` once and ``pg_ctl start``; ``stop(mode)`` can stop it the hard
    way (``immediate``: no shutdown checkpoint, what a crash looks like to clients) and
    ``start()`` again brings the same data back; ``destroy()`` stops it and removes the dir.
    """

    port: int = field(default_factory=free_port)
    settings: dict[str, str] = field(default_factory=dict)
    root: Path | None = None
    _owner: tuple[int, int] | None = None

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def dsn(self, dbname: str = "postgres", *, user: str = SUPERUSER,
            password: str | None = PASSWORD) -> str:
        """A libpq URI for a TCP connection to ``dbname``."""
        auth = f"{user}:{password}" if password is not None else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        kwargs: dict = {}
        if self._owner is not None:
            kwargs = {"user": self._owner[0], "group": self._owner[1], "extra_groups": []}
        result = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout,
            cwd=self.root, env={**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"},
            # its own session: a Ctrl-C in the terminal reaches the process that started it,
            # which stops it in order, not the server directly
            start_new_session=True, **kwargs,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def start(self) -> PostgresServer:
        bin_dir = find_pg_bin()
        if self.root is None:
            self._owner = _ensure_user()
            self.root = Path(tempfile.mkdtemp(prefix="millpond-pg-"))
            if self._owner is not None:
                os.chown(self.root, *self._owner)
            pwfile = self.root / "pw"
            pwfile.write_text(PASSWORD + "\n")
            if self._owner is not None:
                os.chown(pwfile, *self._owner)
            self._run(
                str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                "--pwfile", str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256",
                "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
            )
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "max_connections": "40",
            "shared_buffers": "128MB",
            "logging_collector": "off",
            **self.settings,
        }
        opts = " ".join(f"-c {k}={v}" for k, v in options.items())
        self._run(
            str(bin_dir / "pg_ctl"), "start", "-D", str(self.data_dir), "-w", "-t", "60",
            "-l", str(self.root / "server.log"), "-o", opts,
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs (the first line of postmaster.pid)."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError, AssertionError):
            return None

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode``: ``fast`` (clean) or ``immediate`` (like a crash)."""
        if self.root is None or not (self.data_dir / "postmaster.pid").exists():
            return
        self._run(str(find_pg_bin() / "pg_ctl"), "stop", "-D", str(self.data_dir),
                  "-m", mode, "-w", "-t", "60")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None

    def create_database(self, name: str) -> str:
        """A fresh database ``name``; returns its DSN."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def log_text(self) -> str:
        path = self.root / "server.log" if self.root else None
        return path.read_text(errors="replace") if path and path.exists() else ""
