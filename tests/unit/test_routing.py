"""The app's routes do not depend on the order in which it includes its
routers (api/path_params.py): built with the routers in other orders, every
operation of the OpenAPI document is answered by its own endpoint. No database:
the app is built around a stand-in container, and the requests carry no token
(each is answered by its endpoint's authentication, or fails on the stand-in,
after routing chose the endpoint)."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

import api.app
from api.app import ROUTERS, offline_app

SAMPLE = {
    "profile_id": "6f1c2a4e-8d2b-4c3f-9a57-0b8e4f1d2c3a",
    "vehicle_id": "0b8e4f1d-2c3a-4c3f-9a57-6f1c2a4e8d2b",
    "account_id": "9a576f1c-2a4e-4d2b-8c3f-0b8e4f1d2c3a",
    "token_id": "0f1e2d3c",
}
REGISTERED = offline_app().openapi()


def orders() -> list[Any]:
    shuffled = []
    for seed in range(3):
        order = list(ROUTERS)
        random.Random(seed).shuffle(order)
        shuffled.append(pytest.param(tuple(order), id=f"shuffled-{seed}"))
    return [pytest.param(tuple(reversed(ROUTERS)), id="reversed"), *shuffled]


class Routed:
    """Records the route the app's routing chose for the last request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.scope: Scope = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.scope = scope  # routing adds the route it chose to this very dict
        await self.app(scope, receive, send)


@pytest.fixture(params=orders())
def client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(api.app, "ROUTERS", request.param)
    routed = Routed(offline_app())
    # Not entered as a context manager: its lifespan would open the stand-in's pools.
    http = TestClient(routed, raise_server_exceptions=False)

    def answer(method: str, path: str) -> tuple[int, str | None, str | None]:
        response = http.request(method, path)
        route = routed.scope.get("route")  # its name is the operation id
        return response.status_code, getattr(route, "name", None), getattr(route, "path_format", None)

    yield answer
    http.close()


def test_every_operation_is_answered_by_its_own_endpoint(client: Any) -> None:
    operations = [(m.upper(), path, op) for path, ops in REGISTERED["paths"].items() for m, op in ops.items()]
    assert len(operations) > 20
    for method, path, operation in operations:
        concrete = re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path)
        _, endpoint, template = client(method, concrete)
        assert (endpoint, template) == (operation["operationId"], path), f"{method} {concrete}"


def test_the_stream_and_a_profile_are_told_apart(client: Any) -> None:
    assert client("GET", "/v1/profiles/stream") == (401, "profile_stream", "/v1/profiles/stream")
    assert client("GET", "/v1/profiles/default") == (401, "get_default", "/v1/profiles/default")
    profile = f"/v1/profiles/{SAMPLE['profile_id']}"
    assert client("GET", profile) == (401, "get_profile", "/v1/profiles/{profile_id}")
    # Any other segment is still a profile id (answered 422 by validation once authenticated).
    assert client("GET", "/v1/profiles/not-a-uuid")[1] == "get_profile"
    assert client("GET", "/v1/profiles/streams")[1] == "get_profile"
    assert client("PATCH", "/v1/profiles/stream")[1] == "rename_profile"
    assert client("PUT", "/v1/profiles/stream")[0] == 405
