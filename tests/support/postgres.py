"""The test suite's PostgreSQL server: the one ``millpond dev-cluster`` starts
(:mod:`millpond.devcluster.postgres`), so tests, benchmarks and the local cluster share one
way of running it."""

from millpond.devcluster.postgres import (
    PASSWORD,
    PG_USER,
    PostgresServer,
    find_pg_bin,
    free_port,
)

__all__ = ["PG_USER", "PASSWORD", "PostgresServer", "find_pg_bin", "free_port"]
