"""The retry policy of every recorder call (infrastructure/db_retry.py): a
connection that died is retried on a fresh one, a pool timeout never is."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg_pool import PoolTimeout

from infrastructure.db_retry import ATTEMPTS, retry_dead_connections, unreachable
from infrastructure.profiles_view import PostgresProfilesView
from infrastructure.recorder import ProfilesRecorder, SnapshotsRecorder


def failing(errors: list[Exception]) -> tuple[Callable[[], str], list[int]]:
    """A call that raises the given errors in turn, then answers "ok"."""
    calls: list[int] = []

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)  # as the library's
    def call() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "ok"

    return call, calls


def pool_timeout() -> OperationalError:
    # What PostgresDatastore.get_connection raises when the pool's wait ends.
    try:
        raise PoolTimeout("couldn't get a connection after 1.00 sec")
    except PoolTimeout as e:
        try:
            raise OperationalError(str(e)) from e
        except OperationalError as translated:
            return translated


def test_a_dead_connection_is_retried_on_a_fresh_one() -> None:
    call, calls = failing([OperationalError("server closed the connection unexpectedly")])
    assert retry_dead_connections(call)() == "ok"
    assert len(calls) == 2


def test_retries_stop_after_the_bound_not_the_librarys_ten() -> None:
    call, calls = failing([InterfaceError("connection is closed")] * 10)
    with pytest.raises(InterfaceError):
        retry_dead_connections(call)()
    assert len(calls) == ATTEMPTS


def test_a_pool_timeout_is_not_retried() -> None:
    call, calls = failing([pool_timeout()] * 10)
    with pytest.raises(OperationalError) as raised:
        retry_dead_connections(call)()
    assert len(calls) == 1
    assert unreachable(raised.value)


def test_other_errors_pass_through_untouched() -> None:
    call, calls = failing([IntegrityError("duplicate key")])
    with pytest.raises(IntegrityError):
        retry_dead_connections(call)()
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("recorder", "method"),
    [
        # insert_events adds the inline projection's fallback around this one.
        (ProfilesRecorder, "_insert_events_retried"),
        (ProfilesRecorder, "select_events"),
        (ProfilesRecorder, "select_notifications"),
        (ProfilesRecorder, "max_notification_id"),
        (SnapshotsRecorder, "select_events"),
        (SnapshotsRecorder, "insert_events"),
        (PostgresProfilesView, "max_tracking_id"),
        (PostgresProfilesView, "insert_tracking"),
    ],
)
def test_every_recorder_call_a_request_makes_follows_the_policy(recorder: type, method: str) -> None:
    ours = getattr(recorder, method)
    assert ours.__code__ is retry_dead_connections(PostgresApplicationRecorder.max_notification_id).__code__
