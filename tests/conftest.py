"""Shared fixtures: a PostgreSQL server (TEST_DATABASE_URL, else an embedded
one started for the session) and a fresh database per test."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from infrastructure.container import Container, build
from infrastructure.settings import Settings


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    from infrastructure.embedded import start_embedded

    with tempfile.TemporaryDirectory(prefix="rp-test-pg-") as tmp:
        server = start_embedded(Path(tmp) / "pgdata")
        try:
            yield server.url
        finally:
            server.stop()  # before the directory goes: stopping reads its postmaster.pid


@contextmanager
def temporary_database(pg_server_url: str, prefix: str = "rp_test") -> Iterator[str]:
    """A new database on the test server (its libpq conninfo), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(pg_server_url, dbname=name)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_server_url: str) -> Iterator[str]:
    with temporary_database(pg_server_url) as url:
        yield url


@pytest.fixture(scope="module")
def module_container(pg_server_url: str) -> Iterator[Container]:
    """One full stack (runner started) on one database for a whole module;
    its tests keep apart by using accounts of their own."""
    with temporary_database(pg_server_url, "rp_module") as url:
        built = build(Settings(database_url=url, api_threads=4))
        built.start_runner()
        try:
            yield built
        finally:
            built.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, api_threads=4, wait_timeout=10.0)


@pytest.fixture
def container(settings: Settings) -> Iterator[Container]:
    """The full write and read side, with the projection runner running."""
    built = build(settings)
    built.start_runner()
    yield built
    built.close()
