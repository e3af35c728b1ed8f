"""The audit HTTP API in process (TestClient on the real stack and PostgreSQL):
X-Request-ID and reasons on events, roles, history, time travel, the default
timeline and the NDJSON export.

One database and one app serve the module; every test uses fresh accounts."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from api.app import create_app
from domain.roster import roster_id
from infrastructure.container import Container

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)$")
ENTRY_KEYS = {
    "position",
    "aggregate_id",
    "aggregate_type",
    "version",
    "type",
    "recorded_at",
    "actor",
    "reason",
    "request_id",
    "data",
}


@pytest.fixture(scope="module")
def shared(module_container: Container) -> Container:
    return module_container


@pytest.fixture(scope="module")
def client(shared: Container) -> Iterator[TestClient]:
    # Unhandled errors answer 500 as in production instead of raising here.
    with TestClient(create_app(shared), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def owner(shared: Container) -> Callable[[], tuple[str, str]]:
    """Makes a fresh owner account: returns (account id, token)."""

    def make() -> tuple[str, str]:
        account = shared.accounts.create(f"owner-{uuid.uuid4().hex[:8]}")
        return str(account.account_id), account.token

    return make


@pytest.fixture(scope="module")
def auditor(shared: Container) -> str:
    return shared.accounts.create("the auditor", "auditor").token


def auth(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **{k.replace("_", "-"): v for k, v in headers.items()}}


def ok(response: Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    return response.json()


def create(client: TestClient, token: str, name: str, **body: Any) -> dict[str, Any]:
    return ok(client.post("/v1/profiles", json={"name": name, **body}, headers=auth(token)), 201)


def history(client: TestClient, token: str, profile_id: str, **params: Any) -> Response:
    return client.get(f"/v1/profiles/{profile_id}/history", params=params, headers=auth(token))


def all_history(client: TestClient, token: str, profile_id: str) -> list[dict[str, Any]]:
    body = ok(history(client, token, profile_id, limit=200))
    assert body["next_cursor"] is None
    return body["items"]  # type: ignore[no-any-return]


def export(client: TestClient, token: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/audit/events", params=params, headers=auth(token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == "application/x-ndjson"
    assert response.text == "" or response.text.endswith("\n")
    return [json.loads(line) for line in response.text.splitlines()]


def problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()  # type: ignore[no-any-return]


# --- X-Request-ID and reasons ------------------------------------------------------


def test_a_client_request_id_is_echoed_and_recorded_on_every_event_of_the_command(
    client: TestClient, owner: Callable[[], tuple[str, str]]
) -> None:
    account, token = owner()
    response = client.post(
        "/v1/profiles", json={"name": "Ann"}, headers=auth(token, X_Request_ID="client-req-0001")
    )
    body = ok(response, 201)
    assert response.headers["X-Request-ID"] == "client-req-0001"

    entries = all_history(client, token, body["id"])
    assert [(e["type"], e["request_id"], e["actor"]) for e in entries] == [
        ("Created", "client-req-0001", account),
        ("MemberAdded", "client-req-0001", account),
        ("DefaultChanged", "client-req-0001", account),
    ]


def test_without_a_request_id_one_is_generated_returned_and_recorded(
    client: TestClient, owner: Callable[[], tuple[str, str]]
) -> None:
    _, token = owner()
    first = client.post("/v1/profiles", json={"name": "Ann"}, headers=auth(token))
    second = client.patch(f"/v1/profiles/{first.json()['id']}", json={"name": "Anna"}, headers=auth(token))
    ok(second)
    generated = [first.headers["X-Request-ID"], second.headers["X-Request-ID"]]
    assert all(re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", g) for g in generated)
    assert generated[0] != generated[1]
    entries = all_history(client, token, first.json()["id"])
    assert [e["request_id"] for e in entries] == [generated[0]] * 3 + [generated[1]]


@pytest.mark.parametrize("bad", ["has space", "x" * 65, "semi;colon", ""])
def test_a_malformed_request_id_is_replaced(
    client: TestClient, owner: Callable[[], tuple[str, str]], bad: str
) -> None:
    _, token = owner()
    response = client.post("/v1/profiles", json={"name": "Ann"}, headers=auth(token, X_Request_ID=bad))
    body = ok(response, 201)
    given = response.headers["X-Request-ID"]
    assert given != bad and re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", given)
    assert all_history(client, token, body["id"])[0]["request_id"] == given


def test_every_response_carries_a_request_id(client: TestClient, auditor: str) -> None:
    for response in (
        client.get("/healthz"),
        client.get("/v1/profiles"),  # 401
        client.get(f"/v1/profiles/{uuid.uuid4()}/history", headers=auth(auditor)),  # 404
        client.get("/v1/audit/defaults", headers=auth(auditor, X_Request_ID="mine-1")),  # 422
    ):
        assert response.headers.get("X-Request-ID"), response.status_code
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc:1.2_3-4"}).headers["X-Request-ID"]
        == "abc:1.2_3-4"
    )


def test_an_unexpected_error_still_answers_with_the_request_id(
    client: TestClient,
    shared: Container,
    owner: Callable[[], tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """X-Request-ID is how an operator finds the request in the logs: a 500
    needs it most."""
    _, token = owner()
    pid = create(client, token, "Ann")["id"]

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(shared.audit, "history", broken)
    response = client.get(f"/v1/profiles/{pid}/history", headers=auth(token, X_Request_ID="trace-500"))
    problem(response, 500)
    assert response.headers.get("X-Request-ID") == "trace-500"


def test_reasons_come_from_x_reason_or_the_body_which_wins(
    client: TestClient, owner: Callable[[], tuple[str, str]]
) -> None:
    _, token = owner()
    p1 = create(client, token, "Ann", reason="signed up")["id"]
    p2 = ok(
        client.post("/v1/profiles", json={"name": "Bob"}, headers=auth(token, X_Reason="from header")), 201
    )["id"]
    ok(client.patch(f"/v1/profiles/{p1}", json={"name": "Anna"}, headers=auth(token, X_Reason="typo fix")))
    ok(
        client.patch(
            f"/v1/profiles/{p1}",
            json={"name": "Annie", "reason": "body wins"},
            headers=auth(token, X_Reason="header loses"),
        )
    )
    ok(client.put("/v1/profiles/default", json={"profile_id": p2, "reason": "swap"}, headers=auth(token)))
    ok(
        client.post(
            f"/v1/profiles/{p1}/vehicles", json={"name": "Kart"}, headers=auth(token, X_Reason="new kart")
        ),
        201,
    )
    ok(client.post(f"/v1/profiles/{p1}/archive", json={"reason": "pause"}, headers=auth(token)))
    ok(client.post(f"/v1/profiles/{p1}/restore", headers=auth(token, X_Reason="back again")))
    ok(client.post(f"/v1/profiles/{p1}/restore", json={"reason": None}, headers=auth(token)), 409)

    reasons = [(e["type"], e["reason"]) for e in all_history(client, token, p1)]
    assert reasons == [
        ("Created", "signed up"),
        ("MemberAdded", "signed up"),
        ("DefaultChanged", "signed up"),
        ("Renamed", "typo fix"),
        ("Renamed", "body wins"),
        ("DefaultChanged", "swap"),
        ("VehicleAdded", "new kart"),
        ("Archived", "pause"),
        ("MemberRemoved", "pause"),
        ("Restored", "back again"),
        ("MemberAdded", "back again"),
    ]
    assert next(e["reason"] for e in all_history(client, token, p2)) == "from header"


def test_without_any_reason_the_reason_is_null(
    client: TestClient, owner: Callable[[], tuple[str, str]]
) -> None:
    _, token = owner()
    pid = create(client, token, "Ann")["id"]
    assert {e["reason"] for e in all_history(client, token, pid)} == {None}


def test_vehicle_command_bodies_accept_a_reason_too(
    client: TestClient, owner: Callable[[], tuple[str, str]]
) -> None:
    """The reason may be given as a `reason` field on any command body."""
    _, token = owner()
    pid = create(client, token, "Ann")["id"]
    added = client.post(
        f"/v1/profiles/{pid}/vehicles", json={"name": "Kart", "reason": "bought one"}, headers=auth(token)
    )
    body = ok(added, 201)
    vehicle = body["vehicles"][0]["id"]
    changed = client.patch(
        f"/v1/profiles/{pid}/vehicles/{vehicle}",
        json={"race_number": "7", "reason": "new number"},
        headers=auth(token),
    )
    ok(changed)
    assert [e["reason"] for e in all_history(client, token, pid)][-2:] == ["bought one", "new number"]


# --- roles ---------------------------------------------------------------------------


# Every command route, in an order an owner can run them one after the other.
COMMANDS: dict[tuple[str, str], Any] = {
    ("PATCH", "/v1/profiles/{profile_id}/vehicles/{vehicle_id}"): {"name": "Other kart"},
    ("DELETE", "/v1/profiles/{profile_id}/vehicles/{vehicle_id}"): None,
    ("POST", "/v1/profiles/{profile_id}/vehicles"): {"name": "Kart"},
    ("PATCH", "/v1/profiles/{profile_id}"): {"name": "Renamed"},
    ("PUT", "/v1/profiles/default"): {"profile_id": "{other_id}"},
    ("POST", "/v1/profiles/{profile_id}/archive"): {"successor_id": "{other_id}"},
    ("POST", "/v1/profiles/{profile_id}/restore"): {},
    ("POST", "/v1/profiles"): {"name": "Newcomer"},
    ("DELETE", "/v1/profiles/{profile_id}"): None,
}


def command_requests(
    client: TestClient, profile_id: str, other_id: str, vehicle_id: str
) -> list[tuple[str, str, Any]]:
    """One valid request for every POST/PUT/PATCH/DELETE route under /v1/profiles
    (taken from the OpenAPI document, so a new command route needs an entry here)."""
    schema = client.app.openapi()  # type: ignore[attr-defined]
    routes = {
        (method.upper(), template)
        for template, operations in schema["paths"].items()
        if template.startswith("/v1/profiles")
        for method in operations
        if method.upper() in {"POST", "PUT", "PATCH", "DELETE"}
    }
    assert routes == set(COMMANDS), routes ^ set(COMMANDS)
    requests = []
    for (method, template), body in COMMANDS.items():
        path = template.format(profile_id=profile_id, vehicle_id=vehicle_id)
        if body is not None:
            body = {k: (other_id if v == "{other_id}" else v) for k, v in body.items()}
        requests.append((method, path, body))
    return requests


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_read_all_roles_get_403_on_every_command_and_change_nothing(
    client: TestClient, shared: Container, owner: Callable[[], tuple[str, str]], role: str
) -> None:
    _, token = owner()
    reader = shared.accounts.create(f"{role}-{uuid.uuid4().hex[:6]}", role).token
    p1 = create(client, token, "Ann", vehicles=[{"name": "Kart"}])
    p2 = create(client, token, "Bob")
    head = shared.audit.log.head()

    for method, path, body in command_requests(client, p1["id"], p2["id"], p1["vehicles"][0]["id"]):
        kwargs: dict[str, Any] = {"headers": auth(reader)}
        if body is not None:
            kwargs["json"] = body
        response = client.request(method, path, **kwargs)
        assert response.status_code == 403, f"{method} {path}: {response.status_code} {response.text}"
        assert response.headers["content-type"].startswith("application/problem+json")
    assert shared.audit.log.head() == head


def test_an_owner_is_allowed_the_same_commands(
    client: TestClient, owner: Callable[[], tuple[str, str]]
) -> None:
    """The requests of the 403 test are valid: an owner gets every one through."""
    _, token = owner()
    p1 = create(client, token, "Ann", vehicles=[{"name": "Kart"}])
    p2 = create(client, token, "Bob")
    for method, path, body in command_requests(client, p1["id"], p2["id"], p1["vehicles"][0]["id"]):
        kwargs: dict[str, Any] = {"headers": auth(token)}
        if body is not None:
            kwargs["json"] = body
        response = client.request(method, path, **kwargs)
        assert response.status_code in (200, 201), f"{method} {path}: {response.status_code} {response.text}"


def test_an_auditor_reads_every_account_s_history_states_and_defaults(
    client: TestClient, owner: Callable[[], tuple[str, str]], auditor: str
) -> None:
    acc_a, token_a = owner()
    acc_b, token_b = owner()
    pa = create(client, token_a, "Ann")["id"]
    pb0 = create(client, token_b, "Zed")["id"]
    pb = create(client, token_b, "Bob")["id"]
    ok(client.patch(f"/v1/profiles/{pb}", json={"name": "Bobby"}, headers=auth(token_b)))

    assert all_history(client, auditor, pa) == all_history(client, token_a, pa)
    assert all_history(client, auditor, pb) == all_history(client, token_b, pb)
    assert ok(client.get(f"/v1/profiles/{pb}", params={"version": 1}, headers=auth(auditor)))["name"] == "Bob"
    assert (
        ok(
            client.get(
                f"/v1/profiles/{pb}", params={"as_of": datetime.now(UTC).isoformat()}, headers=auth(auditor)
            )
        )["name"]
        == "Bobby"
    )
    for account, pid in ((acc_a, pa), (acc_b, pb0)):
        items = ok(client.get("/v1/audit/defaults", params={"account_id": account}, headers=auth(auditor)))[
            "items"
        ]
        assert [i["to_profile_id"] for i in items] == [pid]


def test_an_owner_cannot_read_another_account_s_audit_data(
    client: TestClient, owner: Callable[[], tuple[str, str]]
) -> None:
    acc_a, token_a = owner()
    _, token_b = owner()
    pa = create(client, token_a, "Ann")["id"]
    create(client, token_b, "Bob")

    problem(history(client, token_b, pa), 404)
    problem(client.get(f"/v1/profiles/{pa}", params={"version": 1}, headers=auth(token_b)), 404)
    problem(
        client.get(
            f"/v1/profiles/{pa}", params={"as_of": datetime.now(UTC).isoformat()}, headers=auth(token_b)
        ),
        404,
    )
    problem(client.get("/v1/audit/defaults", params={"account_id": acc_a}, headers=auth(token_b)), 404)
    # the owner's own reads work and say the same thing for an unknown id
    problem(history(client, token_a, str(uuid.uuid4())), 404)
    assert len(all_history(client, token_a, pa)) == 3


# --- history -------------------------------------------------------------------------


def busy_profile(client: TestClient, token: str) -> tuple[str, str]:
    """A profile with profile and roster entries interleaved; returns (p1, p2)."""
    p1 = create(client, token, "Ann")["id"]
    p2 = create(client, token, "Bob")["id"]
    for i in range(3):
        ok(client.patch(f"/v1/profiles/{p1}", json={"name": f"Ann {i}"}, headers=auth(token)))
        ok(
            client.put(
                "/v1/profiles/default", json={"profile_id": p2 if i % 2 == 0 else p1}, headers=auth(token)
            )
        )
    ok(client.post(f"/v1/profiles/{p1}/archive", headers=auth(token)))
    ok(client.post(f"/v1/profiles/{p1}/restore", headers=auth(token)))
    return p1, p2


def test_history_entries_have_the_documented_fields(
    client: TestClient, owner: Callable[[], tuple[str, str]]
) -> None:
    account, token = owner()
    p1, _ = busy_profile(client, token)
    entries = all_history(client, token, p1)
    assert len(entries) == 13
    for entry in entries:
        assert set(entry) >= ENTRY_KEYS, set(entry)
        assert RFC3339_UTC.match(entry["recorded_at"]), entry["recorded_at"]
        assert entry["actor"] == account
        assert isinstance(entry["data"], dict)
    assert [e["version"] for e in entries if e["aggregate_type"] == "RacerProfile"] == [1, 2, 3, 4, 5, 6]
    positions = [e["position"] for e in entries]
    assert positions == sorted(set(positions))
    assert [e.get("concerns") for e in entries if e["aggregate_type"] == "Roster"] == [
        "joined the active profiles",
        "became the default",
        "stopped being the default",
        "became the default",
        "stopped being the default",
        "left the active profiles",
        "joined the active profiles",
    ]


def test_history_pages_cover_every_entry_once(
    client: TestClient, owner: Callable[[], tuple[str, str]]
) -> None:
    _, token = owner()
    p1, _ = busy_profile(client, token)
    full = all_history(client, token, p1)
    assert len(full) == 13
    for limit in (1, 2, 5, 12, 13, 14):
        seen: list[dict[str, Any]] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = (
                {"limit": limit} if cursor is None else {"limit": limit, "cursor": cursor}
            )
            body = ok(history(client, token, p1, **params))
            pages += 1
            assert 1 <= len(body["items"]) <= limit
            seen.extend(body["items"])
            if body["next_cursor"] is None:
                break
            assert isinstance(body["next_cursor"], str) and body["next_cursor"]
            cursor = body["next_cursor"]
        assert seen == full, limit
        assert pages == -(-len(full) // limit), limit


def test_a_history_cursor_resumes_after_its_page_and_limits_are_checked(
    client: TestClient, owner: Callable[[], tuple[str, str]]
) -> None:
    _, token = owner()
    pid = create(client, token, "Ann")["id"]
    ok(client.patch(f"/v1/profiles/{pid}", json={"name": "Ann B"}, headers=auth(token)))
    entries = all_history(client, token, pid)
    first = ok(history(client, token, pid, limit=len(entries) - 1))
    assert first["items"] == entries[:-1] and first["next_cursor"]
    assert ok(history(client, token, pid, cursor=first["next_cursor"])) == {
        "items": entries[-1:],
        "next_cursor": None,
    }
    # An entry written later shows up after the cursor's page, nothing before it again.
    ok(client.patch(f"/v1/profiles/{pid}", json={"name": "Ann C"}, headers=auth(token)))
    resumed = ok(history(client, token, pid, cursor=first["next_cursor"]))
    assert resumed["items"][0] == entries[-1] and len(resumed["items"]) == 2
    assert resumed["items"][1]["data"].get("name") == "Ann C"
    for params in (
        {"limit": 0},
        {"limit": 201},
        {"cursor": "garbage!"},
        {"cursor": "YWZ0ZXI6LTE"},
        {"limit": "x"},
    ):
        body = problem(history(client, token, pid, **params), 422)
        assert [e["field"] for e in body["errors"]] == [next(iter(params))], body


def test_history_needs_a_token(client: TestClient, owner: Callable[[], tuple[str, str]]) -> None:
    _, token = owner()
    pid = create(client, token, "Ann")["id"]
    problem(client.get(f"/v1/profiles/{pid}/history"), 401)


# --- time travel ---------------------------------------------------------------------


def test_version_and_as_of_return_the_profile_as_it_was(
    client: TestClient, owner: Callable[[], tuple[str, str]]
) -> None:
    _, token = owner()
    # The account's roster exists already (its first profile has a test of its own).
    p0 = create(client, token, "Zero")["id"]
    ok(client.post(f"/v1/profiles/{p0}/archive", headers=auth(token)))
    before = datetime.now(UTC)
    p1 = create(client, token, "Ann", vehicles=[{"name": "Kart"}])
    t1 = datetime.now(UTC)
    p2 = create(client, token, "Bob")
    ok(client.patch(f"/v1/profiles/{p1['id']}", json={"name": "Anna"}, headers=auth(token)))
    t2 = datetime.now(UTC)
    ok(client.put("/v1/profiles/default", json={"profile_id": p2["id"]}, headers=auth(token)))
    t3 = datetime.now(UTC)
    ok(client.post(f"/v1/profiles/{p1['id']}/archive", headers=auth(token)))

    def at(**params: Any) -> Response:
        return client.get(f"/v1/profiles/{p1['id']}", params=params, headers=auth(token))

    v1 = at(version=1)
    assert ok(v1)["name"] == "Ann" and v1.json()["is_default"] is True
    assert v1.headers["ETag"] == '"1"'
    assert v1.json()["vehicles"] == p1["vehicles"]
    assert v1.json()["created_at"] == p1["created_at"]
    v2 = ok(at(version=2))
    assert (v2["name"], v2["is_default"], v2["archived"], v2["version"]) == ("Anna", True, False, 2)
    v3 = ok(at(version=3))
    assert (v3["name"], v3["is_default"], v3["archived"]) == ("Anna", False, True)
    assert ok(at(version=3)) == ok(client.get(f"/v1/profiles/{p1['id']}", headers=auth(token)))

    assert (ok(at(as_of=t1.isoformat()))["name"], ok(at(as_of=t1.isoformat()))["is_default"]) == ("Ann", True)
    assert (ok(at(as_of=t2.isoformat()))["name"], ok(at(as_of=t2.isoformat()))["is_default"]) == (
        "Anna",
        True,
    )
    s3 = ok(at(as_of=t3.isoformat()))
    assert (s3["name"], s3["is_default"], s3["archived"], s3["version"]) == ("Anna", False, False, 2)
    zulu = t3.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert ok(at(as_of=zulu)) == s3
    assert ok(at(as_of=t3.astimezone(timezone(timedelta(hours=-5))).isoformat())) == s3

    problem(at(as_of=before.isoformat()), 404)
    problem(at(as_of="2000-01-01T00:00:00Z"), 404)
    problem(at(version=4), 404)
    problem(at(version=10_000), 404)


def test_time_travel_refuses_bad_parameters(client: TestClient, owner: Callable[[], tuple[str, str]]) -> None:
    _, token = owner()
    pid = create(client, token, "Ann")["id"]
    now = datetime.now(UTC)

    def at(**params: Any) -> Response:
        return client.get(f"/v1/profiles/{pid}", params=params, headers=auth(token))

    both = problem(at(version=1, as_of=now.isoformat()), 422)
    assert [e["field"] for e in both["errors"]] == ["as_of"]
    naive = problem(at(as_of=now.replace(tzinfo=None).isoformat()), 422)
    assert [e["field"] for e in naive["errors"]] == ["as_of"]
    problem(at(as_of="yesterday"), 422)
    problem(at(version=0), 422)
    problem(at(version=-1), 422)
    problem(at(version="one"), 422)
    problem(client.get(f"/v1/profiles/{uuid.uuid4()}", params={"version": 1}, headers=auth(token)), 404)


def test_time_travel_of_an_account_s_first_profile_at_version_one(
    client: TestClient, owner: Callable[[], tuple[str, str]]
) -> None:
    _, token = owner()
    pid = create(client, token, "Ann")["id"]
    state = ok(client.get(f"/v1/profiles/{pid}", params={"version": 1}, headers=auth(token)))
    assert (state["name"], state["is_default"], state["version"]) == ("Ann", True, 1)


# --- default timeline ----------------------------------------------------------------


def test_the_default_timeline_over_http(
    client: TestClient, owner: Callable[[], tuple[str, str]], auditor: str
) -> None:
    account, token = owner()
    p1 = create(client, token, "Ann")["id"]
    p2 = create(client, token, "Bob")["id"]
    ok(client.put("/v1/profiles/default", json={"profile_id": p2}, headers=auth(token, X_Reason="rotation")))
    ok(client.post(f"/v1/profiles/{p2}/archive", json={"reason": "retired"}, headers=auth(token)))

    mine = ok(client.get("/v1/audit/defaults", headers=auth(token)))["items"]
    assert [(i["from_profile_id"], i["to_profile_id"], i["actor"], i["reason"]) for i in mine] == [
        (None, p1, account, None),
        (p1, p2, account, "rotation"),
        (p2, p1, account, "retired"),
    ]
    assert all(RFC3339_UTC.match(i["changed_at"]) for i in mine)
    times = [datetime.fromisoformat(i["changed_at"]) for i in mine]
    assert times == sorted(times)
    assert (
        ok(client.get("/v1/audit/defaults", params={"account_id": account}, headers=auth(token)))["items"]
        == mine
    )
    assert (
        ok(client.get("/v1/audit/defaults", params={"account_id": account}, headers=auth(auditor)))["items"]
        == mine
    )

    missing = problem(client.get("/v1/audit/defaults", headers=auth(auditor)), 422)
    assert [e["field"] for e in missing["errors"]] == ["account_id"]
    problem(client.get("/v1/audit/defaults"), 401)


# --- export --------------------------------------------------------------------------


def test_the_owner_export_holds_exactly_its_account_s_events_in_order(
    client: TestClient, shared: Container, owner: Callable[[], tuple[str, str]]
) -> None:
    account_a, token_a = owner()
    _, token_b = owner()
    pa1 = create(client, token_a, "Ann")["id"]
    pb = create(client, token_b, "Bob")["id"]
    pa2 = create(client, token_a, "Cy")["id"]
    ok(client.post(f"/v1/profiles/{pa1}/archive", headers=auth(token_a)))
    ok(client.patch(f"/v1/profiles/{pb}", json={"name": "Bobby"}, headers=auth(token_b)))

    records = export(client, token_a)
    mine = {pa1, pa2, str(roster_id(account_a))}
    assert {r["aggregate_id"] for r in records} == mine
    expected = [e.position for e in shared.audit.log.of(*map(uuid.UUID, mine))]
    assert [r["position"] for r in records] == expected
    assert pb not in json.dumps(records)
    for record in records:
        assert record["actor"] in (account_a, None)  # (see the test just below)
        assert RFC3339_UTC.match(record["recorded_at"])
        stored = next(
            e
            for e in shared.audit.log.of(uuid.UUID(record["aggregate_id"]))
            if e.version == record["version"]
        )
        assert base64.b64decode(record["stored_state"]) == stored.stored.state
        assert record["topic"] == stored.stored.topic


def test_every_exported_event_carries_its_actor_and_request_id(
    client: TestClient, owner: Callable[[], tuple[str, str]]
) -> None:
    """Each stored event carries the actor and the request id, the roster's
    Created event of a new account included."""
    account, token = owner()
    response = client.post(
        "/v1/profiles", json={"name": "Ann"}, headers=auth(token, X_Request_ID="rq-first-ever")
    )
    ok(response, 201)
    records = export(client, token)
    assert [(r["aggregate_type"], r["type"]) for r in records] == [
        ("RacerProfile", "Created"),
        ("Roster", "Created"),
        ("Roster", "MemberAdded"),
        ("Roster", "DefaultChanged"),
    ]
    assert [(r["actor"], r["request_id"]) for r in records] == [(account, "rq-first-ever")] * 4


def test_the_auditor_export_holds_every_account_s_events(
    client: TestClient, shared: Container, owner: Callable[[], tuple[str, str]], auditor: str
) -> None:
    _, token_a = owner()
    _, token_b = owner()
    pa = create(client, token_a, "Ann")["id"]
    pb = create(client, token_b, "Bob")["id"]
    records = export(client, auditor)
    positions = [r["position"] for r in records]
    assert positions == [e.position for e in shared.audit.log.iterate(0)]
    assert positions[-1] == shared.audit.log.head()
    assert {pa, pb} <= {r["aggregate_id"] for r in records}


def test_export_pages_resume_after_a_position_without_gaps_or_repeats(
    client: TestClient, owner: Callable[[], tuple[str, str]], auditor: str
) -> None:
    _, token = owner()
    busy_profile(client, token)
    for who, step in ((token, 7), (auditor, 40)):
        full = export(client, who)
        assert len(full) >= 16
        split = full[len(full) // 2]["position"]
        first = export(client, who, limit=len(full) // 2 + 1)
        assert first[-1]["position"] == split
        assert first + export(client, who, after=split) == full

        pages: list[dict[str, Any]] = []
        after = 0
        while True:
            page = export(client, who, after=after, limit=step)
            if not page:
                break
            assert len(page) <= step
            pages.extend(page)
            after = page[-1]["position"]
        assert pages == full
        assert export(client, who, after=full[-1]["position"]) == []
        problem(client.get("/v1/audit/events", params={"limit": 0}, headers=auth(who)), 422)
        problem(client.get("/v1/audit/events", params={"after": -1}, headers=auth(who)), 422)
