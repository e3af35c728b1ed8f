"""The HTTP contract, one focused test per rule, on the real app in process
(TestClient) and PostgreSQL: ETag / If-Match, Idempotency-Key, cursor
pagination, problem details for every kind of error, CORS.

Complements tests/e2e (status codes and bodies of each endpoint over real
HTTP): here each test checks that a rule holds everywhere it applies, and
that a refused or replayed request writes nothing (the event log's head)."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from psycopg.sql import SQL, Identifier

from api.app import create_app
from api.problems import KINDS, PROBLEM_TYPES
from infrastructure.container import Container, build
from infrastructure.idempotency import TABLE as IDEMPOTENCY_TABLE

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def client(module_container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(module_container), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def token(module_container: Container) -> str:
    """An owner token of a fresh account."""
    return module_container.accounts.create(f"owner-{uuid.uuid4().hex[:8]}").token


def auth(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **{k.replace("_", "-"): v for k, v in headers.items()}}


def ok(response: Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    return response.json()


def problem(response: Response, status: int, kind: str) -> dict[str, Any]:
    """A problem document of a documented kind: its stable type URI and status."""
    assert response.status_code == status, f"{response.status_code} {response.text}"
    assert response.headers["content-type"].split(";")[0] == PROBLEM, response.headers
    body = response.json()
    assert body["type"] == PROBLEM_TYPES + kind, body
    assert KINDS[kind].status == status == body["status"], body
    assert body["title"] and body["detail"], body
    return body  # type: ignore[no-any-return]


def create(client: TestClient, token: str, name: str, **fields: Any) -> dict[str, Any]:
    return ok(client.post("/v1/profiles", json={"name": name, **fields}, headers=auth(token)), 201)  # type: ignore[no-any-return]


def etag_of(response: Response) -> int:
    value = response.headers["ETag"]
    assert value.startswith('"') and value.endswith('"'), value
    return int(value.strip('"'))


def head(container: Container) -> int:
    return container.audit.log.head()


# --- 1. ETag / If-Match -------------------------------------------------------------------------------


def _if_match_commands(
    client: TestClient, token: str
) -> list[tuple[str, Callable[[str | None], Response], str]]:
    """(name, send(if_match), path whose ETag the command checks) for every If-Match command."""
    default = create(client, token, "Default")["id"]
    p = create(client, token, "Target", vehicles=[{"name": "Kart"}, {"name": "Spare"}])
    pid, (v1, v2) = p["id"], [v["id"] for v in p["vehicles"]]
    archived = create(client, token, "Archived")["id"]
    ok(client.post(f"/v1/profiles/{archived}/archive", headers=auth(token)))

    def send(method: str, path: str, body: Any = None) -> Callable[[str | None], Response]:
        def run(if_match: str | None) -> Response:
            headers = auth(token) if if_match is None else auth(token, **{"If-Match": if_match})
            return client.request(method, path, json=body, headers=headers)

        return run

    profile = f"/v1/profiles/{pid}"
    return [
        ("rename", send("PATCH", profile, {"name": "Renamed"}), profile),
        ("add_vehicle", send("POST", f"{profile}/vehicles", {"name": "New kart"}), profile),
        ("change_vehicle", send("PATCH", f"{profile}/vehicles/{v1}", {"race_number": "12"}), profile),
        ("remove_vehicle", send("DELETE", f"{profile}/vehicles/{v2}"), profile),
        ("restore", send("POST", f"/v1/profiles/{archived}/restore"), f"/v1/profiles/{archived}"),
        ("set_default", send("PUT", "/v1/profiles/default", {"profile_id": pid}), "/v1/profiles/default"),
        (
            "archive",
            send("POST", f"/v1/profiles/{default}/archive", {"successor_id": pid}),
            f"/v1/profiles/{default}",
        ),
    ]


def test_if_match_guards_every_change_and_every_profile_response_has_its_etag(
    client: TestClient, module_container: Container, token: str
) -> None:
    for name, send, path in _if_match_commands(client, token):
        before = client.get(path, headers=auth(token))
        current = etag_of(before)
        if path != "/v1/profiles/default":  # the default's ETag is the roster's version
            assert current == before.json()["version"], name
        position = head(module_container)
        for stale in (current - 1, current + 5):
            body = problem(send(f'"{stale}"'), 412, "precondition-failed")
            assert body["current_version"] == current, (name, body)
        assert head(module_container) == position, f"{name}: a refused change wrote events"
        assert etag_of(client.get(path, headers=auth(token))) == current, name

        done = send(f'"{current}"')
        assert done.status_code in (200, 201), (name, done.text)
        assert etag_of(done) > current, name
        if path != "/v1/profiles/default":
            assert etag_of(done) == done.json()["version"], name
        after = client.get(path, headers=auth(token))
        assert etag_of(after) == etag_of(done), f"{name}: the ETag answered is not the one read back"
        # The ETag the command answered is already stale for the version before it.
        problem(send(f'"{current}"'), 412, "precondition-failed")


def test_without_if_match_a_command_applies_to_the_latest_state(
    client: TestClient, module_container: Container, token: str
) -> None:
    pid = create(client, token, "Shared")["id"]
    # Device A reads version 1; device B renames (version 2); A's guarded rename is refused...
    ok(client.patch(f"/v1/profiles/{pid}", json={"name": "From B"}, headers=auth(token)))
    stale = client.patch(
        f"/v1/profiles/{pid}", json={"name": "From A"}, headers=auth(token, **{"If-Match": '"1"'})
    )
    assert problem(stale, 412, "precondition-failed")["current_version"] == 2
    # ...while an unguarded one applies on top of B's.
    done = client.patch(f"/v1/profiles/{pid}", json={"name": "From A"}, headers=auth(token))
    assert ok(done)["version"] == 3 and done.headers["ETag"] == '"3"'
    # If-Match: * matches any version; a weak tag is compared by its version.
    archived = client.post(f"/v1/profiles/{pid}/archive", headers=auth(token, **{"If-Match": "*"}))
    assert ok(archived)["archived"] is True and archived.headers["ETag"] == '"4"'
    restored = client.post(f"/v1/profiles/{pid}/restore", headers=auth(token, **{"If-Match": 'W/"4"'}))
    assert ok(restored)["archived"] is False and restored.headers["ETag"] == '"5"'


# --- 2. Idempotency-Key --------------------------------------------------------------------------------

KEPT = ("etag", "location", "x-position", "content-type")


def _same_response(first: Response, again: Response) -> None:
    assert again.status_code == first.status_code, again.text
    assert again.content == first.content
    for name in KEPT:
        assert again.headers.get(name) == first.headers.get(name), name
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers


def test_a_retry_with_the_same_key_gets_the_first_response_and_writes_nothing(
    client: TestClient, module_container: Container, token: str
) -> None:
    pid = create(client, token, "Keyed", vehicles=[{"name": "Kart"}])["id"]
    vid = ok(client.get(f"/v1/profiles/{pid}", headers=auth(token)))["vehicles"][0]["id"]
    other = create(client, token, "Other")["id"]
    requests = [
        ("POST", "/v1/profiles", {"name": "Created once", "vehicles": [{"name": "K"}]}),
        ("PATCH", f"/v1/profiles/{pid}", {"name": "Renamed once"}),
        ("POST", f"/v1/profiles/{pid}/vehicles", {"name": "Added once"}),
        ("PATCH", f"/v1/profiles/{pid}/vehicles/{vid}", {"name": "Changed once"}),
        ("DELETE", f"/v1/profiles/{pid}/vehicles/{vid}", None),
        ("PUT", "/v1/profiles/default", {"profile_id": other}),
        ("POST", f"/v1/profiles/{other}/archive", None),
        ("POST", f"/v1/profiles/{other}/restore", {"reason": "back"}),
        ("PATCH", f"/v1/profiles/{uuid.uuid4()}", {"name": "Nobody"}),  # a refusal is kept too (404)
    ]
    for method, path, body in requests:
        key = str(uuid.uuid4())
        headers = auth(token, **{"Idempotency-Key": key})
        first = client.request(method, path, json=body, headers=headers)
        assert first.status_code < 500, first.text
        position = head(module_container)
        for _ in range(2):
            again = client.request(method, path, json=body, headers=headers)
            _same_response(first, again)
        assert head(module_container) == position, f"{method} {path}: a replay wrote events"
    names = [p["name"] for p in ok(client.get("/v1/profiles", headers=auth(token)))["items"]]
    assert names.count("Created once") == 1


def test_a_key_reused_with_another_body_or_path_is_422_and_keys_belong_to_an_account(
    client: TestClient, module_container: Container, token: str
) -> None:
    key = str(uuid.uuid4())
    first = ok(
        client.post("/v1/profiles", json={"name": "Ann"}, headers=auth(token, **{"Idempotency-Key": key})),
        201,
    )
    position = head(module_container)
    other_body = client.post(
        "/v1/profiles", json={"name": "Bob"}, headers=auth(token, **{"Idempotency-Key": key})
    )
    body = problem(other_body, 422, "validation")
    assert [e["field"] for e in body["errors"]] == ["Idempotency-Key"]
    other_path = client.patch(
        f"/v1/profiles/{first['id']}", json={"name": "Ann"}, headers=auth(token, **{"Idempotency-Key": key})
    )
    problem(other_path, 422, "validation")
    assert head(module_container) == position
    for bad in (b"", b"x" * 256, "naïve".encode("latin-1"), b"two words"):
        response = client.post(
            "/v1/profiles", json={"name": "Ann"}, headers={**auth(token), "Idempotency-Key": bad}
        )  # type: ignore[dict-item]
        assert [e["field"] for e in problem(response, 422, "validation")["errors"]] == ["Idempotency-Key"]
    # Another account's identical key is its own.
    stranger = module_container.accounts.create("stranger").token
    theirs = client.post(
        "/v1/profiles", json={"name": "Ann"}, headers=auth(stranger, **{"Idempotency-Key": key})
    )
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["id"] != first["id"]


def test_concurrent_requests_with_one_key_write_once(
    client: TestClient, module_container: Container, token: str
) -> None:
    key = str(uuid.uuid4())
    start = threading.Barrier(8)
    responses: list[Response] = []

    def post() -> None:
        start.wait(timeout=30)
        responses.append(
            client.post(
                "/v1/profiles", json={"name": "Racing"}, headers=auth(token, **{"Idempotency-Key": key})
            )
        )

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = sorted(r.status_code for r in responses)
    assert len(responses) == 8 and set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status_code == 201]
    assert len({r.content for r in created}) == 1, "two different creations answered"
    assert sum("Idempotent-Replayed" not in r.headers for r in created) == 1
    for refused in (r for r in responses if r.status_code == 409):
        problem(refused, 409, "idempotency-in-flight")
    items = ok(client.get("/v1/profiles", headers=auth(token)))["items"]
    assert [p["name"] for p in items] == ["Racing"], items
    replay = client.post(
        "/v1/profiles", json={"name": "Racing"}, headers=auth(token, **{"Idempotency-Key": key})
    )
    assert replay.status_code == 201 and replay.json()["id"] == items[0]["id"]


def _events_table(container: Container) -> Any:
    recorder: Any = container.app.recorder
    return SQL("{}.{}").format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))


def test_a_retry_while_the_first_request_is_in_flight_is_409(
    client: TestClient, module_container: Container, token: str
) -> None:
    key = str(uuid.uuid4())
    headers = auth(token, **{"Idempotency-Key": key})
    results: dict[str, Response] = {}
    conninfo = module_container.settings.conninfo()
    # Hold the event table so the first request stays in flight, inside its command.
    with psycopg.connect(**conninfo) as blocker:
        blocker.execute(SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(_events_table(module_container)))
        first = threading.Thread(
            target=lambda: results.setdefault(
                "first", client.post("/v1/profiles", json={"name": "Slow"}, headers=headers)
            )
        )
        first.start()
        deadline = time.monotonic() + 4  # below DB_LOCK_TIMEOUT (5 s)
        with psycopg.connect(**conninfo, autocommit=True) as watcher:
            while not watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, "the first request never waited for the lock"
                time.sleep(0.01)  # bounded poll
        second = client.post("/v1/profiles", json={"name": "Slow"}, headers=headers)
        body = problem(second, 409, "idempotency-in-flight")
        assert second.headers.get("Retry-After") == "1", body
        blocker.rollback()
    first.join(timeout=30)
    assert results["first"].status_code == 201, results["first"].text
    _same_response(results["first"], client.post("/v1/profiles", json={"name": "Slow"}, headers=headers))


def _keys(container: Container) -> Any:
    return SQL("{}.{}").format(Identifier(container.datastore.schema), Identifier(IDEMPOTENCY_TABLE))


def test_keys_expire_after_the_configured_time(
    client: TestClient, module_container: Container, pg_server_url: str, token: str
) -> None:
    # IDEMPOTENCY_TTL_SECONDS sets how long a key is kept (default 24 h)...
    assert module_container.settings.idempotency_ttl_seconds == 24 * 3600
    short = build(module_container.settings.model_copy(update={"idempotency_ttl_seconds": 120}))
    try:
        with TestClient(create_app(short), raise_server_exceptions=False) as short_client:
            key = str(uuid.uuid4())
            ok(
                short_client.post(
                    "/v1/profiles", json={"name": "Short"}, headers=auth(token, **{"Idempotency-Key": key})
                ),
                201,
            )
    finally:
        short.close()
    with psycopg.connect(**module_container.settings.conninfo(), autocommit=True) as conn:
        left = conn.execute(
            SQL("SELECT extract(epoch FROM expires_at - now()) FROM {} WHERE key = %s").format(
                _keys(module_container)
            ),
            (key,),
        ).fetchone()[0]  # type: ignore[index]
        assert 100 < float(left) <= 120, left
        # ...and once it has expired (time shifted in SQL), the same request runs again.
        key = str(uuid.uuid4())
        headers = auth(token, **{"Idempotency-Key": key})
        first = ok(client.post("/v1/profiles", json={"name": "Twice"}, headers=headers), 201)
        replay = client.post("/v1/profiles", json={"name": "Twice"}, headers=headers)
        assert replay.json()["id"] == first["id"] and replay.headers["Idempotent-Replayed"] == "true"
        conn.execute(
            SQL("UPDATE {} SET expires_at = now() - interval '1 second' WHERE key = %s").format(
                _keys(module_container)
            ),
            (key,),
        )
    again = client.post("/v1/profiles", json={"name": "Twice"}, headers=headers)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.json()["id"] != first["id"]


def test_a_key_whose_request_stored_its_events_but_never_answered_gets_that_outcome(
    client: TestClient, module_container: Container, token: str
) -> None:
    key = str(uuid.uuid4())
    headers = auth(token, **{"Idempotency-Key": key})
    first = ok(client.post("/v1/profiles", json={"name": "Crashed"}, headers=headers), 201)
    # As if the process died between committing the events (which marked the
    # key 'committed' in their transaction) and storing the response.
    with psycopg.connect(**module_container.settings.conninfo(), autocommit=True) as conn:
        row = conn.execute(
            SQL("SELECT state, profile_id FROM {} WHERE key = %s").format(_keys(module_container)), (key,)
        ).fetchone()
        assert row == ("done", first["id"]), row
        conn.execute(
            SQL(
                "UPDATE {} SET state = 'committed', status = NULL, headers = NULL, body = NULL,"
                " lease_until = now() - interval '1 second' WHERE key = %s"
            ).format(_keys(module_container)),
            (key,),
        )
    position = head(module_container)
    retry = client.post("/v1/profiles", json={"name": "Crashed"}, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json()["id"] == first["id"] and retry.headers["Location"] == f"/v1/profiles/{first['id']}"
    assert head(module_container) == position
    _same_response(retry, client.post("/v1/profiles", json={"name": "Crashed"}, headers=headers))


# --- 3. Pagination ------------------------------------------------------------------------------------


def _walk(
    client: TestClient, token: str, path: str, limit: int, between: Callable[[], None]
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        body = ok(client.get(path, params=params, headers=auth(token)))
        assert len(body["items"]) <= limit
        seen.extend(body["items"])
        if body["next_cursor"] is None:
            return seen
        assert isinstance(body["next_cursor"], str)
        params = {"limit": limit, "cursor": body["next_cursor"]}
        between()


def test_pages_skip_and_repeat_nothing_while_others_write(
    client: TestClient, module_container: Container, token: str
) -> None:
    originals = [create(client, token, f"P{i}")["id"] for i in range(7)]
    seen_ids: list[str] = []
    added: list[str] = []
    archived: set[str] = set()

    def others_write() -> None:
        # Another device creates a profile and archives one already listed (an
        # offset-based page would shift and skip an item).
        added.append(create(client, token, f"New {len(added)}")["id"])
        listed = [i for i in seen_ids if i in originals and i not in archived]
        ok(client.post(f"/v1/profiles/{listed[-1]}/archive", headers=auth(token)))
        archived.add(listed[-1])

    def walk_profiles() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 2}
        while True:
            body = ok(client.get("/v1/profiles", params=params, headers=auth(token)))
            items.extend(body["items"])
            seen_ids.extend(p["id"] for p in body["items"])
            if body["next_cursor"] is None:
                return items
            params = {"limit": 2, "cursor": body["next_cursor"]}
            others_write()

    items = walk_profiles()
    ids = [p["id"] for p in items]
    assert len(ids) == len(set(ids)), "a profile was listed twice"
    assert [i for i in ids if i in originals] == originals, "a profile was skipped"
    assert set(ids) - set(originals) <= set(added)

    # The history of a profile, while it keeps changing.
    pid = originals[-1]
    ok(client.post(f"/v1/profiles/{pid}/restore", headers=auth(token))) if ok(
        client.get(f"/v1/profiles/{pid}", headers=auth(token))
    )["archived"] else None
    for i in range(4):
        ok(client.patch(f"/v1/profiles/{pid}", json={"name": f"H{i}"}, headers=auth(token)))
    before = ok(client.get(f"/v1/profiles/{pid}/history", params={"limit": 200}, headers=auth(token)))[
        "items"
    ]
    renames = iter(range(100))
    entries = _walk(
        client,
        token,
        f"/v1/profiles/{pid}/history",
        2,
        lambda: ok(
            client.patch(f"/v1/profiles/{pid}", json={"name": f"R{next(renames)}"}, headers=auth(token))
        ),
    )
    positions = [e["position"] for e in entries]
    assert positions == sorted(set(positions)), "history entries repeated or out of order"
    assert entries[: len(before)] == before, "a history entry was skipped"

    # The default timeline, while the default keeps moving.
    timeline_before = ok(client.get("/v1/audit/defaults", params={"limit": 200}, headers=auth(token)))[
        "items"
    ]
    active = [
        p["id"] for p in ok(client.get("/v1/profiles", params={"limit": 200}, headers=auth(token)))["items"]
    ]
    turns = iter(range(100))
    changes = _walk(
        client,
        token,
        "/v1/audit/defaults",
        2,
        lambda: ok(
            client.put(
                "/v1/profiles/default",
                json={"profile_id": active[next(turns) % len(active)]},
                headers=auth(token),
            )
        ),
    )
    positions = [c["position"] for c in changes]
    assert positions == sorted(set(positions))
    assert changes[: len(timeline_before)] == timeline_before


def test_every_listing_takes_a_limit_of_1_to_200_and_only_its_own_cursors(
    client: TestClient, token: str
) -> None:
    pid = create(client, token, "Listed")["id"]
    for path in ("/v1/profiles", f"/v1/profiles/{pid}/history", "/v1/audit/defaults"):
        for limit in (1, 200):
            assert client.get(path, params={"limit": limit}, headers=auth(token)).status_code == 200, (
                path,
                limit,
            )
        for params in ({"limit": 0}, {"limit": 201}, {"cursor": "not-ours"}):
            body = problem(client.get(path, params=params, headers=auth(token)), 422, "validation")
            assert [e["field"] for e in body["errors"]] == list(params), (path, body)


# --- 4. Problem details ------------------------------------------------------------------------------


def test_every_kind_of_error_is_a_problem_document_with_a_stable_type(
    client: TestClient, module_container: Container, token: str
) -> None:
    pid = create(client, token, "Errors", vehicles=[{"name": "Kart"}])["id"]
    vid = ok(client.get(f"/v1/profiles/{pid}", headers=auth(token)))["vehicles"][0]["id"]
    auditor = module_container.accounts.create("auditor", "auditor").token
    json_headers = auth(token, **{"Content-Type": "application/json"})
    limit = module_container.settings.max_body_bytes
    cases: list[tuple[str, Response, int, str, list[str] | None]] = [
        ("unknown route", client.get("/v1/nope", headers=auth(token)), 404, "not-found", None),
        ("unknown route, no token", client.post("/nope"), 404, "not-found", None),
        (
            "unknown profile",
            client.get(f"/v1/profiles/{uuid.uuid4()}", headers=auth(token)),
            404,
            "not-found",
            None,
        ),
        ("wrong method", client.delete("/v1/profiles", headers=auth(token)), 405, "method-not-allowed", None),
        ("no token", client.get("/v1/profiles"), 401, "unauthorized", None),
        (
            "read-only token",
            client.post("/v1/profiles", json={"name": "A"}, headers=auth(auditor)),
            403,
            "forbidden",
            None,
        ),
        (
            "not JSON",
            client.post(
                "/v1/profiles",
                content=b"name=A",
                headers=auth(token, **{"Content-Type": "application/x-www-form-urlencoded"}),
            ),
            415,
            "unsupported-media-type",
            None,
        ),
        (
            "too large",
            client.post("/v1/profiles", content=b"{" + b" " * limit + b"}", headers=json_headers),
            413,
            "content-too-large",
            None,
        ),
        (
            "malformed JSON",
            client.post("/v1/profiles", content=b'{"name": ', headers=json_headers),
            422,
            "validation",
            ["body"],
        ),
        (
            "JSON not UTF-8",
            client.post(f"/v1/profiles/{pid}/restore", content=b"\x1b\xff", headers=json_headers),
            422,
            "validation",
            ["body"],
        ),
        (
            "JSON not UTF-8 (required body)",
            client.post("/v1/profiles", content=b'{"name": "\xff"}', headers=json_headers),
            422,
            "validation",
            ["body"],
        ),
        (
            "invalid UUID in the path",
            client.get("/v1/profiles/not-a-uuid", headers=auth(token)),
            422,
            "validation",
            ["profile_id"],
        ),
        (
            "invalid vehicle UUID",
            client.delete(f"/v1/profiles/{pid}/vehicles/42", headers=auth(token)),
            422,
            "validation",
            ["vehicle_id"],
        ),
        (
            "archived",
            client.post(f"/v1/profiles/{pid}/restore", headers=auth(token)),
            409,
            "illegal-state",
            None,
        ),
        (
            "stale If-Match",
            client.patch(
                f"/v1/profiles/{pid}", json={"name": "B"}, headers=auth(token, **{"If-Match": '"9"'})
            ),
            412,
            "precondition-failed",
            None,
        ),
    ]
    unknown_fields = [
        ("POST", "/v1/profiles", {"name": "A", "nickname": "x"}, "nickname"),
        (
            "POST",
            "/v1/profiles",
            {"name": "A", "vehicles": [{"name": "K", "colour": "red"}]},
            "vehicles.0.colour",
        ),
        ("PATCH", f"/v1/profiles/{pid}", {"name": "A", "version": 3}, "version"),
        ("POST", f"/v1/profiles/{pid}/archive", {"successor": str(uuid.uuid4())}, "successor"),
        ("POST", f"/v1/profiles/{pid}/restore", {"why": "x"}, "why"),
        ("PUT", "/v1/profiles/default", {"profile_id": pid, "force": True}, "force"),
        ("POST", f"/v1/profiles/{pid}/vehicles", {"name": "K", "engine": "X30"}, "engine"),
        ("PATCH", f"/v1/profiles/{pid}/vehicles/{vid}", {"name": "K", "id": vid}, "id"),
    ]
    position = head(module_container)
    for method, path, body, field in unknown_fields:
        response = client.request(method, path, json=body, headers=auth(token))
        cases.append((f"unknown field {field} on {method} {path}", response, 422, "validation", [field]))
    for what, response, status, kind, fields in cases:
        try:
            body = problem(response, status, kind)
        except AssertionError as e:
            raise AssertionError(f"{what}: {e}") from None
        assert body.get("instance", "").startswith("/"), (what, body)
        assert response.headers.get("X-Request-ID"), what
        if fields is not None:
            assert [e["field"] for e in body["errors"]] == fields, (what, body)
    assert head(module_container) == position, "a rejected body wrote events"
    assert ok(client.get(f"/v1/profiles/{pid}", headers=auth(token)))["name"] == "Errors"


# --- 7. CORS -------------------------------------------------------------------------------------------

UI = "https://ui.example"


def _preflight(
    client: TestClient,
    origin: str,
    method: str = "PATCH",
    headers: str = "authorization,content-type,if-match,idempotency-key",
) -> Response:
    return client.options(
        "/v1/profiles",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def test_cors_allows_only_the_configured_origins_and_none_by_default(
    client: TestClient, module_container: Container, token: str
) -> None:
    # Default: no origin is allowed; a browser on another origin gets no CORS headers.
    assert module_container.settings.cors_origins == []
    refused = _preflight(client, UI)
    assert "access-control-allow-origin" not in refused.headers
    problem(refused, 405, "method-not-allowed")
    plain = client.get("/v1/profiles", headers=auth(token, Origin=UI))
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers

    configured = dataclasses.replace(
        module_container, settings=module_container.settings.model_copy(update={"cors_origins": [UI]})
    )
    with TestClient(create_app(configured), raise_server_exceptions=False) as browser:
        allowed = _preflight(browser, UI)
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["access-control-allow-origin"] == UI
        assert {"PATCH", "PUT", "DELETE"} <= set(
            allowed.headers["access-control-allow-methods"].replace(" ", "").split(",")
        )
        allowed_headers = allowed.headers["access-control-allow-headers"].lower()
        for name in ("if-match", "idempotency-key", "x-request-id", "x-reason", "x-min-position"):
            assert name in allowed_headers, name
        response = browser.get("/v1/profiles", headers=auth(token, Origin=UI))
        assert response.status_code == 200 and response.headers["access-control-allow-origin"] == UI
        exposed = response.headers["access-control-expose-headers"].lower()
        for name in ("etag", "location", "x-position", "x-request-id", "retry-after", "idempotent-replayed"):
            assert name in exposed, name
        # Any other origin, method or header is refused, as a problem document.
        for preflight in (
            _preflight(browser, "https://evil.example"),
            _preflight(browser, UI, method="TRACE"),
            _preflight(browser, UI, headers="x-secret"),
        ):
            assert "access-control-allow-origin" not in preflight.headers or preflight.status_code == 400
            problem(preflight, 400, "cors-refused")
        stranger = browser.get("/v1/profiles", headers=auth(token, Origin="https://evil.example"))
        assert "access-control-allow-origin" not in stranger.headers
