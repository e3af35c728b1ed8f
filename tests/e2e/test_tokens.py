"""The token life cycle against the real server: named tokens per account,
expiry, `last used`, revocation (CLI and HTTP) that takes effect at once and
ends the token's streams; the admin area; the limits on streams and waits."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_helpers import assert_problem, auth, create
from stream_reader import Reader

from tests.support.service import Service, running_service

pytestmark = pytest.mark.postgres

TOKEN_KEYS = {"id", "account_id", "name", "role", "created_at", "last_used_at", "expires_at", "revoked_at"}


@pytest.fixture(scope="module")
def svc(pg_server_url: str, e2e_logs: Path) -> Iterator[Service]:
    # Small caps, so that the tests reach them; last-used written often.
    with running_service(
        pg_server_url,
        e2e_logs,
        TOKEN_LAST_USED_FLUSH_SECONDS="0.2",
        MAX_STREAMS_PER_TOKEN="2",
        MAX_STREAMS_PER_ACCOUNT="3",
        MAX_STREAMS="4",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def http(svc: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=svc.base_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def admin(svc: Service) -> str:
    return svc.create_account(f"admin-{uuid.uuid4().hex[:6]}", "admin")


def new_account(http: httpx.Client, admin: str, role: str = "owner") -> dict[str, Any]:
    response = http.post(
        "/v1/admin/accounts", json={"name": f"acc-{uuid.uuid4().hex[:6]}", "role": role}, headers=auth(admin)
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def issue(http: httpx.Client, admin: str, account_id: str, name: str, **fields: Any) -> dict[str, Any]:
    response = http.post(
        f"/v1/admin/accounts/{account_id}/tokens", json={"name": name, **fields}, headers=auth(admin)
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def until(check: Any, timeout: float, what: str) -> float:
    """Seconds until check() holds (polled every 10 ms); fails after timeout."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"{what} did not happen within {timeout} s"
        time.sleep(0.01)
    return time.monotonic() - started


def status(http: httpx.Client, token: str) -> int:
    return http.get("/v1/profiles", headers=auth(token)).status_code


def test_cli_creates_lists_and_revokes_named_tokens(svc: Service, http: httpx.Client) -> None:
    created = svc.cli("accounts", "create", f"cli-{uuid.uuid4().hex[:6]}")
    assert created.returncode == 0, created.stderr
    account_id = re.search(r"account ([0-9a-f-]{36})", created.stdout).group(1)  # type: ignore[union-attr]
    first = created.stdout.strip().splitlines()[-1]

    phone = svc.cli("tokens", "create", "--account", account_id, "--name", "phone", "--expires-in-days", "30")
    assert phone.returncode == 0, phone.stderr
    phone_token = phone.stdout.strip().splitlines()[-1]
    assert phone_token.startswith("rp_") and phone_token != first
    assert status(http, phone_token) == 200 and status(http, first) == 200

    # The same name twice on one account is refused, naming the field.
    again = svc.cli("tokens", "create", "--account", account_id, "--name", "phone")
    assert again.returncode == 2 and "name" in again.stderr
    unknown = svc.cli("tokens", "create", "--account", str(uuid.uuid4()), "--name", "x")
    assert unknown.returncode == 2 and "no account" in unknown.stderr

    def listing() -> str:
        result = svc.cli("tokens", "list", "--account", account_id)
        assert result.returncode == 0, result.stderr
        return result.stdout

    # last used is written in batches (every 0.2 s here), not per request.
    until(lambda: _row(listing(), "phone")[5] != "never", 20, "phone's last-used time")
    text = listing()
    assert text.splitlines()[0].split() == [
        "ID",
        "ACCOUNT",
        "NAME",
        "ROLE",
        "CREATED",
        "LAST",
        "USED",
        "EXPIRES",
        "REVOKED",
    ]
    phone_row, first_row = _row(text, "phone"), _row(text, "initial")
    assert phone_row[3] == "owner" and phone_row[6] != "never" and first_row[6] == "never"
    for token in (first, phone_token):  # never a secret
        assert token.split("_", 2)[2] not in text

    revoked = svc.cli("tokens", "revoke", phone_token)  # the whole token names it too
    assert revoked.returncode == 0, revoked.stderr
    took = until(lambda: status(http, phone_token) == 401, 5, "401 for the revoked token")
    assert took < 1.0, f"the revoked token still worked for {took:.2f} s"
    assert status(http, first) == 200
    assert "phone" not in listing()
    assert svc.cli("tokens", "revoke", phone_row[0]).returncode == 2  # not live any more
    everything = svc.cli("tokens", "list", "--account", account_id, "--all").stdout
    assert _row(everything, "phone")[7] != "-"


def _row(listing: str, name: str) -> list[str]:
    """The columns of the token named name ("LAST USED" is one column, dates one word)."""
    for line in listing.splitlines()[1:]:
        cells = line.split()
        if cells[2] == name:
            return cells
    raise AssertionError(f"no token {name!r} in:\n{listing}")


