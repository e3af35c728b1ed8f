"""End-to-end tests talk to the real `racer-profiles serve` over HTTP with httpx;
the server and token fixtures are in tests/support/service_fixtures.py."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.service import Service


@pytest.fixture(scope="module")
def client(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.base_url, timeout=30) as c:
        yield c
