"""Accounts as auditors and admins look them up: the list with profile counts,
and the names of the accounts that events name as their actors."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

from infrastructure.profiles_sql import TABLE


@dataclass(frozen=True)
class AccountSummary:
    id: str
    name: str
    role: str
    created_at: datetime
    profile_count: int
    active_profile_count: int


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


class AccountDirectory:
    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        schema = Identifier(datastore.schema)
        self._accounts = SQL("{}.{}").format(schema, Identifier("accounts"))
        self._profiles = SQL("{}.{}").format(schema, Identifier(TABLE))

    def page(self, after: tuple[datetime, str] | None, limit: int) -> list[AccountSummary]:
        """Accounts in creation order (then id), after a keyset cursor, with their profile counts."""
        where = SQL("WHERE (a.created_at, a.id) > (%s, %s)") if after else SQL("")
        statement = SQL(
            "SELECT a.id, a.name, a.role, a.created_at,"
            # An erased profile's tombstone row counts for nothing.
            " count(p.id) FILTER (WHERE p.erased_at IS NULL) AS profile_count,"
            " count(p.id) FILTER (WHERE NOT p.archived) AS active_count"
            " FROM {a} a LEFT JOIN {p} p ON p.account_id = a.id::text {w}"
            " GROUP BY a.id ORDER BY a.created_at, a.id LIMIT %s"
        ).format(a=self._accounts, p=self._profiles, w=where)
        params: list[Any] = [after[0], UUID(after[1]), limit] if after else [limit]
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params)
            return [
                AccountSummary(
                    str(r["id"]), r["name"], r["role"], r["created_at"], r["profile_count"], r["active_count"]
                )
                for r in curs.fetchall()
            ]

    def names(self, ids: Iterable[str | None]) -> dict[str, str]:
        """The names of those of ids that are accounts (actors may also be `import`, ...)."""
        wanted = {u for u in (_uuid(i) for i in ids if i) if u is not None}
        if not wanted:
            return {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL("SELECT id, name FROM {} WHERE id = ANY(%s)").format(self._accounts), [list(wanted)]
            )
            # An erased account has no name any more.
            return {str(r["id"]): r["name"] for r in curs.fetchall() if r["name"]}

    def with_actor_names(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """entries with `actor_name` beside each `actor` (null when the actor is no account)."""
        names = self.names(e.get("actor") for e in entries)
        return [{**e, "actor_name": names.get(e.get("actor") or "")} for e in entries]
