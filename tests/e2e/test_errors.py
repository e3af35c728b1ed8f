"""Every error is an RFC 9457 problem document (application/problem+json with
type, title, status == HTTP status, detail) and never shows a traceback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from e2e_helpers import assert_problem, auth, create, error_fields, get


def test_unknown_route_is_a_404_problem(client: httpx.Client, shared_token: str) -> None:
    for path in ("/nope", "/v1", "/v1/profiles/x/y/z/w"):
        assert_problem(client.get(path, headers=auth(shared_token)), 404, "not-found")


def test_wrong_method_is_a_405_problem(client: httpx.Client, shared_token: str) -> None:
    response = client.delete("/v1/profiles", headers=auth(shared_token))
    assert_problem(response, 405, "method-not-allowed")
    # Starlette names only the methods of the first matching route (POST), not
    # GET too; the header is there and names a method the path supports.
    allowed = {m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()}
    assert allowed and allowed <= {"GET", "POST"}, response.headers
    assert_problem(client.put("/healthz"), 405)


def test_malformed_json_is_a_422_problem(client: httpx.Client, shared_token: str) -> None:
    headers = auth(shared_token, **{"Content-Type": "application/json"})
    for raw in (b"{", b"not json", b'{"name": "A",}', b"[1, 2]", b'"just a string"', b"\xff\xfe"):
        assert_problem(client.post("/v1/profiles", content=raw, headers=headers), 422, "validation")


def test_non_uuid_path_is_a_422_problem_naming_the_parameter(client: httpx.Client, shared_token: str) -> None:
    h = auth(shared_token)
    cases = [
        ("GET", "/v1/profiles/not-a-uuid", None, "profile_id"),
        ("PATCH", "/v1/profiles/123", {"name": "A"}, "profile_id"),
        ("POST", "/v1/profiles/zzz/archive", None, "profile_id"),
        ("PATCH", f"/v1/profiles/{uuid.uuid4()}/vehicles/nope", {"name": "A"}, "vehicle_id"),
    ]
    for method, path, payload, field in cases:
        body = assert_problem(client.request(method, path, json=payload, headers=h), 422, "validation")
        assert error_fields(body) == [field], (path, body)


@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten"])
def test_out_of_range_limit_is_422(client: httpx.Client, shared_token: str, limit: str) -> None:
    response = client.get("/v1/profiles", params={"limit": limit}, headers=auth(shared_token))
    assert error_fields(assert_problem(response, 422, "validation")) == ["limit"]


def test_limits_at_the_bounds_are_accepted(client: httpx.Client, shared_token: str) -> None:
    for limit in ("1", "200"):
        assert (
            client.get("/v1/profiles", params={"limit": limit}, headers=auth(shared_token)).status_code == 200
        )


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        "bm90IGEgY3Vyc29y",  # base64 of "not a cursor"
        "MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHxub3QtYS11dWlk",  # "<iso time>|not-a-uuid"
        "fGFiYw",  # "|abc"
        "_-_-",
        "%%%",
    ],
)
def test_bad_cursor_is_422_naming_cursor(client: httpx.Client, shared_token: str, cursor: str) -> None:
    response = client.get("/v1/profiles", params={"cursor": cursor}, headers=auth(shared_token))
    body = assert_problem(response, 422, "validation")
    assert error_fields(body) == ["cursor"]


def test_bad_include_archived_is_422(client: httpx.Client, shared_token: str) -> None:
    response = client.get("/v1/profiles", params={"include_archived": "maybe"}, headers=auth(shared_token))
    assert error_fields(assert_problem(response, 422)) == ["include_archived"]


def test_wrong_body_types_are_422_naming_the_field(client: httpx.Client, shared_token: str) -> None:
    h = auth(shared_token)
    cases = [
        ({"name": ["A"]}, "name"),
        ({"name": "A", "vehicles": "Kart"}, "vehicles"),
        ({"name": "A", "vehicles": [{"name": "K", "race_number": 7}]}, "vehicles.0.race_number"),
        ({"name": "A", "details": {"nested": {"x": 1}}}, None),
        ({"name": "A", "reason": "r" * 501}, "reason"),
    ]
    for payload, field in cases:
        body = assert_problem(client.post("/v1/profiles", json=payload, headers=h), 422, "validation")
        assert body["errors"], body
        if field is not None:
            assert body["errors"][0]["field"] == field, body


def test_x_reason_header_longer_than_500_is_422(client: httpx.Client, shared_token: str) -> None:
    pid = create(client, shared_token, "Reasoned")["id"]
    response = client.patch(
        f"/v1/profiles/{pid}", json={"name": "New"}, headers=auth(shared_token, **{"X-Reason": "r" * 501})
    )
    assert error_fields(assert_problem(response, 422)) == ["X-Reason"]
    assert get(client, shared_token, pid)["name"] == "Reasoned"
    ok = client.patch(
        f"/v1/profiles/{pid}", json={"name": "New"}, headers=auth(shared_token, **{"X-Reason": "r" * 500})
    )
    assert ok.status_code == 200


def test_problem_documents_name_the_request_path(client: httpx.Client, shared_token: str) -> None:
    path = f"/v1/profiles/{uuid.uuid4()}"
    body = assert_problem(client.get(path, headers=auth(shared_token)), 404)
    assert body.get("instance") == path
    assert body["type"].startswith("https://")


def test_a_body_that_is_not_json_is_415(client: httpx.Client, shared_token: str) -> None:
    for media_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        response = client.post(
            "/v1/profiles",
            content=b'{"name": "A"}',
            headers=auth(shared_token, **{"Content-Type": media_type}),
        )
        assert_problem(response, 415)
    charset = client.post(
        "/v1/profiles",
        content=b'{"name": "Charset"}',
        headers=auth(shared_token, **{"Content-Type": "application/json; charset=utf-8"}),
    )
    assert charset.status_code == 201, charset.text


def test_an_oversized_body_is_413(client: httpx.Client, shared_token: str) -> None:
    huge = {"name": "A", "reason": "r" * (70 * 1024)}
    assert_problem(client.post("/v1/profiles", json=huge, headers=auth(shared_token)), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is only known while reading
        for _ in range(70):
            yield b" " * 1024
        yield b'{"name": "A"}'

    chunked = client.post(
        "/v1/profiles", content=chunks(), headers=auth(shared_token, **{"Content-Type": "application/json"})
    )
    assert_problem(chunked, 413)
