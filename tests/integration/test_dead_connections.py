"""Every pool gets over a server that killed its idle connections (as a
restart or failover does): the next checkout skips them all at once
(infrastructure/dead_connections.py), whatever their number."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from infrastructure.async_queries import async_queries_for
from infrastructure.container import Container, build
from infrastructure.dead_connections import CheckedDatastore
from infrastructure.settings import Settings

IDLE = 6  # more than the retry policy's attempts


def fill_and_kill(url: str, pool: ConnectionPool[Any]) -> int:
    """Makes the pool hold IDLE idle connections, then has the server end them."""
    held = [pool.getconn() for _ in range(IDLE)]
    pids = [conn.info.backend_pid for conn in held]
    for conn in held:
        pool.putconn(conn)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        # Only once the backends are gone are the sockets closed.
        for _ in range(200):
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
            ).fetchone()
            if row and row[0] == 0:
                break
            admin.execute("SELECT pg_sleep(0.01)")
    return len(pids)


@pytest.fixture
def quiet_container(settings: Settings) -> Iterator[Container]:
    """The stack without the projection runner: the runner polls the read pool,
    and a dead connection it happens to take is discarded as a bad return, not
    counted as lost, which would blur what the test counts."""
    built = build(settings)
    try:
        yield built
    finally:
        built.close()


@pytest.mark.parametrize("pool_of", ["events", "read"])
def test_a_sync_pool_serves_the_next_query_after_its_idle_connections_died(
    quiet_container: Container, database_url: str, pool_of: str
) -> None:
    container = quiet_container
    recorder: Any = container.app.recorder
    datastore = recorder.datastore if pool_of == "events" else container.datastore
    assert isinstance(datastore, CheckedDatastore)
    fill_and_kill(database_url, datastore.pool)
    # Plain statements without any retry: the log's head (events), the read table (read).
    if pool_of == "events":
        assert container.audit.log.head() == 0
    else:
        assert container.queries.all_rows() == []
    assert datastore.pool.get_stats().get("connections_lost", 0) >= IDLE - 1


def test_the_async_read_pool_serves_the_next_query_after_its_idle_connections_died(
    container: Container, database_url: str
) -> None:
    queries = async_queries_for(container.settings, container.queries)

    async def scenario() -> list[Any]:
        await queries.open()
        try:
            held = [await queries.pool.getconn() for _ in range(IDLE)]
            pids = [conn.info.backend_pid for conn in held]
            for conn in held:
                await queries.pool.putconn(conn)
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
                await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
                await asyncio.sleep(0.2)
            return await queries.page("nobody", include_archived=False, after=None, limit=10)
        finally:
            await queries.close()

    assert asyncio.run(scenario()) == []
