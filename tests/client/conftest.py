"""The Python client against the real `racer-profiles serve` (tests/e2e's
fixtures: a server on a fresh database, tokens from `accounts create`)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from racer_profiles_client import Client

from tests.client.cutting_proxy import CuttingProxy
from tests.e2e.conftest import Service, common_service, e2e_logs, new_token, service, token  # noqa: F401


@pytest.fixture
def proxy(service: Service) -> Iterator[CuttingProxy]:  # noqa: F811
    cutting = CuttingProxy(urlsplit(service.base_url).port or 80)
    yield cutting
    cutting.close()


@pytest.fixture
def client(service: Service, token: str) -> Iterator[Client]:  # noqa: F811
    """A client of a brand-new account of the test's own."""
    with Client(service.base_url, token, timeout=30) as c:
        yield c
