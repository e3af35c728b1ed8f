"""The hot commands' fast path (api/fast_commands.py) answers exactly as the
app does, and leaves every other request to it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.fast_commands import FastCommands
from infrastructure.container import Container
from tests.support.asgi import Counted, count_behind


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container)) as c:
        yield c


@pytest.fixture
def inner(client: TestClient) -> Counted:
    return count_behind(client, FastCommands)


_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(rb"\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d)")


def _shape(response: httpx.Response, *, ids: bool) -> tuple[int, bytes, dict[str, str]]:
    """The answer with what differs between two commands masked: new ids and times
    (when ids), positions and versions in headers, the request id."""
    body = _TIME.sub(b"<time>", response.content)
    if ids:
        body = _ID.sub(b"<id>", body)
    headers = {
        k: (re.sub(r"[0-9a-f-]{36}", "<id>", v) if ids else v)
        for k, v in response.headers.items()
        if k not in ("x-request-id", "x-position", "etag", "content-length")
    }
    return response.status_code, body, headers


def test_answers_as_the_app_does(client: TestClient, container: Container, inner: Counted) -> None:
    account = container.accounts.create("fast commands")
    auth = {"Authorization": f"Bearer {account.token}"}
    body = {"name": "Ada", "vehicles": [{"name": "Kart", "race_number": "7"}], "details": {"w": 1.5}}
    client.get("/v1/profiles", headers=auth)  # the token is now in the cache
    client.post("/v1/profiles?via=app", headers=auth, json={"name": "The default"})

    # The same create, by the fast path and by the app (a query string takes the app's route:
    # there is none on this route, so an unknown one changes nothing but the path taken).
    calls = inner.calls
    fast = client.post("/v1/profiles", headers=auth, json=body)
    assert inner.calls == calls, "the create did not take the fast path"
    slow = client.post("/v1/profiles?via=app", headers=auth, json=body)
    assert inner.calls == calls + 1
    assert fast.status_code == 201
    assert _shape(fast, ids=True) == _shape(slow, ids=True)
    first, second = fast.json()["id"], slow.json()["id"]

    # A real switch each way, by each path: the same answer but for the roster's version.
    calls = inner.calls
    fast = client.put("/v1/profiles/default", headers=auth, json={"profile_id": second})
    assert inner.calls == calls
    client.put("/v1/profiles/default?via=app", headers=auth, json={"profile_id": first})
    slow = client.put("/v1/profiles/default?via=app", headers=auth, json={"profile_id": second})
    assert fast.status_code == 200 and fast.json()["is_default"]
    assert _shape(fast, ids=False) == _shape(slow, ids=False)
    assert int(fast.headers["etag"].strip('"')) + 2 == int(slow.headers["etag"].strip('"'))

    # A failing command answers the app's problem document: a profile of no one's (404),
    # a name the domain refuses (422 naming it).
    for path, failing, status in (
        ("/v1/profiles/default", {"profile_id": "00000000-0000-4000-8000-000000000000"}, 404),
        ("/v1/profiles", {"name": "  "}, 422),
    ):
        method = client.put if path.endswith("default") else client.post
        calls = inner.calls
        fast = method(path, headers=auth, json=failing)
        assert inner.calls == calls
        slow = method(f"{path}?via=app", headers=auth, json=failing)
        assert fast.status_code == status and fast.content == slow.content
        assert _shape(fast, ids=False) == _shape(slow, ids=False)

    # Counted like the app's commands, under the route's name and template.
    metrics = client.get("/metrics").text
    assert re.search(r'commands_total\{command="create_profile",outcome="ok"\} 3.0', metrics), metrics
    assert 'command="unknown"' not in metrics
    assert (
        'http_request_duration_seconds_count{method="PUT",route="/v1/profiles/default",status="200"} 3.0'
        in metrics
    )
    assert 'route="None"' not in metrics


def test_takes_only_the_common_form_and_leaves_the_rest_to_the_app(
    client: TestClient, container: Container, inner: Counted
) -> None:
    account = container.accounts.create("fast commands")
    auditor = container.accounts.create("auditor", role="auditor")
    auth = {"Authorization": f"Bearer {account.token}"}
    client.get("/v1/profiles", headers=auth)
    client.get("/v1/profiles", headers={"Authorization": f"Bearer {auditor.token}"})

    def run(
        body: Any, token: str = account.token, raw: bytes | None = None, **headers: str
    ) -> tuple[int, int]:
        before = inner.calls
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers}
        content = raw if raw is not None else json.dumps(body).encode()
        response = client.post("/v1/profiles", headers=headers, content=content)
        return response.status_code, inner.calls - before

    assert run({"name": "Ada"}) == (201, 0)
    # Left to the app: each header that changes the command, a body that does not
    # validate (the app names the field), malformed JSON, a
    # token not in the cache, an auditor's token.
    assert run({"name": "Brook"}, **{"Idempotency-Key": "k1"}) == (201, 1)
    assert run({"name": "Cy"}, **{"X-Reason": "why"}) == (201, 1)
    assert run({"name": "Di"}, **{"If-Match": '"1"'}) == (201, 1)
    assert run({"name": 5}) == (422, 1)
    assert run({"vehicles": []}) == (422, 1)
    assert run(None, raw=b'{"name": ') == (422, 1)
    assert run({"name": "Fay"}, token="rp_0000000000000000_nothing") == (401, 1)
    assert run({"name": "Gus"}, token=auditor.token) == (403, 1)
    # What the fast path passed on got its body: the app created those profiles.
    names = [p["name"] for p in client.get("/v1/profiles", headers=auth).json()["items"]]
    assert names == ["Ada", "Brook", "Cy", "Di"]
