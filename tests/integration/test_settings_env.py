"""Settings is the only source of configuration: variables of the eventsourcing
library in the process environment (plain, or with the application's
RACERPROFILES_ prefix, which the library prefers) reach nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from domain.service import Cause
from infrastructure.container import Container, build
from infrastructure.settings import SCHEMA, Settings
from tests.support.databases import temporary_database

PREFIXES = ["", "RACERPROFILES_"]


def built(settings: Settings) -> Iterator[Container]:
    container = build(settings)
    try:
        yield container
    finally:
        container.close()


def an_account() -> str:
    return f"acc-{uuid.uuid4().hex[:12]}"


def event_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM public.racerprofiles_events").fetchone()
    assert row is not None
    return int(row[0])


def test_the_library_gets_exactly_the_settings_env(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTGRES_HOST", "elsewhere.invalid")
    monkeypatch.setenv("RACERPROFILES_POSTGRES_POOL_SIZE", "50")
    settings = Settings(database_url=database_url, api_threads=2)
    env = settings.library_env()
    assert env["POSTGRES_SCHEMA"] == SCHEMA and env["POSTGRES_ENABLE_DB_FUNCTIONS"] == "n"
    for c in built(settings):
        assert dict(c.app.env) == {**env, "IS_SNAPSHOTTING_ENABLED": "y"}


@pytest.mark.parametrize("prefix", PREFIXES)
def test_postgres_dbname_in_the_environment_does_not_move_the_event_store(
    pg_server_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    with temporary_database(pg_server_url, "rp_elsewhere") as elsewhere:
        other = psycopg.conninfo.conninfo_to_dict(elsewhere)["dbname"]
        monkeypatch.setenv(f"{prefix}POSTGRES_DBNAME", str(other))
        for c in built(Settings(database_url=database_url, api_threads=2)):
            account = an_account()
            c.app.create_profile(account, "Ann", [], Cause(account))
            assert event_count(database_url) > 0
            with psycopg.connect(elsewhere) as conn:
                assert conn.execute("SELECT to_regclass('public.racerprofiles_events')").fetchone() == (None,)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_postgres_schema_in_the_environment_does_not_move_the_event_store(
    database_url: str, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA elsewhere")
    monkeypatch.setenv(f"{prefix}POSTGRES_SCHEMA", "elsewhere")
    for c in built(Settings(database_url=database_url, api_threads=2)):
        account, key = an_account(), "k-1"
        assert c.idempotency.reserve(account, key, "fp")
        c.app.create_profile(account, "Ann", [], Cause(account, idempotency=(account, key)))
        stored = c.idempotency.get(account, key)
        assert stored is not None and stored.state == "committed"
        assert event_count(database_url) > 0
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT to_regclass('elsewhere.racerprofiles_events')").fetchone() == (None,)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_aggregate_cache_maxsize_in_the_environment_does_not_turn_the_cache_on(
    database_url: str, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setenv(f"{prefix}AGGREGATE_CACHE_MAXSIZE", "100")
    for c in built(Settings(database_url=database_url, api_threads=2, aggregate_cache_size=0)):
        assert c.app.repository.cache is None
    for c in built(Settings(database_url=database_url, api_threads=2, aggregate_cache_size=7)):
        cache: object = c.app.repository.cache
        assert getattr(cache, "maxsize", None) == 7


@pytest.mark.parametrize("prefix", PREFIXES)
def test_enable_db_functions_in_the_environment_stays_off(
    database_url: str, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setenv(f"{prefix}POSTGRES_ENABLE_DB_FUNCTIONS", "y")
    for c in built(Settings(database_url=database_url, api_threads=2)):
        assert c.app.recorder.datastore.enable_db_functions is False  # type: ignore[attr-defined]
        account, key = an_account(), "k-1"
        assert c.idempotency.reserve(account, key, "fp")
        c.app.create_profile(account, "Ann", [], Cause(account, idempotency=(account, key)))
        stored = c.idempotency.get(account, key)
        assert stored is not None and stored.state == "committed"  # _insert_events ran
