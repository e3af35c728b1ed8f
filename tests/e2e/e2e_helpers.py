"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import httpx

PROFILE_KEYS = {
    "id",
    "name",
    "is_default",
    "archived",
    "vehicles",
    "vehicle_count",
    "version",
    "created_at",
    "updated_at",
}
VEHICLE_KEYS = {"id", "name", "vehicle_class", "race_number"}
PROBLEM_MEDIA_TYPE = "application/problem+json"
TRACEBACK_MARKERS = ("Traceback", 'File "', "psycopg", "eventsourcing", '.py", line')


def auth(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def assert_problem(response: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem document with the given status; returns its body."""
    assert response.status_code == status, f"{response.status_code} {response.text}"
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    assert media_type == PROBLEM_MEDIA_TYPE, response.headers.get("content-type")
    assert_no_traceback(response)
    body = response.json()
    assert isinstance(body, dict), body
    for key in ("type", "title", "status", "detail"):
        assert key in body, f"problem without {key}: {body}"
    assert body["status"] == status == response.status_code
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    if kind is not None:
        assert body["type"].rsplit("/", 1)[-1] == kind, body
    return body


def assert_no_traceback(response: httpx.Response) -> None:
    for marker in TRACEBACK_MARKERS:
        assert marker not in response.text, f"{marker!r} leaked: {response.text[:2000]}"


def error_fields(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body.get("errors", [])]


def assert_profile_shape(body: dict[str, Any]) -> None:
    assert set(body) >= PROFILE_KEYS, set(body) ^ PROFILE_KEYS
    UUID(body["id"])
    assert isinstance(body["name"], str)
    assert isinstance(body["is_default"], bool)
    assert isinstance(body["archived"], bool)
    assert isinstance(body["version"], int) and body["version"] >= 1
    assert isinstance(body["vehicles"], list)
    assert body["vehicle_count"] == len(body["vehicles"])
    for vehicle in body["vehicles"]:
        assert set(vehicle) == VEHICLE_KEYS, vehicle
        UUID(vehicle["id"])
    created = datetime.fromisoformat(body["created_at"])
    updated = datetime.fromisoformat(body["updated_at"])
    assert created.tzinfo is not None and updated.tzinfo is not None
    assert updated >= created


def create(client: httpx.Client, token: str, name: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/profiles", json={"name": name, **fields}, headers=auth(token))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def get(client: httpx.Client, token: str, profile_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/profiles/{profile_id}", headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def list_all(client: httpx.Client, token: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/profiles", params=params, headers=auth(token))
    assert response.status_code == 200, response.text
    body = response.json()
    return body["items"]  # type: ignore[no-any-return]


def default_id(client: httpx.Client, token: str) -> str | None:
    response = client.get("/v1/profiles/default", headers=auth(token))
    if response.status_code == 404:
        assert_problem(response, 404)
        return None
    assert response.status_code == 200, response.text
    return response.json()["id"]  # type: ignore[no-any-return]
