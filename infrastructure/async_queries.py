"""The hot queries (GET /v1/profiles/default, GET /v1/profiles) on the event
loop, through psycopg's async pool.

A sync endpoint costs a hop to a worker thread and back, and its threads
fight over the GIL while they wait on the database: profiles of the service
under wrk showed the process at 100% CPU, half of it in the kernel, with the
query itself a small part. On the loop there is no hop and the waiting
costs nothing. Same statements as infrastructure/profile_queries.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from infrastructure import jsonb_values
from infrastructure.db_retry import ATTEMPTS, unreachable
from infrastructure.dead_connections import is_dead_async
from infrastructure.profile_queries import ProfileQueries, Statements, _row, default_and_version
from infrastructure.settings import Settings
from projections.rows import ProfileRow

T = TypeVar("T")


class AsyncProfileQueries:
    """One per event loop (the HTTP app's lifespan makes it): an async pool's
    connections belong to the loop that opened them."""

    def __init__(
        self, conninfo: dict[str, Any], statements: Statements, *, max_size: int, timeout: float
    ) -> None:
        self.statements = statements
        # Opened by the HTTP app's lifespan, on its event loop (open=False here).
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            kwargs={**conninfo, "autocommit": True, "row_factory": dict_row, "connect_timeout": int(timeout)},
            min_size=min(2, max_size),
            max_size=max_size,
            timeout=timeout,
            open=False,
            name="read-async",
            configure=_configure,
        )

    async def open(self, timeout: float = 30.0) -> None:
        await self.pool.open(wait=True, timeout=timeout)

    async def close(self) -> None:
        await self.pool.close()

    async def _run(self, query: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        # The policy of infrastructure/db_retry.py and dead_connections.py: a
        # checkout skips a connection whose server went away, the pool then
        # checks all its idle ones; a statement that failed on a dead connection
        # is retried after that check; a pool timeout is final.
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self.pool.connection() as conn:
                    if attempt == 1 and await is_dead_async(conn):
                        await conn.close()  # a closed connection given back is discarded
                    else:
                        return await query(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as e:
                if attempt == ATTEMPTS or unreachable(e):
                    raise
            await self.pool.check()
        raise AssertionError("unreachable")  # the loop returns or raises

    async def default_and_roster_version(
        self, account_id: str, roster: UUID
    ) -> tuple[ProfileRow | None, int]:
        async def query(conn: psycopg.AsyncConnection[Any]) -> Any:
            cursor = await conn.execute(
                self.statements.default_and_roster_version, (roster, account_id), prepare=True
            )
            return await cursor.fetchone()

        return default_and_version(await self._run(query))

    async def get(self, account_id: str | None, profile_id: UUID) -> ProfileRow | None:
        """The profile if it belongs to account_id (any account's when None: auditors)."""

        async def query(conn: psycopg.AsyncConnection[Any]) -> Any:
            cursor = await conn.execute(
                self.statements.get, (profile_id, account_id, account_id), prepare=True
            )
            return await cursor.fetchone()

        record = await self._run(query)
        return _row(record) if record is not None else None

    async def head(self) -> int:
        """The event log's last position, as this server has it."""

        async def query(conn: psycopg.AsyncConnection[Any]) -> Any:
            cursor = await conn.execute(self.statements.head, prepare=True)
            return await cursor.fetchone()

        record = await self._run(query)
        return int(record["head"] or 0)

    async def tracking_position(self, statement: str, application_name: str) -> int:
        """The read table's tracking position, as this server has it."""

        async def query(conn: psycopg.AsyncConnection[Any]) -> Any:
            cursor = await conn.execute(statement, (application_name,), prepare=True)
            return await cursor.fetchone()

        record = await self._run(query)
        return int(record["notification_id"]) if record and record["notification_id"] else 0

    async def changed_page(self, account_id: str, after: tuple[int, UUID], limit: int) -> list[ProfileRow]:
        """The account's rows after (position, id), in that order: a stream's backlog page."""

        async def query(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
            cursor = await conn.execute(
                self.statements.changed_page, (account_id, *after, limit), prepare=True
            )
            return await cursor.fetchall()

        return [_row(r) for r in await self._run(query)]

    async def page(
        self, account_id: str, *, include_archived: bool, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[ProfileRow]:
        statement, params = self.statements.page(account_id, include_archived, after, limit)

        async def query(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
            cursor = await conn.execute(statement, params, prepare=True)
            return await cursor.fetchall()

        return [_row(r) for r in await self._run(query)]


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_loads(jsonb_values.loads, conn)


def async_queries_for(settings: Settings, queries: ProfileQueries) -> AsyncProfileQueries:
    """The async twin of queries, on the same server (the replica, if any)."""
    return AsyncProfileQueries(
        settings.read_conninfo(),
        queries.statements,
        max_size=settings.pool_size,
        timeout=settings.db_connect_timeout,
    )
