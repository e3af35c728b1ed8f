"""`racer-profiles verify` and `rebuild` against the database the live server
writes to, after real HTTP commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import psycopg
from e2e_helpers import auth, create, default_id, get, list_all

if TYPE_CHECKING:
    from tests.support.service import Service

# verify judges the whole database, and the test tampers with it and rebuilds it.
OWN_SERVER = True


def _some_history(client: httpx.Client, token: str) -> list[str]:
    """Every kind of command, so verify and rebuild replay all event types."""
    h = auth(token)
    a = create(
        client, token, "Alpha", vehicles=[{"name": "Kart", "race_number": "9"}], details={"team": "Blue"}
    )
    b = create(client, token, "Bravo")
    c = create(client, token, "Charlie")
    assert client.patch(f"/v1/profiles/{b['id']}", json={"name": "Bravo Two"}, headers=h).status_code == 200
    added = client.post(
        f"/v1/profiles/{b['id']}/vehicles", json={"name": "Rotax", "vehicle_class": "Senior"}, headers=h
    )
    assert added.status_code == 201
    vid = added.json()["vehicles"][0]["id"]
    assert (
        client.patch(
            f"/v1/profiles/{b['id']}/vehicles/{vid}", json={"race_number": "77"}, headers=h
        ).status_code
        == 200
    )
    assert (
        client.delete(f"/v1/profiles/{a['id']}/vehicles/{a['vehicles'][0]['id']}", headers=h).status_code
        == 200
    )
    assert client.put("/v1/profiles/default", json={"profile_id": c["id"]}, headers=h).status_code == 200
    assert (
        client.post(f"/v1/profiles/{c['id']}/archive", json={"successor_id": b["id"]}, headers=h).status_code
        == 200
    )
    assert client.post(f"/v1/profiles/{a['id']}/archive", headers=h).status_code == 200
    assert client.post(f"/v1/profiles/{a['id']}/restore", headers=h).status_code == 200
    return [a["id"], b["id"], c["id"]]


def _verify(service: Service) -> tuple[int, str]:
    """Exit code and stdout (the differences, one a line) of `racer-profiles verify`."""
    result = service.cli("verify")
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout


def test_verify_passes_then_names_a_tampered_row_and_rebuild_repairs_it(
    client: httpx.Client, service: Service, token: str
) -> None:
    a, b, c = _some_history(client, token)
    before = {p["id"]: p for p in list_all(client, token, include_archived="true")}
    code, output = _verify(service)
    assert code == 0, output
    assert output.strip().startswith("ok")

    with psycopg.connect(service.database_url, autocommit=True) as conn:
        changed = conn.execute("UPDATE racer_profiles SET name = 'x' WHERE id = %s", (b,)).rowcount
    assert changed == 1
    assert get(client, token, b)["name"] == "x"  # the API serves the read table

    code, output = _verify(service)
    assert code == 1, output
    assert b in output
    assert a not in output and c not in output
    assert "name" in output

    rebuilt = service.cli("rebuild")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "rebuilt" in rebuilt.stdout

    # The running server serves the rebuilt table, which equals the original...
    after = {p["id"]: p for p in list_all(client, token, include_archived="true")}
    assert after == before
    assert get(client, token, b)["name"] == "Bravo Two"
    assert default_id(client, token) == b
    # ...and keeps projecting new commands into it.
    renamed = client.patch(f"/v1/profiles/{a}", json={"name": "Alpha Two"}, headers=auth(token))
    assert renamed.status_code == 200, renamed.text
    assert get(client, token, a)["name"] == "Alpha Two"
    new = create(client, token, "Delta")
    assert get(client, token, new["id"]) == new
    code, output = _verify(service)
    assert code == 0, output


def test_accounts_create_prints_the_token_alone_on_the_last_line(
    client: httpx.Client, service: Service
) -> None:
    result = service.cli("accounts", "create", "Plain Env")  # the server's env as is
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    token = lines[-1]
    assert token.startswith("rp_") and token == token.strip() and " " not in token
    assert "owner" in lines[0]
    assert client.get("/v1/profiles", headers=auth(token)).json() == {"items": [], "next_cursor": None}
