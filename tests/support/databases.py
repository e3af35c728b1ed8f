"""Databases on the test server: one way to make a fresh one and to drop it
whatever happens to the test that used it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from infrastructure.container import Container, build
from infrastructure.settings import Settings


def create_database(server_url: str, prefix: str = "rp_test") -> str:
    """A new, empty database on the server; returns its libpq conninfo."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(server_url, dbname=name)


def drop_database(server_url: str, database_url: str) -> None:
    name = conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def temporary_database(server_url: str, prefix: str = "rp_test") -> Iterator[str]:
    """A new database (its conninfo), dropped afterwards even when the body fails."""
    url = create_database(server_url, prefix)
    try:
        yield url
    finally:
        drop_database(server_url, url)


@contextmanager
def running_container(database_url: str, *, runner: bool = True, **settings: Any) -> Iterator[Container]:
    """The full stack on a database, with the projection runner unless runner=False; closed afterwards."""
    values: dict[str, Any] = {"database_url": database_url, "api_threads": 4, "wait_timeout": 10.0}
    values.update(settings)
    built = build(Settings(**values))
    try:
        if runner:
            built.start_runner()
        yield built
    finally:
        built.close()
