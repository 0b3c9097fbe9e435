"""State on PostgreSQL (psycopg 3): the scale-out backend's state stores (#18).

Every store but the log itself: the log's forever dedupe table and event index, sources,
destinations, import jobs, rejections, runs with their checkpoints, dead letters and
outcome rows, load stats, profiles, segments, regulations and the person eraser;
:mod:`millpond.storage.cluster` opens them with the log on JetStream.
"""

from millpond.storage.postgres.connection import PgState
from millpond.storage.postgres.dedupe import PgDedupeTable
from millpond.storage.postgres.destinations import PgDestinationStore
from millpond.storage.postgres.eraser import PgEraser
from millpond.storage.postgres.imports import PgImportJobStore
from millpond.storage.postgres.index import PgEventIndex
from millpond.storage.postgres.leases import PgLeases
from millpond.storage.postgres.loadstats import PgLoadStatsStore
from millpond.storage.postgres.profiles import PgProfileStore
from millpond.storage.postgres.regulations import PgRegulationStore
from millpond.storage.postgres.rejections import PgRejectionStore
from millpond.storage.postgres.runs import PgRunStore
from millpond.storage.postgres.segments import PgSegmentStore
from millpond.storage.postgres.sources import PgSourceStore

__all__ = ["PgDedupeTable", "PgDestinationStore", "PgEraser", "PgEventIndex", "PgImportJobStore",
           "PgLeases", "PgLoadStatsStore", "PgProfileStore", "PgRegulationStore",
           "PgRejectionStore", "PgRunStore", "PgSegmentStore", "PgSourceStore", "PgState"]
