"""Audit end to end: the real server and the real `accounts create --role
auditor`; request ids and reasons travel over real HTTP into the events."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest


@pytest.fixture(scope="module")
def auditor(service: Any) -> Iterator[str]:
    """A token made by `racer-profiles accounts create NAME --role auditor`."""
    result = service.cli("accounts", "create", f"e2e-auditor-{uuid.uuid4().hex[:8]}", "--role", "auditor")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "auditor" in result.stdout
    token = result.stdout.strip().splitlines()[-1].strip()
    assert token.startswith("rp_"), result.stdout
    yield token


def auth(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **{k.replace("_", "-"): v for k, v in headers.items()}}


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    return response.json()


def entries(client: httpx.Client, token: str, profile_id: str) -> list[dict[str, Any]]:
    body = ok(client.get(f"/v1/profiles/{profile_id}/history", params={"limit": 200}, headers=auth(token)))
    assert body["next_cursor"] is None
    return body["items"]  # type: ignore[no-any-return]


def ndjson(client: httpx.Client, token: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/audit/events", params=params, headers=auth(token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def test_request_ids_and_reasons_are_recorded_over_http(
    client: httpx.Client, new_token: Callable[..., str]
) -> None:
    token = new_token()
    sent = client.post(
        "/v1/profiles", json={"name": "Ann"}, headers=auth(token, X_Request_ID="e2e-req-1", X_Reason="signup")
    )
    profile = ok(sent, 201)
    assert sent.headers["x-request-id"] == "e2e-req-1"

    renamed = client.patch(
        f"/v1/profiles/{profile['id']}", json={"name": "Anna", "reason": "typo"}, headers=auth(token)
    )
    ok(renamed)
    generated = renamed.headers["x-request-id"]
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", generated) and generated != "e2e-req-1"

    recorded = [(e["type"], e["request_id"], e["reason"]) for e in entries(client, token, profile["id"])]
    assert recorded == [
        ("Created", "e2e-req-1", "signup"),
        ("MemberAdded", "e2e-req-1", "signup"),
        ("DefaultChanged", "e2e-req-1", "signup"),
        ("Renamed", generated, "typo"),
    ]


def test_an_auditor_reads_every_account_but_cannot_command_and_owners_read_only_their_own(
    client: httpx.Client, new_token: Callable[..., str], auditor: str
) -> None:
    owner_a, owner_b = new_token(), new_token()
    first_a = ok(client.post("/v1/profiles", json={"name": "Ann"}, headers=auth(owner_a)), 201)
    pa = ok(client.post("/v1/profiles", json={"name": "Abe"}, headers=auth(owner_a)), 201)
    ok(client.patch(f"/v1/profiles/{pa['id']}", json={"name": "Abel"}, headers=auth(owner_a)))
    pb = ok(
        client.post(
            "/v1/profiles", json={"name": "Bob", "vehicles": [{"name": "Kart"}]}, headers=auth(owner_b)
        ),
        201,
    )

    assert entries(client, auditor, pa["id"]) == entries(client, owner_a, pa["id"])
    assert [e["type"] for e in entries(client, auditor, pb["id"])] == [
        "Created",
        "MemberAdded",
        "DefaultChanged",
    ]
    assert (
        ok(client.get(f"/v1/profiles/{pa['id']}", params={"version": 1}, headers=auth(auditor)))["name"]
        == "Abe"
    )
    exported = {r["aggregate_id"] for r in ndjson(client, auditor)}
    assert {first_a["id"], pa["id"], pb["id"]} <= exported

    vehicle = pb["vehicles"][0]["id"]
    for method, path, body in [
        ("POST", "/v1/profiles", {"name": "Intruder"}),
        ("PATCH", f"/v1/profiles/{pb['id']}", {"name": "Hacked"}),
        ("PUT", "/v1/profiles/default", {"profile_id": pa["id"]}),
        ("POST", f"/v1/profiles/{pb['id']}/archive", {}),
        ("POST", f"/v1/profiles/{pb['id']}/restore", {}),
        ("POST", f"/v1/profiles/{pb['id']}/vehicles", {"name": "Quad"}),
        ("PATCH", f"/v1/profiles/{pb['id']}/vehicles/{vehicle}", {"name": "Quad"}),
        ("DELETE", f"/v1/profiles/{pb['id']}/vehicles/{vehicle}", None),
    ]:
        response = client.request(method, path, json=body, headers=auth(auditor))
        assert response.status_code == 403, f"{method} {path}: {response.status_code} {response.text}"
    assert len(entries(client, owner_b, pb["id"])) == 3  # nothing happened

    # An owner reads its own account only.
    assert client.get(f"/v1/profiles/{pa['id']}/history", headers=auth(owner_b)).status_code == 404
    assert (
        client.get(f"/v1/profiles/{pa['id']}", params={"version": 1}, headers=auth(owner_b)).status_code
        == 404
    )
    assert client.get(f"/v1/profiles/{pa['id']}", headers=auth(owner_b)).status_code == 404
    mine = ndjson(client, owner_b)
    assert pb["id"] in {r["aggregate_id"] for r in mine}
    assert pa["id"] not in json.dumps(mine) and first_a["id"] not in json.dumps(mine)
    positions = [r["position"] for r in mine]
    assert positions == sorted(set(positions))
