"""The event store's recorder, extended so that a command's idempotency key is
marked used in the same transaction that stores the command's events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

from infrastructure.idempotency import TABLE


ATTEMPTS = 3  # the library retries 10 times, each waiting up to the connect timeout


def _bounded(method: Callable[..., Any]) -> Callable[..., Any]:
    """The library's method without its 10-attempt retry, retried ATTEMPTS times:
    enough to get past a connection that died in the pool, short enough that a
    database outage answers 503 within a few connect timeouts, not a minute."""
    unwrapped = method.__wrapped__  # type: ignore[attr-defined]

    @wraps(unwrapped)
    def bounded(self: Any, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return unwrapped(self, *args, **kwargs)
            except (OperationalError, InterfaceError):
                if attempt == ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    return bounded


class ProfilesRecorder(PostgresApplicationRecorder):
    insert_events = _bounded(PostgresApplicationRecorder.insert_events)
    select_events = _bounded(PostgresApplicationRecorder.select_events)
    select_notifications = _bounded(PostgresApplicationRecorder.select_notifications)
    max_notification_id = _bounded(PostgresApplicationRecorder.max_notification_id)

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
