"""One retry policy for every recorder method that talks to PostgreSQL.

The eventsourcing library wraps its recorder methods in
`@retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)`, and a
pool timeout (`psycopg_pool.PoolTimeout`) is an OperationalError: while the
database is down each of the ten attempts waits the whole connect timeout
again, so one request hung for about ten connect timeouts before its 503, and a
request that made several such calls longer still.

The policy here keeps what the retry is for (a pooled connection that died,
say after a server restart, fails its statement at once and the next attempt
gets a fresh one) and drops what hurts: a pool timeout means the database is
out of reach, and another wait only delays the answer."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from eventsourcing.persistence import InterfaceError, OperationalError
from psycopg_pool import PoolTimeout

ATTEMPTS = 3  # a dead connection, then another, then a fresh one
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
        raise AssertionError("unreachable")  # the loop returns or raises

    return retried  # type: ignore[return-value]
