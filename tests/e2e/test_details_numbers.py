"""Profile details are stored as JSON: numbers JSON cannot hold must be refused
at the door, or the event that carries them stops the projection for everyone.

This module has a server and database of its own, so a failure here cannot
spill into the other modules."""

from __future__ import annotations

import httpx
from e2e_helpers import assert_problem, auth, create

OWN_SERVER = True  # a server and database of this module's own


def test_non_finite_detail_numbers_are_refused_and_the_projection_keeps_running(
    client: httpx.Client, token: str, shared_token: str
) -> None:
    headers = auth(token, **{"Content-Type": "application/json"})
    # Python's JSON parser accepts these; JSON (and PostgreSQL jsonb) does not.
    for number in ("NaN", "Infinity", "-Infinity", "1e999"):
        raw = f'{{"name": "Odd", "details": {{"x": {number}}}}}'
        response = client.post("/v1/profiles", content=raw, headers=headers)
        body = assert_problem(response, 422, "validation")
        assert body["errors"][0]["field"].startswith("details"), (number, body)

    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["projection"] == "leader"
    assert ready.json()["lag"] == 0
    # Another account's ordinary command is still read back at once (not 202).
    created = client.post(
        "/v1/profiles", json={"name": "Ordinary", "details": {"x": 1.5}}, headers=auth(shared_token)
    )
    assert created.status_code == 201, created.text
    assert created.json()["details"] == {"x": 1.5}
    assert create(client, token, "Fine")["is_default"] is True