def test_owner_lists_and_revokes_its_own_tokens_only(http: httpx.Client, admin: str) -> None:
    account = new_account(http, admin)
    owner = account["token"]["token"]
    assert set(account["token"]) == TOKEN_KEYS | {"token"} and account["token"]["name"] == "initial"
    tablet = issue(http, admin, account["id"], "tablet")
    other = new_account(http, admin)

    listed = http.get("/v1/tokens", headers=auth(owner))
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [t["name"] for t in items] == ["initial", "tablet"]
    assert all(set(t) == TOKEN_KEYS for t in items), items
    assert owner.split("_", 2)[2] not in listed.text

    # Another account's token: 404, and it still works.
    theirs = http.delete(f"/v1/tokens/{other['token']['id']}", headers=auth(owner))
    assert_problem(theirs, 404, "not-found")
    assert status(http, other["token"]["token"]) == 200

    assert http.delete(f"/v1/tokens/{tablet['id']}", headers=auth(owner)).status_code == 204
    assert status(http, tablet["token"]) == 401
    assert_problem(http.delete(f"/v1/tokens/{tablet['id']}", headers=auth(owner)), 404, "not-found")
    with_revoked = http.get("/v1/tokens", params={"include_revoked": "true"}, headers=auth(owner)).json()
    assert [t["revoked_at"] is not None for t in with_revoked["items"]] == [False, True]

    # Revoking the token in use ends it too.
    assert http.delete(f"/v1/tokens/{account['token']['id']}", headers=auth(owner)).status_code == 204
    assert status(http, owner) == 401


def test_only_an_admin_administers(http: httpx.Client, admin: str) -> None:
    owner = new_account(http, admin)
    auditor = new_account(http, admin, "auditor")
    for token in (owner["token"]["token"], auditor["token"]["token"]):
        for method, path, body in (
            ("POST", "/v1/admin/accounts", {"name": "x"}),
            ("GET", f"/v1/admin/accounts/{owner['id']}/tokens", None),
            ("POST", f"/v1/admin/accounts/{owner['id']}/tokens", {"name": "x"}),
            ("DELETE", f"/v1/admin/tokens/{owner['token']['id']}", None),
        ):
            assert_problem(http.request(method, path, json=body, headers=auth(token)), 403, "forbidden")
    assert status(http, owner["token"]["token"]) == 200
    assert_problem(http.post("/v1/admin/accounts", json={"name": "x"}), 401, "unauthorized")


def test_admin_issues_and_revokes_any_token_and_input_is_checked(http: httpx.Client, admin: str) -> None:
    account = new_account(http, admin)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    laptop = issue(http, admin, account["id"], "laptop", expires_at=later)
    assert datetime.fromisoformat(laptop["expires_at"]) == datetime.fromisoformat(later)
    assert status(http, laptop["token"]) == 200
    listed = http.get(f"/v1/admin/accounts/{account['id']}/tokens", headers=auth(admin)).json()["items"]
    assert [t["name"] for t in listed] == ["initial", "laptop"]

    bad = [
        ({"name": "laptop"}, "name"),  # taken by a live token
        ({"name": "  "}, "name"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00+00:00"}, "expires_at"),
        ({"name": "x", "expires_at": "2999-01-01T00:00:00"}, "expires_at"),  # no offset
        ({"name": "x", "secret": "mine"}, "secret"),
    ]
    for body, field in bad:
        response = http.post(f"/v1/admin/accounts/{account['id']}/tokens", json=body, headers=auth(admin))
        problem = assert_problem(response, 422)
        assert field in [e["field"] for e in problem["errors"]], problem
    unknown = http.post(f"/v1/admin/accounts/{uuid.uuid4()}/tokens", json={"name": "x"}, headers=auth(admin))
    assert_problem(unknown, 404, "not-found")
    assert_problem(
        http.post("/v1/admin/accounts", json={"name": "x", "role": "god"}, headers=auth(admin)), 422
    )

    assert http.delete(f"/v1/admin/tokens/{laptop['id']}", headers=auth(admin)).status_code == 204
    assert status(http, laptop["token"]) == 401
    assert_problem(http.delete(f"/v1/admin/tokens/{laptop['id']}", headers=auth(admin)), 404, "not-found")
    # A revoked token's name is free again.
    assert issue(http, admin, account["id"], "laptop")["name"] == "laptop"


def test_an_expired_token_is_refused_and_its_stream_ends(
    svc: Service, http: httpx.Client, admin: str
) -> None:
    account = new_account(http, admin)
    expires = datetime.now(UTC) + timedelta(seconds=3)
    short = issue(http, admin, account["id"], "short", expires_at=expires.isoformat())
    assert status(http, short["token"]) == 200
    reader = Reader(svc.base_url, short["token"])
    until(lambda: datetime.now(UTC) > expires, 10, "the expiry")
    assert status(http, short["token"]) == 401
    assert reader.join(5), "the expired token's stream is still open"
    assert reader.ended_cleanly and reader.error is None


def test_a_revoked_tokens_streams_end_and_others_stay(svc: Service, http: httpx.Client, admin: str) -> None:
    account = new_account(http, admin)
    owner = account["token"]["token"]
    kept = issue(http, admin, account["id"], "kept")
    doomed_stream, kept_stream = Reader(svc.base_url, owner), Reader(svc.base_url, kept["token"])
    try:
        assert (
            http.delete(f"/v1/admin/tokens/{account['token']['id']}", headers=auth(admin)).status_code == 204
        )
        started = time.monotonic()
        assert doomed_stream.join(5), "the revoked token's stream is still open"
        assert time.monotonic() - started < 5
        assert doomed_stream.ended_cleanly
        # The other token's stream lives on and still gets changes.
        created = create(http, kept["token"], "Still here")
        kept_stream.wait_for(lambda r: created["id"] in r.latest(), "a change after the revocation")
    finally:
        kept_stream.close()


def open_stream(base_url: str, token: str) -> tuple[httpx.Client, httpx.Response]:
    client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10, read=None))
    response = client.send(
        client.build_request("GET", "/v1/profiles/stream", headers=auth(token)), stream=True
    )
    return client, response


