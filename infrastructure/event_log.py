"""Reading the stored events with their positions, for audits and exports."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Composable, Composed, Identifier

from domain.service import ProfilesService


@dataclass(frozen=True)
class LoggedEvent:
    position: int
    stored: StoredEvent

    @property
    def aggregate_id(self) -> UUID:
        return UUID(str(self.stored.originator_id))

    @property
    def version(self) -> int:
        return self.stored.originator_version


class EventLog:
    def __init__(self, app: ProfilesService) -> None:
        self.app = app
        recorder: Any = app.recorder
        self.datastore = recorder.datastore
        self.table: Composed = SQL("{}.{}").format(
            Identifier(self.datastore.schema), Identifier(recorder.events_table_name)
        )

    def _select(
        self, where: Composable, params: Sequence[Any], limit: int | None = None
    ) -> list[LoggedEvent]:
        statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {t}"
            " WHERE {w} ORDER BY notification_id"
        ).format(t=self.table, w=where)
        if limit is not None:
            statement = SQL("{} LIMIT %s").format(statement)
            params = [*params, limit]
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, list(params), prepare=True)
            return [
                LoggedEvent(
                    r["notification_id"],
                    StoredEvent(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])),
                )
                for r in curs.fetchall()
            ]

    def of(self, *aggregate_ids: UUID) -> list[LoggedEvent]:
        """Every event of the given aggregates, in position order."""
        return self._select(SQL("originator_id = ANY(%s)"), [list(aggregate_ids)])

    def at(self, positions: Sequence[int]) -> list[LoggedEvent]:
        """The events at these positions, in position order."""
        return self._select(SQL("notification_id = ANY(%s)"), [list(positions)]) if positions else []

    def between(self, first: int, last: int, aggregate_ids: Sequence[UUID]) -> list[LoggedEvent]:
        """The given aggregates' events at positions first..last, in order."""
        return self._select(
            SQL("notification_id BETWEEN %s AND %s AND originator_id = ANY(%s)"),
            [first, last, list(aggregate_ids)],
        )

    def version_of(self, aggregate_id: UUID, version: int) -> LoggedEvent | None:
        """The event that made an aggregate's version (the events' primary key)."""
        found = self._select(
            SQL("originator_id = %s AND originator_version = %s"), [aggregate_id, version], limit=1
        )
        return found[0] if found else None

    def page(self, after: int, limit: int, aggregate_ids: Sequence[UUID] | None = None) -> list[LoggedEvent]:
        """Events after a position, in position order, optionally of some aggregates only."""
        if aggregate_ids is None:
            return self._select(SQL("notification_id > %s"), [after], limit)
        return self._select(
            SQL("notification_id > %s AND originator_id = ANY(%s)"), [after, list(aggregate_ids)], limit
        )

    def iterate(
        self, after: int, aggregate_ids: Sequence[UUID] | None = None, page: int = 500
    ) -> Iterator[LoggedEvent]:
        while True:
            batch = self.page(after, page, aggregate_ids)
            yield from batch
            if len(batch) < page:
                return
            after = batch[-1].position

    def aggregate_ids(self) -> list[tuple[UUID, str]]:
        """Every aggregate's id and created-event topic."""
        statement = SQL("SELECT originator_id, topic FROM {t} WHERE originator_version = 1").format(
            t=self.table
        )
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement)
            return [(r["originator_id"], r["topic"]) for r in curs.fetchall()]

    def age_of_next(self, position: int) -> float:
        """Seconds since the first event after position was recorded (0 if none)."""
        batch = self.page(position, 1)
        if not batch:
            return 0.0
        recorded: datetime = self.decode(batch[0]).timestamp
        return max(0.0, (datetime.now(UTC) - recorded).total_seconds())

    def count(self, upto: int) -> int:
        """How many events the log holds up to a position."""
        statement = SQL("SELECT count(*) AS n FROM {t} WHERE notification_id <= %s").format(t=self.table)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, (upto,))
            return int(curs.fetchone()["n"])

    def head(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def decode(self, logged: LoggedEvent) -> Any:
        return self.app.mapper.to_domain_event(logged.stored)

    def of_types(self, aggregate_ids: Sequence[UUID], topics: Sequence[str]) -> list[LoggedEvent]:
        """The given aggregates' events of these topics (event classes), in position order."""
        return self._select(
            SQL("originator_id = ANY(%s) AND topic = ANY(%s)"), [list(aggregate_ids), list(topics)]
        )
