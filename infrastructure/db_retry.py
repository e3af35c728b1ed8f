"""One retry policy for every recorder method that talks to PostgreSQL.

The eventsourcing library wraps its recorder methods in
`@retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)`, and a
pool timeout (`psycopg_pool.PoolTimeout`) is an OperationalError: while the
database is down each of the ten attempts waits the whole connect timeout
again, so one request hung for about ten connect timeouts before its 503, and a
request that made several such calls longer still.

The policy here keeps what the retry is for (a pooled connection that died,
say after a server restart, fails its statement at once) and drops what hurts:
a pool timeout means the database is out of reach, and another wait only
delays the answer. Before the retry the pool checks its idle connections
(psycopg_pool's `check()`, see dead_connections.py): the next attempt gets a
live one however many dead ones the pool held, so the count of attempts need
not exceed the count of dead connections."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from eventsourcing.persistence import InterfaceError, OperationalError
from psycopg_pool import PoolTimeout

from infrastructure.dead_connections import check_pool_of

ATTEMPTS = 3  # a dead connection; after the pool's check a live one; one spare
F = TypeVar("F", bound=Callable[..., Any])


def unreachable(error: BaseException) -> bool:
    """True when error says no connection could be had in time (not retried)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, PoolTimeout):
            return True
        seen = seen.__cause__
    return False


def retry_dead_connections(method: F) -> F:
    """The library's method without its own retry, retried up to ATTEMPTS
    times on a failed connection and never on a pool timeout."""
    unwrapped = getattr(method, "__wrapped__", method)

    @wraps(unwrapped)
    def retried(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return unwrapped(*args, **kwargs)
            except (OperationalError, InterfaceError) as e:
                if attempt == ATTEMPTS or unreachable(e):
                    raise
                if args:
                    check_pool_of(args[0])
        raise AssertionError("unreachable")  # the loop returns or raises

    return retried  # type: ignore[return-value]