def test_streams_are_capped_per_token_account_and_process(
    svc: Service, http: httpx.Client, admin: str
) -> None:
    """MAX_STREAMS_PER_TOKEN=2, MAX_STREAMS_PER_ACCOUNT=3, MAX_STREAMS=4 on this server."""
    a = new_account(http, admin)
    a2 = issue(http, admin, a["id"], "second")["token"]
    b, c = new_account(http, admin), new_account(http, admin)
    opened: list[tuple[httpx.Client, httpx.Response]] = []

    def expect(token: str, code: int) -> None:
        client, response = open_stream(svc.base_url, token)
        if code == 200:
            assert response.status_code == 200, response.read()
            opened.append((client, response))
            return
        response.read()
        problem = assert_problem(response, code)
        assert problem["type"].endswith("too-many-requests" if code == 429 else "unavailable")
        assert int(response.headers["Retry-After"]) >= 1
        client.close()

    try:
        expect(a["token"]["token"], 200)
        expect(a["token"]["token"], 200)
        expect(a["token"]["token"], 429)  # the token's cap
        expect(a2, 200)
        expect(a2, 429)  # the account's cap (3)
        expect(b["token"]["token"], 200)
        expect(c["token"]["token"], 503)  # the process's cap (4)
        client, response = opened.pop(0)
        response.close()
        client.close()
        # The slot comes back once the server notices the client left.
        until(lambda: _opens(svc, c["token"]["token"], opened), 10, "a freed stream slot")
        assert_problem(http.get("/v1/profiles/stream", headers=auth(b["token"]["token"])), 503)
    finally:
        for client, response in opened:
            response.close()
            client.close()


def _opens(svc: Service, token: str, opened: list[tuple[httpx.Client, httpx.Response]]) -> bool:
    client, response = open_stream(svc.base_url, token)
    if response.status_code == 200:
        opened.append((client, response))
        return True
    response.read()
    client.close()
    return False


def test_waits_hold_no_thread_and_are_capped_per_token(pg_server_url: str, e2e_logs: Path) -> None:
    """No projector, no inline projection: a command's position is never
    reached, so a query with it waits WAIT_TIMEOUT. One request thread; waits of several tokens fill far
    more than it, yet a request that needs the thread answers meanwhile."""
    with (
        running_service(
            pg_server_url,
            e2e_logs,
            RUN_PROJECTION="false",
            INLINE_PROJECTION="false",
            API_THREADS="1",
            WAIT_TIMEOUT="4",
            MAX_WAITS_PER_TOKEN="2",
        ) as svc,
        httpx.Client(base_url=svc.base_url, timeout=30) as http,
    ):
        tokens = [svc.new_token() for _ in range(3)]
        accepted = http.post("/v1/profiles", json={"name": "Unseen"}, headers=auth(tokens[0]))
        assert accepted.status_code == 202, accepted.text  # stored; the read table never shows it
        position = accepted.headers["X-Position"]
        results: dict[str, list[tuple[int, float]]] = {t: [] for t in tokens}
        started = time.monotonic()

        def wait(token: str) -> None:
            response = httpx.get(
                f"{svc.base_url}/v1/profiles",
                headers=auth(token, **{"X-Min-Position": position}),
                timeout=30,
            )
            results[token].append((response.status_code, time.monotonic() - started))

        threads = [threading.Thread(target=wait, args=(t,)) for t in tokens for _ in range(3)]
        for thread in threads:
            thread.start()
        # Once each token had its third wait refused, its other two are waiting (4 s).
        until(lambda: all(results[t] for t in tokens), 10, "a 429 for each token")
        # Meanwhile: the list of tokens runs in the single request thread.
        sync = http.get("/v1/tokens", headers=auth(tokens[1]))
        sync_done = time.monotonic() - started
        health = http.get("/healthz")
        for thread in threads:
            thread.join(30)
        assert sync.status_code == 200 and health.status_code == 200
        for token, answers in results.items():
            codes = sorted(code for code, _ in answers)
            assert codes == [429, 503, 503], (token, answers)  # 2 waits per token, the third refused
            assert all(at < sync_done for code, at in answers if code == 429)
        waited_until = min(at for answers in results.values() for code, at in answers if code == 503)
        assert sync_done < waited_until, (sync_done, results)
