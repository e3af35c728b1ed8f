"""The hot queries' fast path (api/fast_reads.py) answers exactly as the app
does, and leaves every other request to it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.fast_reads import FastReads
from domain.service import Cause
from infrastructure.container import Container
from tests.support.asgi import count_behind


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container)) as c:
        yield c


def _auth(token: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **more}


def _same(fast: httpx.Response, slow: httpx.Response) -> None:
    assert fast.status_code == slow.status_code == 200
    assert fast.content == slow.content
    drop = {"x-request-id"}
    assert {k: v for k, v in fast.headers.items() if k not in drop} == {
        k: v for k, v in slow.headers.items() if k not in drop
    }


def _seeded(container: Container, name: str) -> Any:
    account = container.accounts.create(name)
    for racer in ("Ada", "Brook"):
        container.app.create_profile(
            str(account.account_id),
            racer,
            [{"name": "Kart", "race_number": "7"}],
            Cause(str(account.account_id)),
        )
    return account


def test_answers_as_the_app_does(container: Container, client: TestClient) -> None:
    account = _seeded(container, "fast")
    own = str(account.account_id)
    # A query string (even one that changes nothing) takes the app's route.
    pairs = [
        ("/v1/profiles/default", f"/v1/profiles/default?account_id={own}"),
        ("/v1/profiles", "/v1/profiles?limit=50"),
    ]
    for fast, slow in pairs:
        _same(client.get(fast, headers=_auth(account.token)), client.get(slow, headers=_auth(account.token)))
    metrics = client.get("/metrics").text
    # Labelled by the route's template like every request (the fast ones included).
    assert 'route="/v1/profiles/default"' in metrics and 'route="/v1/profiles"' in metrics
    assert 'route="None"' not in metrics


def test_takes_only_the_common_form_and_leaves_the_rest_to_the_app(
    container: Container, client: TestClient
) -> None:
    account = _seeded(container, "fast")
    empty = container.accounts.create("no profiles yet")
    auditor = container.accounts.create("auditor", role="auditor")
    # The app behind the fast path, counted where the fast path hands requests on.
    inner = count_behind(client, FastReads)

    def run(path: str, token: str, **headers: str) -> tuple[int, int]:
        before = inner.calls
        response = client.get(path, headers=_auth(token, **headers))
        return response.status_code, inner.calls - before

    client.get("/v1/profiles", headers=_auth(account.token))  # the token is now in the cache
    client.get("/v1/profiles", headers=_auth(empty.token))
    assert run("/v1/profiles/default", account.token) == (200, 0)
    assert run("/v1/profiles", account.token) == (200, 0)
    # Left to the app: a query string, X-Min-Position, no default (a problem),
    # a token not in the cache, an auditor's token, a revoked token.
    assert run("/v1/profiles?include_archived=true", account.token) == (200, 1)
    assert run("/v1/profiles/default", account.token, **{"X-Min-Position": "1"}) == (200, 1)
    assert run("/v1/profiles/default", empty.token) == (404, 1)
    assert run("/v1/profiles/default", "rp_0000000000000000_nothing") == (401, 1)
    assert run("/v1/profiles/default", auditor.token) == (422, 1)
    # Revoked: the change feed empties the token's cache entry, so the app refuses it.
    container.accounts.revoke(account.token_id)
    deadline = time.monotonic() + 5
    while (answer := run("/v1/profiles/default", account.token)) != (401, 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer == (401, 1)
