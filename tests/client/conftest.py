"""The Python client against the real `racer-profiles serve` (the server
fixtures of tests/support/service_fixtures.py: a server on a fresh database, tokens from `accounts create`)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from racer_profiles_client import Client

from tests.client.cutting_proxy import CuttingProxy
from tests.support.service import Service


@pytest.fixture
def proxy(service: Service) -> Iterator[CuttingProxy]:
    cutting = CuttingProxy(urlsplit(service.base_url).port or 80)
    yield cutting
    cutting.close()


@pytest.fixture
def client(service: Service, token: str) -> Iterator[Client]:
    """A client of a brand-new account of the test's own."""
    with Client(service.base_url, token, timeout=30) as c:
        yield c
