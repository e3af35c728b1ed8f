"""The event store's recorders: a command's idempotency key is marked used in
the same transaction that stores the command's events, so are its read-table
rows when the inline projection is on (infrastructure/inline_projection.py),
and every call follows one retry policy (infrastructure/db_retry.py)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import psycopg
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    AggregateRecorder,
    EventStore,
    IntegrityError,
    InterfaceError,
    Mapper,
    OperationalError,
    Recording,
    StoredEvent,
)
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder, PostgresFactory
from eventsourcing.utils import Environment
from psycopg.sql import SQL, Composable, Identifier

from infrastructure.db_retry import retry_dead_connections
from infrastructure.dead_connections import CheckedDatastore
from infrastructure.event_log import (
    events_table,
    insert_statement,
    select_events_after_statement,
    select_events_statement,
)
from infrastructure.idempotency import TABLE, KeyAlreadyCommitted
from infrastructure.inline_projection import InlineProjection, InlineWrite
from infrastructure.keys import KEY_CONSTRAINT, NewKeys

log = logging.getLogger(__name__)


class RenderedStatements(PostgresAggregateRecorder):
    """The library's statements rendered to text once: psycopg renders a
    Composed on every execute, and select_events composed its statement anew
    on every call (each command loads its roster and profile with it). The
    insert and select statements are infrastructure/event_log.py's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock_table_statements = [
            s.as_string() if isinstance(s, Composable) else s for s in self.lock_table_statements
        ]
        self._select_texts: dict[tuple[bool, bool, bool, bool], str] = {}
        self._insert_text = insert_statement(
            events_table(self.datastore.schema, self.events_table_name),
            self.datastore.originator_id_type,
            returning_positions=isinstance(self, PostgresApplicationRecorder),
        ).as_string()

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        curs.execute(
            self._insert_text,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
            prepare=True,
        )

    def _select_events(
        self,
        originator_id: Any,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """The library's select_events, with its statement text kept per shape."""
        shape = (gt is not None, lte is not None, desc, limit is not None)
        statement = self._select_texts.get(shape)
        if statement is None:
            composed = select_events_statement(self.select_events_statement, *shape)
            statement = self._select_texts[shape] = composed.as_string()
        params = [originator_id, *(p for p in (gt, lte, limit) if p is not None)]
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            return _stored_events(curs)

    def _select_events_after(self, versions: dict[Any, int]) -> Sequence[StoredEvent]:
        """The events after each given aggregate's version, in one query
        (ProfilesService.run_together fast-forwards a group's cached rosters with it)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_after_text, (list(versions), list(versions.values())), prepare=True)
            return _stored_events(curs)

    @cached_property
    def _select_after_text(self) -> str:
        events = events_table(self.datastore.schema, self.events_table_name)
        return select_events_after_statement(events).as_string()


def _stored_events(curs: Any) -> list[StoredEvent]:
    return [
        StoredEvent(
            originator_id=row["originator_id"],
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )
        for row in curs.fetchall()
    ]


class ProfilesRecorder(RenderedStatements, PostgresApplicationRecorder):
    # Set by the composition root when the inline projection is on.
    inline: InlineProjection | None = None

    _insert_events_retried = retry_dead_connections(PostgresApplicationRecorder.insert_events)
    select_events = retry_dead_connections(RenderedStatements._select_events)
    select_events_after = retry_dead_connections(RenderedStatements._select_events_after)
    select_notifications = retry_dead_connections(PostgresApplicationRecorder.select_notifications)
    max_notification_id = retry_dead_connections(PostgresApplicationRecorder.max_notification_id)

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        mark = kwargs.get("idempotency")
        if mark is not None:
            account_id, key, profile_id = mark
            curs.execute(
                SQL(
                    "UPDATE {}.{} SET state = 'committed', profile_id = %s"
                    " WHERE account_id = %s AND key = %s AND state = 'in_flight' RETURNING 1"
                ).format(Identifier(self.datastore.schema), Identifier(TABLE)),
                (profile_id, account_id, key),
                prepare=True,
            )
            # Fetching syncs the library's pipeline: one round trip, taken before
            # the events table's lock, so the serialised section is not longer.
            if curs.fetchone() is None:
                # Another request with this key committed first (it outlived its
                # lease and a retry took the key over): raising rolls back this
                # transaction, so the key's events are stored once.
                raise KeyAlreadyCommitted(account_id, key)
        new_keys: NewKeys | None = kwargs.get("new_keys")
        if new_keys is not None:
            # Pipelined before the lock; a key that exists already fails at the
            # insert's sync (ProfilesEventStore.put then stores without new keys).
            new_keys.insert(curs)
        super()._insert_events(curs, stored_events, **kwargs)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        write: InlineWrite | None = kwargs.get("inline") if self.inline is not None else None
        try:
            ids: Sequence[int] | None = self._insert_events_retried(stored_events, **kwargs)
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            if write is None or not write.positions:
                raise
            # The events went in; the read table's statements failed, and with
            # them the transaction. Store the events alone: the runner applies
            # them (and stops at one it cannot apply, saying so).
            log.exception("inline projection failed; the projector applies these events")
            alone: Sequence[int] | None = self._insert_events_retried(
                stored_events, **{**kwargs, "inline": None}
            )
            return alone
        if write is not None and self.inline is not None:
            self.inline.committed(write)
        return ids

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        """The library's sequence (lock, notify, insert), with the inline
        projection's check under the lock, in the same round trip."""
        write: InlineWrite | None = kwargs.get("inline")
        try:
            self._lock_table(curs)
            if write is not None and self.inline is not None:
                self.inline.check(curs.connection, write)
            self._notify_channel(curs)
            RenderedStatements._insert_stored_events(self, curs, stored_events)
        except psycopg.Error:
            # A statement sent before these (a new key's insert) failed, and its
            # error came back while these were being sent. The library keeps the
            # error and leaves its transaction block normally, so its COMMIT
            # would meet an aborted pipeline and raise "pipeline aborted" (an
            # OperationalError, retried, never the IntegrityError that
            # ProfilesEventStore.put handles). Syncing the pipeline here ends the
            # aborted state: the COMMIT then rolls back and the error raised is
            # the failed statement's own.
            with contextlib.suppress(psycopg.Error), curs.connection.pipeline():
                pass  # a nested pipeline block syncs at its exit
            raise

    def _notify_channel(self, curs: Any) -> None:
        # The library composes this statement on every insert.
        curs.execute(self._notify_statement)

    @cached_property
    def _notify_statement(self) -> str:
        return SQL("NOTIFY {0}").format(Identifier(self.channel_name)).as_string()

    def _fetch_ids_after_insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        write: InlineWrite | None = kwargs.get("inline")
        if write is not None and self.inline is not None and ids:
            self.inline.apply(curs, write, ids)
        return ids


class ProfilesEventStore(EventStore[Any]):
    """Hands the recorder each save's row changes, for the inline projection,
    and maps one save's events together when the mapper links them (the
    sealing mapper: infrastructure/encrypted_app.py)."""

    def put(self, domain_events: Sequence[DomainEventProtocol[Any]], **kwargs: Any) -> list[Recording[Any]]:
        inline = getattr(self.recorder, "inline", None)
        if inline is not None and kwargs.get("tracking") is None and domain_events:
            kwargs["inline"] = inline.prepare(domain_events)
        # How many events each command of a group commit has (ProfilesService.run_together).
        command_sizes = kwargs.pop("command_sizes", None)
        linking = getattr(self.mapper, "linking", None)
        if linking is None:
            return super().put(domain_events, **kwargs)
        # Only the events' recorder stores new keys (not the snapshots').
        with linking(
            new_keys=isinstance(self.recorder, ProfilesRecorder), command_sizes=command_sizes
        ) as new_keys:
            if new_keys is None:
                return super().put(domain_events, **kwargs)
            try:
                return super().put(domain_events, **kwargs, new_keys=new_keys)
            except IntegrityError as e:
                if getattr(getattr(e.__cause__, "diag", None), "constraint_name", None) != KEY_CONSTRAINT:
                    raise
                # A new aggregate's key row exists already (left by a failed
                # attempt of an older version, which committed keys on their own):
                # seal with that key instead, as those versions did.
                log.warning("a key for a new aggregate existed already; using the stored key")
                self.mapper.restart_without_new_keys()  # type: ignore[attr-defined]
                return super().put(domain_events, **kwargs)


class SnapshotsRecorder(RenderedStatements):
    """The snapshots' table: loading an aggregate reads it first, so it needs
    the same retry policy as the events' (infrastructure/db_retry.py)."""

    insert_events = retry_dead_connections(PostgresAggregateRecorder.insert_events)
    select_events = retry_dead_connections(RenderedStatements._select_events)

    def delete_snapshots(self, originator_id: Any) -> None:
        """Snapshots are derived; an erased profile's are dropped (loading replays its events)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("DELETE FROM {}.{} WHERE originator_id = %s").format(
                    Identifier(self.datastore.schema), Identifier(self.events_table_name)
                ),
                (originator_id,),
            )


class ProfilesFactory(PostgresFactory):
    """The library's PostgreSQL persistence with the recorders above
    (PERSISTENCE_MODULE names this class)."""

    aggregate_recorder_class = SnapshotsRecorder
    application_recorder_class = ProfilesRecorder

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        # PostgresFactory builds its PostgresDatastore inline, with no hook for a
        # subclass; CheckedDatastore adds no state, only its checkout.
        self.datastore.__class__ = CheckedDatastore

    def event_store(
        self, mapper: Mapper[Any] | None = None, recorder: AggregateRecorder | None = None
    ) -> EventStore[Any]:
        return ProfilesEventStore(
            mapper=mapper or self.mapper(), recorder=recorder or self.application_recorder()
        )
