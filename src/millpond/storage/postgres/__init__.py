"""State on PostgreSQL (psycopg 3): the scale-out backend's state stores (#18).

So far: sources, destinations, import jobs, rejections, runs with their checkpoints and
dead letters, and the log's forever dedupe table. Profiles, segments and the index are not
built yet, so :func:`millpond.storage.open_storage` does not offer this
backend; the contract suite opens these stores directly (:class:`PgState` and the stores).
"""

from millpond.storage.postgres.connection import PgState
from millpond.storage.postgres.dedupe import PgDedupeTable
from millpond.storage.postgres.destinations import PgDestinationStore
from millpond.storage.postgres.eraser import PgEraser
from millpond.storage.postgres.imports import PgImportJobStore
from millpond.storage.postgres.index import PgEventIndex
from millpond.storage.postgres.loadstats import PgLoadStatsStore
from millpond.storage.postgres.profiles import PgProfileStore
from millpond.storage.postgres.regulations import PgRegulationStore
from millpond.storage.postgres.rejections import PgRejectionStore
from millpond.storage.postgres.runs import PgRunStore
from millpond.storage.postgres.segments import PgSegmentStore
from millpond.storage.postgres.sources import PgSourceStore

__all__ = ["PgDedupeTable", "PgDestinationStore", "PgEraser", "PgEventIndex", "PgImportJobStore",
           "PgLoadStatsStore", "PgProfileStore", "PgRegulationStore", "PgRejectionStore",
           "PgRunStore", "PgSegmentStore", "PgSourceStore", "PgState"]
