"""Contract fixtures: the real app in process (TestClient) on a fresh
PostgreSQL database per module, with the projection runner running."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from infrastructure.container import Container, build
from infrastructure.settings import Settings


def new_database(pg_server_url: str) -> str:
    name = f"rp_contract_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(pg_server_url, dbname=name)


def drop_database(pg_server_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def module_container(pg_server_url: str) -> Iterator[Container]:
    """One database and container for the module (tests keep apart through accounts)."""
    url = new_database(pg_server_url)
    built = build(Settings(database_url=url, api_threads=4, wait_timeout=10.0))
    built.start_runner()
    try:
        yield built
    finally:
        built.close()
        drop_database(pg_server_url, url)
