"""Liveness, readiness and the published API description."""

from __future__ import annotations

import httpx
from e2e_helpers import auth, create


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_a_caught_up_leader_after_commands(client: httpx.Client, shared_token: str) -> None:
    pid = create(client, shared_token, "Ready")["id"]
    renamed = client.patch(f"/v1/profiles/{pid}", json={"name": "Steady"}, headers=auth(shared_token))
    assert renamed.status_code == 200
    position = int(renamed.headers["X-Position"])

    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["database"] == "ok"
    assert body["projection"] == "leader"
    assert body["lag"] == 0
    assert body["head"] == body["position"] >= position


def test_docs_and_openapi(client: httpx.Client) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    assert "openapi.json" in docs.text

    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    expected = {
        "/v1/profiles": {"get", "post"},
        "/v1/profiles/default": {"get", "put"},
        "/v1/profiles/{profile_id}": {"get", "patch"},
        "/v1/profiles/{profile_id}/archive": {"post"},
        "/v1/profiles/{profile_id}/restore": {"post"},
        "/v1/profiles/{profile_id}/vehicles": {"post"},
        "/v1/profiles/{profile_id}/vehicles/{vehicle_id}": {"patch", "delete"},
    }
    for path, methods in expected.items():
        assert path in paths, sorted(paths)
        assert methods <= set(paths[path]), (path, sorted(paths[path]))
    assert {"/healthz", "/readyz"} <= set(paths)
