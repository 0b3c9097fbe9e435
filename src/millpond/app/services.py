"""The services of one millpond server, built from its configuration.

:func:`build_services` is the composition root's wiring: it opens the stores through
:func:`millpond.storage.open_storage` and hands every part the stores and settings it
needs, so no part opens a file or reads the environment itself, and each part can be
tested with its own temporary stores. The admin API, the console and the collector
get the resulting :class:`Services`; :mod:`millpond.app.lifecycle` starts and stops its
background work, and :mod:`millpond.server` runs it all in one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from millpond.app import metrics as server_metrics
from millpond.app.config import ServerConfig
from millpond.app.followers import LogFollowers
from millpond.backfill.jobs import ImportJobs
from millpond.collector.public_url import PublicAddress
from millpond.config import admin_token
from millpond.connections import metrics as delivery_metrics
from millpond.connections.service import PumpManager
from millpond.delivery.retry import RetryPolicy
from millpond.profiles.follower import ProfileFollower
from millpond.regulations.blocklist import Blocklist
from millpond.regulations.forward import Forwarder
from millpond.regulations.service import RegulationService
from millpond.replays.service import ReplayManager
from millpond.retention.expiry import RetentionJob
from millpond.retention.outcomes import OutcomeRetention
from millpond.segments import saved_state
from millpond.segments.engine import SegmentEngine
from millpond.segments.service import SegmentService
from millpond.sources.service import SourceService
from millpond.storage import Storage, leases_of, open_storage
from millpond.storage.contracts import EventLog, ProfileStore


@dataclass(frozen=True, slots=True)
class Services:
    """What the routers, the console and the collector use; built once per server."""

    config: ServerConfig
    data_dir: Path
    #: How clients reach this server: browser SDK settings and snippets name it.
    public: PublicAddress
    admin_token: str
    #: True when ``admin_token`` was generated on this start (the server prints it).
    token_generated: bool
    storage: Storage
    log: EventLog
    sources: SourceService
    profiles: ProfileStore
    profile_follower: ProfileFollower
    imports: ImportJobs
    pumps: PumpManager
    replays: ReplayManager
    segment_engine: SegmentEngine
    segments: SegmentService
    #: Who is suppressed or deleted now: the collector, imports and every pump ask.
    blocklist: Blocklist
    regulations: RegulationService
    #: Deletes each source's expired events (``millpond.retention``).
    retention: RetentionJob
    #: Forgets the events behind delivery counts after ``delivery.outcome_retention_days``.
    outcome_retention: OutcomeRetention

    def close(self) -> None:
        """Release the stores (after :meth:`Lifecycle.stop`, or when never started)."""
        self.replays.close()
        self.storage.close()


def build_services(config: ServerConfig) -> Services:
    """Open the data dir's stores and wire every part to them; starts nothing."""
    data_dir = Path(config.storage.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    token, generated = admin_token(data_dir, config.admin_token)
    storage = open_storage(config.storage, max_pending=config.log_writer.max_pending,
                           max_group=config.log_writer.max_group)
    sources = SourceService(storage.sources)
    delivery = config.delivery
    blocklist = Blocklist()
    pumps = PumpManager(storage.log, storage.destinations, storage.runs,
                        load_stats=storage.load_stats, timeout=delivery.timeout,
                        policy=RetryPolicy(base=delivery.retry_base, cap=delivery.retry_cap),
                        screen=blocklist)
    delivery_metrics.install(pumps)
    follower = ProfileFollower(storage.log, storage.profiles)

    async def profiles_upto(_seq: int) -> None:
        # Identities must be merged before people are evaluated.
        while await follower.catch_up_once() >= follower.chunk:
            pass

    # On the embedded store, the follower's state outlives a clean stop (a cluster's
    # follower moves between processes: each remakes it).
    engine = SegmentEngine(storage, profiles_upto=profiles_upto,
                           saved_state=data_dir / saved_state.FILE
                           if leases_of(storage) is None else None)

    imports = ImportJobs(storage.imports, storage.log, data_dir, blocklist)
    regulations = RegulationService(storage, blocklist, Forwarder(pumps.transport),
                                    followers=LogFollowers(follower, engine),
                                    steps={"import_files": imports.forget})
    segments = SegmentService(storage, engine)
    retention = RetentionJob(storage.log, sources, on_removed=segments.events_removed)
    sources.on_retention_change = retention.nudge
    services = Services(
        config=config, data_dir=data_dir,
        public=PublicAddress.from_options(config.public_url, config.trust_proxy),
        admin_token=token, token_generated=generated, storage=storage, log=storage.log,
        sources=sources, profiles=storage.profiles,
        profile_follower=follower,
        imports=imports, pumps=pumps,
        replays=ReplayManager(pumps, sources, storage.runs, storage.index),
        segment_engine=engine, segments=segments,
        blocklist=blocklist, regulations=regulations, retention=retention,
        outcome_retention=OutcomeRetention(storage.runs, delivery.outcome_retention_days))
    server_metrics.install(services)
    return services
