"""The event store's recorder, extended so that a command's idempotency key is
marked used in the same transaction that stores the command's events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

from infrastructure.idempotency import TABLE


class ProfilesRecorder(PostgresApplicationRecorder):
    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        mark = kwargs.get("idempotency")
        if mark is not None:
            account_id, key, profile_id = mark
            curs.execute(
                SQL(
                    "UPDATE {}.{} SET state = 'committed', profile_id = %s"
                    " WHERE account_id = %s AND key = %s"
                ).format(Identifier(self.datastore.schema), Identifier(TABLE)),
                (profile_id, account_id, key),
                prepare=True,
            )
        super()._insert_events(curs, stored_events, **kwargs)
