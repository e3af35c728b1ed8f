"""Audit views: a profile's history, the profile as it was at a version or a
time, the default timeline, the export. The projection's audit index says
which events to read; the events themselves are the record shown."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Composed, Identifier

from domain.profile import RacerProfile
from domain.roster import roster_id
from domain.service import ProfilesService
from infrastructure.event_log import EventLog, LoggedEvent
from infrastructure.profiles_sql import TABLE, account_events_table, history_table
from projections.rows import public, replayed_row

METADATA = {
    "originator_id",
    "originator_version",
    "originator_topic",
    "timestamp",
    "actor",
    "reason",
    "request_id",
    "prev_hash",
    "event_hash",
    # An import's provenance (e.g. legacy ids) is for the importer; auditors read it in the reason.
    "source",
}


def _plain(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def describe(logged: LoggedEvent, event: Any) -> dict[str, Any]:
    """An event as auditors read it: where, what, when, who, why, and its data."""
    qualname = logged.stored.topic.partition(":")[2]
    aggregate_type, _, event_type = qualname.partition(".")
    return {
        "position": logged.position,
        "aggregate_id": str(logged.aggregate_id),
        "aggregate_type": aggregate_type,
        "version": logged.version,
        "type": event_type,
        "recorded_at": event.timestamp.isoformat(),
        "actor": getattr(event, "actor", None),
        "reason": getattr(event, "reason", None),
        "request_id": getattr(event, "request_id", None),
        "data": {k: _plain(v) for k, v in vars(event).items() if k not in METADATA},
    }


def export_record(logged: LoggedEvent, event: Any) -> dict[str, Any]:
    """describe() plus the exact stored form, so an export can be replayed."""
    record = describe(logged, event)
    record["topic"] = logged.stored.topic
    record["stored_state"] = base64.b64encode(logged.stored.state).decode()
    return record


UNDECODABLE = "undecodable"  # the marker of an exported event that could not be decoded


def raw_record(logged: LoggedEvent, error: BaseException) -> dict[str, Any]:
    """An event that cannot be decoded, exported as stored, with the reason under UNDECODABLE:
    the export goes on past it, and replay still copies it exactly."""
    return {
        "position": logged.position,
        "aggregate_id": str(logged.aggregate_id),
        "version": logged.version,
        UNDECODABLE: f"{type(error).__name__}: {error}",
        "topic": logged.stored.topic,
        "stored_state": base64.b64encode(logged.stored.state).decode(),
    }


def export_entry(log: EventLog, logged: LoggedEvent) -> dict[str, Any]:
    """The export line of one event: decoded, or raw with the marker."""
    try:
        event = log.decode(logged)
    except Exception as e:  # any decoding failure: a bad topic, state, upcaster or cipher
        return raw_record(logged, e)
    return export_record(logged, event)


@dataclass(frozen=True)
class ProfileRef:
    """A profile that exists, and its account (for the owner check)."""

    profile_id: UUID
    account_id: str


@dataclass(frozen=True)
class Entry:
    """One row of a profile's history index: the profile after the event."""

    position: int
    version: int
    is_default: bool
    concerns: str | None


# A command writes at most a profile event and three roster events, all at
# consecutive positions: the window searched for the rest of a command.
COMMAND_SPAN = 8


