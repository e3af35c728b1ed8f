"""Hostile input to the token and admin endpoints (/v1/tokens, /v1/admin/...):
hypothesis-generated token ids, names, roles, expiry times and bodies, sent
with owner, auditor, admin and forged tokens. Always an answer below 500,
every 4xx a problem document; a refused request creates or revokes no token;
what is accepted is stored clean (a name is 1-80 printable characters)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_harness import PROBLEM, SCALE, create_database, drop_database, open_container
from test_hostile_input import EDGE_TEXT, json_values, text

from api.app import create_app
from infrastructure.container import Container

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]


@dataclass
class Target:
    container: Container
    client: TestClient
    tokens: dict[str, str]  # role -> token
    account_id: str  # the owner's account
    victim_token_id: str  # another account's token: must stay live


@pytest.fixture(scope="module")
def target(pg_server_url: str) -> Iterator[Target]:
    database = create_database(pg_server_url, "rp_hostile_tokens")
    container = open_container(database, api_threads=2)
    try:
        owner = container.accounts.create("owner")
        victim = container.accounts.create("victim")
        tokens = {
            "owner": owner.token,
            "auditor": container.accounts.create("auditor", "auditor").token,
            "admin": container.accounts.create("admin", "admin").token,
            "forged": f"rp_{owner.token_id}_{'x' * 43}",
        }
        with TestClient(create_app(container), raise_server_exceptions=False) as client:
            yield Target(container, client, tokens, str(owner.account_id), victim.token_id)
    finally:
        container.close()
        drop_database(pg_server_url, database)


def token_ids(t: Target) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([*EDGE_TEXT, t.victim_token_id, t.victim_token_id.upper(), f"{t.victim_token_id}/x"]),
        text,
        st.from_regex(r"[0-9a-f]{16}", fullmatch=True),
    )


times = st.one_of(
    st.none(),
    st.sampled_from(
        ["2001-01-01T00:00:00Z", "2999-01-01T00:00:00", "not a time", "9999-12-31T23:59:59+14:00"]
    ),
    st.datetimes().map(lambda d: d.isoformat()),
    text,
    st.integers(),
)
bodies = st.one_of(
    st.fixed_dictionaries({"name": text}, optional={"expires_at": times}),
    st.fixed_dictionaries(
        {"name": text},
        optional={
            "role": st.one_of(text, st.sampled_from(["owner", "auditor", "admin"])),
            "token_name": text,
        },
    ),
    json_values,
)


@st.composite
def requests(draw: st.DrawFn, t: Target) -> tuple[str, str, str, Any]:
    token_id = quote(draw(token_ids(t)), safe="", errors="surrogatepass")
    account = quote(
        draw(st.one_of(st.just(t.account_id), st.just(str(uuid.uuid4())), text)),
        safe="",
        errors="surrogatepass",
    )
    method, path = draw(
        st.sampled_from(
            [
                ("GET", "/v1/tokens"),
                ("DELETE", f"/v1/tokens/{token_id}"),
                ("POST", "/v1/admin/accounts"),
                ("GET", f"/v1/admin/accounts/{account}/tokens"),
                ("POST", f"/v1/admin/accounts/{account}/tokens"),
                ("DELETE", f"/v1/admin/tokens/{token_id}"),
            ]
        )
    )
    return method, path, draw(st.sampled_from(sorted(t.tokens))), draw(bodies)


def live_tokens(t: Target) -> set[str]:
    return {i.token_id for i in t.container.accounts.tokens()}


@settings(
    max_examples=SCALE.hostile_examples,
    deadline=None,
    database=None,
    derandomize=SCALE.name == "short",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_hostile_token_requests_get_a_4xx_problem_and_change_nothing(
    target: Target, data: st.DataObject
) -> None:
    method, path, role, body = data.draw(requests(target))
    before = live_tokens(target)
    response = target.client.request(
        method,
        path,
        headers={"Authorization": f"Bearer {target.tokens[role]}"},
        content=json.dumps(body) if method == "POST" else None,
    )
    where = f"{role}: {method} {path} -> {response.status_code}"
    assert response.status_code < 500, f"{where}: {response.text[:500]}"
    after = live_tokens(target)
    if response.status_code >= 400:
        assert response.headers["content-type"].split(";")[0] == PROBLEM, where
        problem = response.json()
        assert problem["status"] == response.status_code and problem["type"], problem
        assert after == before, f"{where} changed the tokens"
    if response.status_code == 201:
        issued = response.json()
        name = issued["token"]["name"] if isinstance(issued["token"], dict) else issued["name"]
        assert 0 < len(name) <= 80 and name.isprintable() and name == name.strip(), f"{where}: {name!r}"
        assert role == "admin", where
    if method == "DELETE" and response.status_code == 204:
        assert role != "forged", where
        assert after == before - {unquote(path.rsplit("/", 1)[1])}, where
    if role != "admin" and target.victim_token_id in before:
        assert target.victim_token_id in after, f"{where}: another account's token was revoked"
