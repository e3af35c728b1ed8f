"""Auditors and admins find things without knowing ids beforehand: they list
the accounts (with profile counts), read any account's profiles and default by
`account_id`, and see who acted by account name as well as id."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    return response.json()


def all_accounts(client: httpx.Client, token: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = ok(client.get("/v1/accounts", params=params, headers=auth(token)))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_an_auditor_finds_an_account_and_reads_its_profiles(client: httpx.Client, service: Any) -> None:
    name = f"Family {uuid.uuid4().hex[:8]}"
    owner = service.create_account(name)
    auditor = service.create_account(f"Audit {uuid.uuid4().hex[:8]}", "auditor")
    alex = ok(client.post("/v1/profiles", json={"name": "Alex"}, headers=auth(owner)), 201)
    sam = ok(client.post("/v1/profiles", json={"name": "Sam"}, headers=auth(owner)), 201)
    ok(client.post(f"/v1/profiles/{sam['id']}/archive", headers=auth(owner)))
    ok(client.put("/v1/profiles/default", json={"profile_id": alex["id"]}, headers=auth(owner)))

    # Paged by 2, every account comes once, in creation order; the new one with its counts.
    accounts = all_accounts(client, auditor)
    assert len({a["id"] for a in accounts}) == len(accounts)
    (found,) = [a for a in accounts if a["name"] == name]
    assert found["role"] == "owner"
    assert (found["profile_count"], found["active_profile_count"]) == (2, 1)

    account_id = found["id"]
    listed = ok(
        client.get(
            "/v1/profiles", params={"account_id": account_id, "include_archived": True}, headers=auth(auditor)
        )
    )
    assert [p["name"] for p in listed["items"]] == ["Alex", "Sam"]
    default = ok(client.get("/v1/profiles/default", params={"account_id": account_id}, headers=auth(auditor)))
    assert default["id"] == alex["id"]

    # Without account_id an auditor is told what to pass, not shown an empty account.
    missing = client.get("/v1/profiles", headers=auth(auditor))
    assert missing.status_code == 422
    assert missing.json()["errors"] == [{"field": "account_id", "reason": "is required for an auditor"}]
    assert client.get("/v1/profiles/default", headers=auth(auditor)).status_code == 422

    # History and the default timeline name the actor's account beside its id.
    history = ok(client.get(f"/v1/profiles/{alex['id']}/history", headers=auth(auditor)))["items"]
    assert {(e["actor"], e["actor_name"]) for e in history} == {(account_id, name)}
    timeline = ok(client.get("/v1/audit/defaults", params={"account_id": account_id}, headers=auth(auditor)))
    assert [(c["actor"], c["actor_name"]) for c in timeline["items"]] == [(account_id, name)] * len(
        timeline["items"]
    )
    assert timeline["items"]


def test_owners_read_only_their_own_account_and_cannot_list_accounts(
    client: httpx.Client, service: Any
) -> None:
    owner = service.create_account(f"Own {uuid.uuid4().hex[:8]}")
    other = service.create_account(f"Other {uuid.uuid4().hex[:8]}")
    ok(client.post("/v1/profiles", json={"name": "Theirs"}, headers=auth(other)), 201)
    others_id = ok(client.get("/v1/profiles/default", headers=auth(other)))["id"]
    assert others_id
    listing = client.get("/v1/accounts", headers=auth(owner))
    assert listing.status_code == 403
    assert listing.json()["detail"] == "an owner token cannot list accounts"
    stranger = str(uuid.uuid4())
    assert client.get("/v1/profiles", params={"account_id": stranger}, headers=auth(owner)).status_code == 404


def test_the_403_of_a_read_only_token_is_grammatical(client: httpx.Client, service: Any) -> None:
    for role in ("auditor", "admin"):
        token = service.create_account(f"Read only {uuid.uuid4().hex[:8]}", role)
        refused = client.post("/v1/profiles", json={"name": "X"}, headers=auth(token))
        assert refused.status_code == 403
        assert refused.json()["detail"] == f"an {role} token cannot change profiles"
