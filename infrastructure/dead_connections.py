"""Dead pooled connections after a database restart or failover.

A pool hands out its oldest idle connection first and does not check it
(psycopg_pool's `check=` would, at one round trip per checkout, and backs off
a second or more after each dead one it finds). After a restart every idle
connection is dead, so without help each of them fails one request.

Here: a checkout asks the operating system whether the connection's socket
has anything to read (`poll` with no wait: no round trip). An idle connection
of a healthy server has nothing; one whose server went away has its FATAL
message or its end of file. Only then the connection is really checked
(psycopg_pool's `check_connection`, one round trip), and when it is dead the
pool's own `check()` disposes of every dead idle connection at once, so the
request gets a live one. A connection that dies without a sign (a network cut)
fails its statement instead, and the retry policy (db_retry.py) calls
`check()` before retrying."""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool, ConnectionPool


def _signals(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """True when the connection is closed or its socket has something to read."""
    if conn.closed:
        return True
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def is_dead(conn: psycopg.Connection[Any]) -> bool:
    if not _signals(conn):
        return False
    try:
        # Something to read may also be a notice: only a real check tells.
        ConnectionPool.check_connection(conn)
    except psycopg.Error:
        return True
    return False


async def is_dead_async(conn: psycopg.AsyncConnection[Any]) -> bool:
    if not _signals(conn):
        return False
    try:
        await AsyncConnectionPool.check_connection(conn)
    except psycopg.Error:
        return True
    return False


class CheckedDatastore(PostgresDatastore):
    """The library's datastore whose checkouts skip dead connections (see above)."""

    @contextmanager
    def get_connection(self) -> Iterator[psycopg.Connection[DictRow]]:
        for first in (True, False):
            with ExitStack() as stack:
                conn = stack.enter_context(super().get_connection())
                if not (first and is_dead(conn)):
                    yield conn
                    return
                conn.close()  # a closed connection given back is discarded by the pool
            self.pool.check()


def check_pool_of(owner: Any) -> None:
    """After a statement failed on a dead connection: the pool of owner (a
    recorder or a datastore), if it has one, disposes of its dead connections."""
    datastore = getattr(owner, "datastore", owner)
    pool = getattr(datastore, "pool", None)
    if isinstance(pool, ConnectionPool):
        pool.check()