class Audit:
    """Audit reads through the index the projection keeps (projections/history.py):
    each costs the page asked for, not the account's history. Entries are read
    from `reader` (where the read table is); the events from the event store."""

    def __init__(self, app: ProfilesService, reader: PostgresDatastore, table: str = TABLE) -> None:
        self.app = app
        self.log = EventLog(app)
        self.reader = reader
        schema = Identifier(reader.schema)
        self.history_table = SQL("{}.{}").format(schema, Identifier(history_table(table)))
        self.account_table = SQL("{}.{}").format(schema, Identifier(account_events_table(table)))

    def _rows(self, statement: Composed, params: Sequence[Any]) -> list[Any]:
        with self.reader.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, list(params), prepare=True)
            return curs.fetchall()

    def timeline(self, profile_id: UUID) -> ProfileRef | None:
        """The profile and its account, from its first event; None when there is no such profile."""
        first = self.log.version_of(profile_id, 1)
        event = self.log.decode(first) if first is not None else None
        if not isinstance(event, RacerProfile.Created):
            return None
        return ProfileRef(profile_id, event.account_id)

    def history(self, ref: ProfileRef, after: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """The profile's events and its roster's events about it, after a position, in order."""
        rows = self._rows(
            SQL(
                "SELECT position, concerns FROM {} WHERE profile_id = %s AND position > %s"
                " ORDER BY position LIMIT %s"
            ).format(self.history_table),
            (ref.profile_id, after, limit),
        )
        events = {logged.position: logged for logged in self.log.at([r["position"] for r in rows])}
        entries = []
        for row in rows:
            logged = events[row["position"]]
            entry = describe(logged, self.log.decode(logged))
            if row["concerns"] is not None:
                entry["concerns"] = row["concerns"]
            entries.append(entry)
        return entries

    def as_it_was(
        self,
        ref: ProfileRef,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> dict[str, Any] | None:
        """The profile replayed up to a version (as the command that made it
        left things) or a time; None when it did not exist yet or the version is
        beyond the last. Each command counts as one moment: its roster events
        (a new default, say) belong to the same moment as its profile event."""
        bound: int | None = None  # the last position included; None: all
        if version is not None:
            made = self.log.version_of(ref.profile_id, version) if version >= 1 else None
            if made is None:
                return None
            bound = self._command_edge(ref, made.position, forward=True)
        if as_of is not None:
            later = self._rows(
                SQL(
                    "SELECT position FROM {} WHERE profile_id = %s AND recorded_at > %s"
                    " ORDER BY recorded_at, position LIMIT 1"
                ).format(self.history_table),
                (ref.profile_id, as_of),
            )
            if later:
                first_later = later[0]["position"]
                started = self._command_start_time(ref, first_later)
                # A command that began by the moment counts whole.
                moment = (
                    self._command_edge(ref, first_later, forward=True)
                    if started <= as_of
                    else first_later - 1
                )
                bound = moment if bound is None else min(bound, moment)
        entry = self._entry_at(ref, bound)
        if entry is None or entry.version == 0:  # 0: listed before its first event
            return None
        profile = self.app.get_profile(ref.profile_id, version=entry.version)
        return profile_state(profile, entry.is_default)

    def _entry_at(self, ref: ProfileRef, bound: int | None) -> Entry | None:
        rows = self._rows(
            SQL(
                "SELECT position, version, is_default, concerns FROM {} WHERE profile_id = %s"
                " AND position <= %s ORDER BY position DESC LIMIT 1"
            ).format(self.history_table),
            (ref.profile_id, bound if bound is not None else 2**62),
        )
        return Entry(**rows[0]) if rows else None

    def _command(self, ref: ProfileRef, position: int) -> list[tuple[LoggedEvent, Any]]:
        """The profile's and its roster's events around a position."""
        nearby = self.log.between(
            position - COMMAND_SPAN, position + COMMAND_SPAN, [ref.profile_id, roster_id(ref.account_id)]
        )
        return [(logged, self.log.decode(logged)) for logged in nearby]

    def _same_command(self, ref: ProfileRef, position: int) -> list[tuple[LoggedEvent, Any]]:
        """The events of the command that wrote position: stored in one transaction,
        they are consecutive in position and share a request id."""
        nearby = self._command(ref, position)
        at = next(i for i, (logged, _) in enumerate(nearby) if logged.position == position)
        request = getattr(nearby[at][1], "request_id", None)
        if not request:
            return [nearby[at]]
        first = last = at
        while first > 0 and _joined(nearby[first - 1], nearby[first], request):
            first -= 1
        while last + 1 < len(nearby) and _joined(nearby[last], nearby[last + 1], request):
            last += 1
        return nearby[first : last + 1]

    def _command_edge(self, ref: ProfileRef, position: int, *, forward: bool) -> int:
        command = self._same_command(ref, position)
        return command[-1 if forward else 0][0].position

    def _command_start_time(self, ref: ProfileRef, position: int) -> datetime:
        return self._same_command(ref, position)[0][1].timestamp  # type: ignore[no-any-return]

    def defaults(self, account_id: str, after: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """The account's changes of its default, after a position: when, from, to, who, why."""
        rows = self._rows(
            SQL(
                "SELECT position FROM {} WHERE account_id = %s AND default_change AND position > %s"
                " ORDER BY position LIMIT %s"
            ).format(self.account_table),
            (account_id, after, limit),
        )
        changes = []
        for logged in self.log.at([r["position"] for r in rows]):
            event = self.log.decode(logged)
            changes.append(
                {
                    "position": logged.position,
                    "changed_at": event.timestamp.isoformat(),
                    "from_profile_id": event.previous,
                    "to_profile_id": event.new,
                    "actor": getattr(event, "actor", None),
                    "reason": getattr(event, "reason", None),
                    "request_id": getattr(event, "request_id", None),
                }
            )
        return changes

    def listed(self, upto: int) -> int:
        """How many events up to a position the index lists under their account."""
        rows = self._rows(
            SQL("SELECT count(*) AS n FROM {} WHERE position <= %s").format(self.account_table), (upto,)
        )
        return int(rows[0]["n"])

    def account_events(self, account_id: str, after: int = 0, page: int = 500) -> Iterator[LoggedEvent]:
        """Every event of the account after a position, in order, a page at a time."""
        while True:
            rows = self._rows(
                SQL(
                    "SELECT position FROM {} WHERE account_id = %s AND position > %s ORDER BY position LIMIT %s"
                ).format(self.account_table),
                (account_id, after, page),
            )
            if not rows:
                return
            yield from self.log.at([r["position"] for r in rows])
            if len(rows) < page:
                return
            after = rows[-1]["position"]


def _joined(earlier: tuple[LoggedEvent, Any], later: tuple[LoggedEvent, Any], request: str) -> bool:
    return (
        later[0].position == earlier[0].position + 1
        and getattr(earlier[1], "request_id", None) == request
        and getattr(later[1], "request_id", None) == request
    )


def profile_state(profile: RacerProfile, is_default: bool) -> dict[str, Any]:
    return public(replayed_row(profile, is_default))
