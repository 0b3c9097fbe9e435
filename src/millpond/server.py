"""The composition root: one process, embedded stores, collector, admin API and pumps.

Everything that needs the data dir is opened here and handed to the parts that use
it, so each part can be tested with its own temporary stores.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import uvicorn

from millpond import metrics
from millpond.api.app import build_api
from millpond.app.config import ServerConfig
from millpond.backfill.jobs import ImportJobs
from millpond.collector.app import CollectorApp
from millpond.collector.public_url import PublicAddress
from millpond.config import admin_token
from millpond.log.sqlite_log import SQLiteEventLog
from millpond.profiles.follower import ProfileFollower
from millpond.profiles.store import ProfileStore
from millpond.pumps import metrics as delivery_metrics
from millpond.pumps.manager import PumpManager
from millpond.pumps.replay_manager import ReplayManager
from millpond.pumps.retry import RetryPolicy
from millpond.sources.store import SourceStore
from millpond.state import StateDB

log = logging.getLogger("millpond")


class Millpond:
    """A millpond server's parts on one data dir; ``asgi`` is what uvicorn serves.

    ``config`` is validated already (:func:`millpond.app.load_config`); each part gets
    the values it needs from it here, so no other module reads the environment."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.data_dir = Path(config.storage.data_dir)
        #: How clients reach this server: browser SDK settings and snippets name it.
        self.public = PublicAddress.from_options(config.public_url, config.trust_proxy)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.admin_token, self.token_generated = admin_token(self.data_dir, config.admin_token)
        self.state = StateDB(self.data_dir / "state.db")
        self.sources = SourceStore(self.state)
        self.log = SQLiteEventLog(self.data_dir / "log.db",
                                  synchronous=config.storage.synchronous,
                                  max_pending=config.log_writer.max_pending,
                                  max_group=config.log_writer.max_group,
                                  on_commit=metrics.record_commit)
        self.profiles = ProfileStore(self.data_dir / "profiles.db")
        self.profile_follower = ProfileFollower(self.log, self.profiles)
        self.imports = ImportJobs(self.state, self.log, self.data_dir)
        delivery = config.delivery
        self.pumps = PumpManager(self.log, self.state, timeout=delivery.timeout,
                                 policy=RetryPolicy(base=delivery.retry_base,
                                                    cap=delivery.retry_cap))
        self.replays = ReplayManager(self.pumps, self.sources)
        delivery_metrics.install(self.pumps)
        self._background: list = []
        self.api = build_api(self)
        self.asgi = CollectorApp(self.log, self.sources, self.api, self.public)

    def extra_routers(self) -> list:
        """Routers of the layers built on the log (destinations, replays, people, imports)."""
        from millpond.api import dead_letters, destinations, imports, people, replays

        return [people.router, destinations.router, dead_letters.router, imports.router,
                replays.router]

    def refresh_metrics(self) -> None:
        """Gauges computed at scrape time (lag per destination and so on)."""

    async def start(self) -> None:
        """Start background work (pumps, profile follower) once the event loop runs."""
        await self.pumps.start()
        import asyncio

        self._background.append(asyncio.create_task(self.profile_follower.run()))

    async def stop(self) -> None:
        """Stop background work, then finish in-flight commits and close the stores."""
        await self.pumps.stop()
        for task in self._background:
            task.cancel()
        self.close()

    def close(self) -> None:
        self.replays.close()
        self.log.close()
        self.profiles.close()
        self.state.close()


def serve(config: ServerConfig) -> None:
    """Run the server until SIGINT/SIGTERM; in-flight requests finish their commits first."""
    # The log's writer thread needs the GIL back as soon as SQLite returns; the default
    # 5 ms switch interval would hold every group commit (and its waiters) hostage to
    # whatever the event loop is parsing.
    sys.setswitchinterval(0.001)
    mp = Millpond(config)
    host, port = config.host, config.port
    if mp.token_generated:
        print(f"admin token (stored in {mp.data_dir / 'admin_token'}): {mp.admin_token}",
              flush=True)
    print(f"millpond serving on http://{host}:{port} (data: {mp.data_dir})", flush=True)
    config = uvicorn.Config(mp.asgi, host=host, port=port, loop="uvloop", http="httptools",
                            lifespan="on", access_log=False, log_level="warning",
                            timeout_graceful_shutdown=30, backlog=4096)
    _GracefulServer(config, mp).run()


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, plus: on SIGTERM/SIGINT, long-polling readers are let go first,
    so shutdown waits only for requests whose commits are in flight."""

    def __init__(self, config: uvicorn.Config, mp: Millpond):
        super().__init__(config)
        self.millpond = mp

    def handle_exit(self, sig, frame) -> None:
        self.millpond.log.release_waiters()
        super().handle_exit(sig, frame)
