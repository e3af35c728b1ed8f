"""What the command line prints instead of a traceback when the database is
out of reach or refuses: one `error: …` line (the CLI exits with status 2)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import psycopg
from eventsourcing.persistence import PersistenceError
from psycopg_pool import PoolTimeout

from infrastructure.embedded import EmbeddedStartError

EXIT_ERROR = 2


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _one_line(text: str) -> str:
    lines = [re.sub(r"\s+", " ", line).strip() for line in text.splitlines()]
    return "; ".join(line for line in lines if line)


def database_error(error: BaseException) -> str | None:
    """The message for a database failure anywhere in error's chain; None for anything else (a bug)."""
    for e in _chain(error):
        if isinstance(e, EmbeddedStartError):
            return _one_line(str(e))
        if isinstance(e, psycopg.OperationalError) and "connection" in str(e).lower():
            message = _one_line(str(e))
            hint = ""
            missing = re.search(r'database "([^"]+)" does not exist', message)
            if missing:
                hint = f" (create it with: racer-profiles psql -c 'CREATE DATABASE \"{missing.group(1)}\"')"
            elif "password authentication failed" in message or "no password supplied" in message:
                hint = " (check the user and password in DATABASE_URL)"
            return f"cannot connect to the database: {message}{hint}"
        if isinstance(e, PoolTimeout):
            return (
                "the database did not answer within DB_CONNECT_TIMEOUT "
                "(is the server running, and DATABASE_URL right?)"
            )
    for e in _chain(error):
        if isinstance(e, psycopg.Error):
            return f"database error: {_one_line(str(e))}"
        if isinstance(e, PersistenceError):
            return f"database error: {_one_line(str(e)) or type(e).__name__}"
    return None
