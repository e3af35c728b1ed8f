"""Server fixtures (a pytest plugin, registered by tests/conftest.py) for every tier that
talks to the real service (e2e, client, browser): the real `racer-profiles serve` as a subprocess on a
fresh database, talked to over HTTP with httpx; tokens come from the real
`racer-profiles accounts create`.

Most modules share one server and database for the session: a test that needs
a clean slate takes a brand-new account from `new_token()` (accounts never see
each other's profiles), so tests stay independent without paying a server
start each. A module that sets OWN_SERVER = True gets a server and database of
its own (verify/rebuild judge the whole database; some tests may break it)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.service import Service, running_service


@pytest.fixture(scope="session")
def e2e_logs() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rp-e2e-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="session")
def common_service(pg_server_url: str, e2e_logs: Path) -> Iterator[Service]:
    with running_service(pg_server_url, e2e_logs) as running:
        yield running


@pytest.fixture(scope="module")
def service(request: pytest.FixtureRequest, pg_server_url: str, e2e_logs: Path) -> Iterator[Service]:
    """The server the module's tests talk to: the session's common one (its
    tests keep apart through accounts of their own), or, for a module that sets
    OWN_SERVER = True, a server on a database of the module's own (for tests
    that judge or change the whole database, or may break it)."""
    if getattr(request.module, "OWN_SERVER", False):
        with running_service(pg_server_url, e2e_logs) as running:
            yield running
    else:
        yield request.getfixturevalue("common_service")


@pytest.fixture
def new_token(service: Service) -> Callable[..., str]:
    return service.new_token


@pytest.fixture
def token(new_token: Callable[..., str]) -> str:
    """An owner token of an account of the test's own."""
    return new_token()


@pytest.fixture(scope="module")
def shared_token(service: Service) -> str:
    """An owner token shared by tests that only touch profiles they created
    themselves (never the account's list or default)."""
    return service.shared_token()
