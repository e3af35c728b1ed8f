"""The event store's recorders: a command's idempotency key is marked used in
the same transaction that stores the command's events, and every call follows
one retry policy (infrastructure/db_retry.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder, PostgresFactory
from eventsourcing.utils import Environment
from psycopg.sql import SQL, Identifier

from infrastructure.db_retry import retry_dead_connections
from infrastructure.dead_connections import CheckedDatastore
from infrastructure.idempotency import TABLE, KeyAlreadyCommitted


class ProfilesRecorder(PostgresApplicationRecorder):
    insert_events = retry_dead_connections(PostgresApplicationRecorder.insert_events)
    select_events = retry_dead_connections(PostgresApplicationRecorder.select_events)
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
        super()._insert_events(curs, stored_events, **kwargs)


class SnapshotsRecorder(PostgresAggregateRecorder):
    """The snapshots' table: loading an aggregate reads it first, so it needs
    the same retry policy as the events' (infrastructure/db_retry.py)."""

    insert_events = retry_dead_connections(PostgresAggregateRecorder.insert_events)
    select_events = retry_dead_connections(PostgresAggregateRecorder.select_events)


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
