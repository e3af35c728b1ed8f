"""Every statement on the library's events table (the application recorder's
table of stored events, the log), and the log's reader for audits, exports and
the hash-chain walk.

The recorder (infrastructure/recorder.py), the read queries, the projection
runner, the inline projection and the replay of an export send statements
built here; statements that read the log and another table in one round trip
embed the subqueries below. Statements are rendered to text once by their
users: psycopg renders a Composed on every execute."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Composable, Composed, Identifier

from domain.service import ProfilesService


def events_table(schema: str, name: str) -> Composed:
    """The events table, schema-qualified; name is the recorder's events_table_name."""
    return SQL("{}.{}").format(Identifier(schema), Identifier(name))


def head_subquery(events: Composed) -> Composed:
    """The log's last position (NULL when empty), as a scalar subquery."""
    return SQL("(SELECT max(notification_id) FROM {})").format(events)


def version_subquery(events: Composed) -> Composed:
    """An aggregate's version (parameter: its id), as a scalar subquery."""
    return SQL("(SELECT max(originator_version) FROM {} WHERE originator_id = %s)").format(events)


def head_statement(events: Composed) -> Composed:
    """The log's last position, as the column head."""
    return SQL("SELECT max(notification_id) AS head FROM {}").format(events)


def version_statement(events: Composed) -> Composed:
    """An aggregate's version (parameter: its id), as the column v."""
    return SQL("SELECT max(originator_version) AS v FROM {} WHERE originator_id = %s").format(events)


def insert_statement(events: Composed, originator_id_type: str, returning_positions: bool) -> Composed:
    """Stores events (in the events table, or the snapshots table, which has the
    same columns) given as four arrays of plain types (binary on the wire): the
    library sends one array of a composite type, which psycopg dumps in Python as
    text (py-spy: an eighth of a command's CPU)."""
    return SQL(
        "INSERT INTO {} (originator_id, originator_version, topic, state)"
        " SELECT * FROM unnest(%b::{}[], %b::bigint[], %b::text[], %b::bytea[]){}"
    ).format(
        events,
        Identifier(originator_id_type),
        SQL(" RETURNING notification_id" if returning_positions else ""),
    )


def select_events_statement(
    select_events: Composed, gt: bool, lte: bool, desc: bool, limit: bool
) -> Composed:
    """The library's select_events statement (one aggregate's events) with the
    clauses of a call's shape, as the library adds them: after a version (gt), up
    to one (lte), newest first (desc), at most so many (limit); parameters in that order."""
    statement = select_events
    if gt:
        statement += SQL(" AND originator_version > %s")
    if lte:
        statement += SQL(" AND originator_version <= %s")
    statement += SQL(" ORDER BY originator_version DESC" if desc else " ORDER BY originator_version ASC")
    if limit:
        statement += SQL(" LIMIT %s")
    return statement


def select_events_after_statement(events: Composed) -> Composed:
    """Several aggregates' events after a version of each (parameters: their
    ids and versions, two arrays), in aggregate and version order, one round
    trip for all. LATERAL: each aggregate's events are an index range scan
    whatever the statistics say; as a plain join, a table not yet analysed
    (a new or fast-growing one) was read whole for every group (Hash Join over
    a Seq Scan: 1.4 ms at 3,000 events, and growing)."""
    return SQL(
        "SELECT e.originator_id, e.originator_version, e.topic, e.state"
        " FROM unnest(%b::uuid[], %b::bigint[]) WITH ORDINALITY AS after(id, version, n)"
        " CROSS JOIN LATERAL (SELECT * FROM {} x WHERE x.originator_id = after.id"
        " AND x.originator_version > after.version ORDER BY x.originator_version) e"
        " ORDER BY after.n, e.originator_version"
    ).format(events)


def insert_with_positions_statement(events: Composed) -> Composed:
    """Stores an exported event at its own position (the replay of an export)."""
    return SQL(
        "INSERT INTO {} (notification_id, originator_id, originator_version, topic, state)"
        " VALUES (%s, %s, %s, %s, %s)"
    ).format(events)


def continue_positions_after(curs: Any, schema: str, name: str, last: int) -> None:
    """The next stored event's position follows last (after events stored with their positions)."""
    curs.execute(
        SQL("SELECT setval(pg_get_serial_sequence(%s, 'notification_id'), %s)"),
        (f'"{schema}"."{name}"', last),
    )


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
        self.table = events_table(self.datastore.schema, recorder.events_table_name)

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

    def by_aggregate(self) -> Iterator[StoredEvent]:
        """Every event, by aggregate then version, through a server-side cursor
        (the whole log is never in memory)."""
        statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {t}"
            " ORDER BY originator_id, originator_version"
        ).format(t=self.table)
        with self.datastore.get_connection() as conn, conn.cursor(name="chain_walk") as curs:
            conn.autocommit = False  # a named (server-side) cursor needs a transaction
            try:
                curs.execute(statement)
                for r in curs:
                    yield StoredEvent(
                        r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])
                    )
            finally:
                conn.rollback()
                conn.autocommit = True

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
