"""Shared fixtures: a PostgreSQL server (TEST_DATABASE_URL, else an embedded
one started for the session) and a fresh database per test. Every test that
asks for the server, directly or through another fixture, is marked
`postgres`, so `pytest -m "not postgres"` runs without any database.

Hypothesis profiles: `quick` (the default) and `thorough`, which `make test`
runs (`--hypothesis-profile=thorough`, or HYPOTHESIS_PROFILE=thorough). They
differ only for property tests that leave max_examples to the profile: the
in-memory roster machine (tests/property/test_roster_machine.py), the
project's proof of the roster invariant, runs its full 200 examples in
`make test` and a sample of them in a quick `pytest -m "not postgres"`."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from infrastructure.container import Container, build
from infrastructure.settings import Settings
from tests.support.databases import running_container, temporary_database

# The real server's fixtures, shared by the e2e, client and browser tiers.
pytest_plugins = ["tests.support.service_fixtures"]

SERVER_FIXTURE = "pg_server_url"

hypothesis_settings.register_profile("quick", max_examples=25)
hypothesis_settings.register_profile("thorough", max_examples=200)
# Before the test modules are imported: their settings take max_examples from the profile then.
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


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


@pytest.fixture
def database_url(pg_server_url: str) -> Iterator[str]:
    with temporary_database(pg_server_url) as url:
        yield url


@pytest.fixture(scope="module")
def module_container(pg_server_url: str) -> Iterator[Container]:
    """One full stack (runner started) on one database for a whole module;
    its tests keep apart by using accounts of their own."""
    with temporary_database(pg_server_url, "rp_module") as url, running_container(url) as built:
        yield built


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, api_threads=4, wait_timeout=10.0)


@pytest.fixture
def container(settings: Settings) -> Iterator[Container]:
    """The full write and read side, with the projection runner running."""
    built = build(settings)
    try:
        built.start_runner()
        yield built
    finally:
        built.close()
