"""Queries on the racer_profiles table; every one is scoped to an account."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Composed, Identifier

from infrastructure.event_log import events_table, head_statement, version_statement, version_subquery
from infrastructure.profiles_sql import TABLE
from projections.rows import COLUMN_NAMES, ProfileRow

COLUMNS = SQL(", ").join(map(Identifier, COLUMN_NAMES))


def _row(record: dict[str, Any]) -> ProfileRow:
    return ProfileRow(**record)


class Statements:
    """The read statements, composed once and kept as text: psycopg renders a
    Composed on every execute, which showed in profiles of the hot queries."""

    def __init__(self, schema: str, table: str, events: str) -> None:
        self.table = SQL("{}.{}").format(Identifier(schema), Identifier(table))
        self.events = events_table(schema, events)
        self.get = (
            SQL("SELECT {c} FROM {t} WHERE id = %s AND (%s::text IS NULL OR account_id = %s)")
            .format(c=COLUMNS, t=self.table)
            .as_string()
        )
        # The rows a command changed, read in its own transaction (inline projection).
        self.by_ids = (
            SQL("SELECT {c} FROM {t} WHERE id = ANY(%s)").format(c=COLUMNS, t=self.table).as_string()
        )
        # The default row and the roster's version in one statement (one snapshot,
        # one round trip), so the version matches the row shown.
        self.default_and_roster_version = (
            SQL(
                "SELECT {v} AS rv, p.* FROM (SELECT 1) AS one LEFT JOIN (SELECT {c} FROM {t}"
                " WHERE account_id = %s AND is_default) AS p ON true"
            )
            .format(v=version_subquery(self.events), c=COLUMNS, t=self.table)
            .as_string()
        )
        # A stream's backlog, a page at a time: keyset on (position, id).
        self.changed_page = (
            SQL(
                "SELECT {c} FROM {t} WHERE account_id = %s AND (position, id) > (%s, %s)"
                " ORDER BY position, id LIMIT %s"
            )
            .format(c=COLUMNS, t=self.table)
            .as_string()
        )
        self.head = head_statement(self.events).as_string()
        self.aggregate_version = version_statement(self.events).as_string()
        self.pages = {
            (include_archived, keyset): SQL(
                "SELECT {c} FROM {t} WHERE account_id = %s AND erased_at IS NULL{a}{k}"
                " ORDER BY created_at, id LIMIT %s"
            )
            .format(
                c=COLUMNS,
                t=self.table,
                a=SQL("") if include_archived else SQL(" AND NOT archived"),
                k=SQL(" AND (created_at, id) > (%s, %s)") if keyset else SQL(""),
            )
            .as_string()
            for include_archived in (False, True)
            for keyset in (False, True)
        }

    def page(
        self, account_id: str, include_archived: bool, after: tuple[datetime, UUID] | None, limit: int
    ) -> tuple[str, tuple[Any, ...]]:
        """Profiles in creation order, keyset-paginated after (created_at, id)."""
        params = (account_id, *after, limit) if after is not None else (account_id, limit)
        return self.pages[(include_archived, after is not None)], params


def default_and_version(record: Any) -> tuple[ProfileRow | None, int]:
    version = int(record.pop("rv") or 0)
    return (_row(record) if record["id"] is not None else None), version


class ProfileQueries:
    def __init__(self, datastore: PostgresDatastore, events: str, table: str = TABLE) -> None:
        """events: the recorder's events_table_name (the version and the head read it)."""
        self.datastore = datastore
        self.statements = Statements(datastore.schema, table, events)
        self.table = self.statements.table

    def aggregate_version(self, aggregate_id: UUID) -> int:
        """An aggregate's version as this server (maybe a replica) has it: read
        before a row, it is never newer than the row (a replica replays in order)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.statements.aggregate_version, (aggregate_id,), prepare=True)
            row: Any = curs.fetchone()
        return int(row["v"] or 0) if row else 0

    def _fetch(self, statement: Composed | str, params: tuple[Any, ...]) -> list[ProfileRow]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            return [_row(r) for r in curs.fetchall()]

    def get(self, account_id: str | None, profile_id: UUID) -> ProfileRow | None:
        """The profile if it belongs to account_id (any account's when None: auditors)."""
        rows = self._fetch(self.statements.get, (profile_id, account_id, account_id))
        return rows[0] if rows else None

    def default(self, account_id: str) -> ProfileRow | None:
        rows = self._fetch(
            SQL("SELECT {c} FROM {t} WHERE account_id = %s AND is_default").format(c=COLUMNS, t=self.table),
            (account_id,),
        )
        return rows[0] if rows else None

    def page(
        self,
        account_id: str,
        *,
        include_archived: bool,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[ProfileRow]:
        return self._fetch(*self.statements.page(account_id, include_archived, after, limit))

    def all_rows(self) -> list[ProfileRow]:
        return self._fetch(
            SQL("SELECT {c} FROM {t} ORDER BY account_id, created_at, id").format(c=COLUMNS, t=self.table),
            (),
        )
