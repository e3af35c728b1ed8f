"""/v1/profiles end to end: every command and query, success and refusal,
each checked by an immediate read (read-your-writes, no X-Min-Position)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
from e2e_helpers import (
    assert_problem,
    assert_profile_shape,
    auth,
    create,
    default_id,
    error_fields,
    get,
    list_all,
)

# --- create ---------------------------------------------------------------


def test_create_answers_201_with_location_etag_position_and_the_profile(
    client: httpx.Client, token: str
) -> None:
    vehicles = [
        {"name": "Rotax Max", "vehicle_class": "Senior", "race_number": "07"},
        {"name": "Spare"},
    ]
    first = client.post("/v1/profiles", json={"name": "  Alex  ", "vehicles": vehicles}, headers=auth(token))
    assert first.status_code == 201, first.text
    assert first.headers["content-type"].startswith("application/json")
    body = first.json()
    assert_profile_shape(body)
    assert first.headers["Location"] == f"/v1/profiles/{body['id']}"
    assert first.headers["ETag"] == '"1"'
    first_position = int(first.headers["X-Position"])
    assert first_position > 0
    assert body["name"] == "Alex"  # trimmed
    assert body["is_default"] is True
    assert body["archived"] is False
    assert body["version"] == 1
    assert body["vehicle_count"] == 2
    assert [(v["name"], v["vehicle_class"], v["race_number"]) for v in body["vehicles"]] == [
        ("Rotax Max", "Senior", "07"),
        ("Spare", None, None),
    ]
    assert len({v["id"] for v in body["vehicles"]}) == 2
    assert body["created_at"] == body["updated_at"]

    second = client.post("/v1/profiles", json={"name": "Billie"}, headers=auth(token))
    assert second.status_code == 201, second.text
    other = second.json()
    assert_profile_shape(other)
    assert other["is_default"] is False
    assert other["vehicles"] == [] and other["vehicle_count"] == 0
    assert other["id"] != body["id"]
    assert int(second.headers["X-Position"]) > first_position
    assert second.headers["Location"] == f"/v1/profiles/{other['id']}"

    # The first stays the default; the reads agree with the command bodies.
    assert get(client, token, body["id"]) == body
    assert get(client, token, other["id"]) == other
    assert default_id(client, token) == body["id"]


def test_get_returns_the_profile_with_its_etag(client: httpx.Client, shared_token: str) -> None:
    created = create(client, shared_token, "Casey", vehicles=[{"name": "Kart", "race_number": "12"}])
    response = client.get(f"/v1/profiles/{created['id']}", headers=auth(shared_token))
    assert response.status_code == 200
    assert response.headers["ETag"] == '"1"'
    assert response.json() == created


def test_get_unknown_profile_is_404(client: httpx.Client, shared_token: str) -> None:
    missing = uuid.uuid4()
    body = assert_problem(client.get(f"/v1/profiles/{missing}", headers=auth(shared_token)), 404, "not-found")
    assert str(missing) in body["detail"]


def test_details_round_trip(client: httpx.Client, shared_token: str) -> None:
    details = {"team": "Red", "laps": 12, "rookie": True, "ratio": 1.5, "note": None}
    created = create(client, shared_token, "Dana", details=details)
    assert created["details"] == details
    assert get(client, shared_token, created["id"])["details"] == details


# --- list and pagination ----------------------------------------------------


def test_list_is_in_creation_order_and_hides_archived_unless_asked(client: httpx.Client, token: str) -> None:
    ids = [create(client, token, f"P{i}")["id"] for i in range(3)]
    assert [p["id"] for p in list_all(client, token)] == ids

    archived = client.post(f"/v1/profiles/{ids[1]}/archive", headers=auth(token))
    assert archived.status_code == 200, archived.text

    assert [p["id"] for p in list_all(client, token)] == [ids[0], ids[2]]
    assert [p["id"] for p in list_all(client, token, include_archived="false")] == [ids[0], ids[2]]
    everything = list_all(client, token, include_archived="true")
    assert [p["id"] for p in everything] == ids
    assert [p["archived"] for p in everything] == [False, True, False]
    assert [p["is_default"] for p in everything] == [True, False, False]
    for item in everything:
        assert_profile_shape(item)

    # Pages with archived profiles included.
    h = auth(token)
    first = client.get("/v1/profiles", params={"limit": 2, "include_archived": "true"}, headers=h).json()
    assert [p["id"] for p in first["items"]] == ids[:2]
    second = client.get(
        "/v1/profiles",
        params={"limit": 2, "include_archived": "true", "cursor": first["next_cursor"]},
        headers=h,
    ).json()
    assert second == {"items": [everything[2]], "next_cursor": None}


def test_cursor_pagination_visits_every_profile_once(client: httpx.Client, token: str) -> None:
    ids = [create(client, token, f"Racer {i}")["id"] for i in range(5)]
    seen: list[str] = []
    page_sizes = []
    cursor: str | None = None
    for _ in range(10):  # bounded: 3 pages expected
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = client.get("/v1/profiles", params=params, headers=auth(token))
        assert response.status_code == 200, response.text
        page = response.json()
        page_sizes.append(len(page["items"]))
        seen.extend(p["id"] for p in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str) and cursor
    assert page_sizes == [2, 2, 1]
    assert seen == ids  # creation order, no repeats, no skips
    assert cursor is None

    # A page that ends exactly at the last profile has no next cursor.
    full = client.get("/v1/profiles", params={"limit": 5}, headers=auth(token)).json()
    assert [p["id"] for p in full["items"]] == ids and full["next_cursor"] is None
    # The default limit shows them all.
    assert [p["id"] for p in list_all(client, token)] == ids


# --- default ----------------------------------------------------------------


def test_a_new_account_has_no_profiles_and_no_default(client: httpx.Client, token: str) -> None:
    listed = client.get("/v1/profiles", headers=auth(token))
    assert listed.status_code == 200
    assert listed.json() == {"items": [], "next_cursor": None}
    body = assert_problem(client.get("/v1/profiles/default", headers=auth(token)), 404)
    assert body["type"].endswith("/no-default")


def _etag_version(response: httpx.Response) -> int:
    value = response.headers["ETag"]
    assert value.startswith('"') and value.endswith('"'), value
    return int(value.strip('"'))


def test_set_default_moves_the_default_and_is_read_back_at_once(client: httpx.Client, token: str) -> None:
    first = create(client, token, "First")
    second = create(client, token, "Second")
    before = client.get("/v1/profiles/default", headers=auth(token))
    assert before.status_code == 200 and before.json()["id"] == first["id"]
    roster_version = _etag_version(before)  # the ETag of /default is the roster's version

    response = client.put("/v1/profiles/default", json={"profile_id": second["id"]}, headers=auth(token))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == second["id"]
    assert response.json()["is_default"] is True
    assert response.json()["version"] == 1  # the profile itself did not change
    assert _etag_version(response) > roster_version
    assert int(response.headers["X-Position"]) > 0

    default = client.get("/v1/profiles/default", headers=auth(token))
    assert default.status_code == 200
    assert default.json()["id"] == second["id"]
    assert default.headers["ETag"] == response.headers["ETag"]
    assert get(client, token, first["id"])["is_default"] is False
    assert [p["is_default"] for p in list_all(client, token)] == [False, True]

    # Setting the current default again changes nothing and succeeds.
    again = client.put("/v1/profiles/default", json={"profile_id": second["id"]}, headers=auth(token))
    assert again.status_code == 200
    assert again.headers["ETag"] == response.headers["ETag"]
    assert default_id(client, token) == second["id"]


def test_set_default_with_if_match_on_the_roster_version(client: httpx.Client, token: str) -> None:
    first = create(client, token, "First")["id"]
    second = create(client, token, "Second")["id"]
    current = client.get("/v1/profiles/default", headers=auth(token)).headers["ETag"]

    stale = client.put(
        "/v1/profiles/default", json={"profile_id": second}, headers=auth(token, **{"If-Match": '"999"'})
    )
    assert assert_problem(stale, 412, "precondition-failed")["current_version"] == int(current.strip('"'))
    assert default_id(client, token) == first

    ok = client.put(
        "/v1/profiles/default", json={"profile_id": second}, headers=auth(token, **{"If-Match": current})
    )
    assert ok.status_code == 200, ok.text
    assert default_id(client, token) == second

    # The ETag read before that change is stale now: a lost update is refused.
    lost = client.put(
        "/v1/profiles/default", json={"profile_id": first}, headers=auth(token, **{"If-Match": current})
    )
    assert_problem(lost, 412)
    assert default_id(client, token) == second
    malformed = client.put(
        "/v1/profiles/default", json={"profile_id": first}, headers=auth(token, **{"If-Match": "v1"})
    )
    assert error_fields(assert_problem(malformed, 422)) == ["If-Match"]


def test_set_default_to_an_archived_or_unknown_profile_is_refused(client: httpx.Client, token: str) -> None:
    keep = create(client, token, "Keep")
    old = create(client, token, "Old")
    assert client.post(f"/v1/profiles/{old['id']}/archive", headers=auth(token)).status_code == 200
    response = client.put("/v1/profiles/default", json={"profile_id": old["id"]}, headers=auth(token))
    assert_problem(response, 409, "illegal-state")
    assert default_id(client, token) == keep["id"]
    unknown = client.put("/v1/profiles/default", json={"profile_id": str(uuid.uuid4())}, headers=auth(token))
    assert_problem(unknown, 404, "not-found")
    assert default_id(client, token) == keep["id"]
    assert get(client, token, old["id"])["is_default"] is False


def test_set_default_needs_a_profile_id(client: httpx.Client, shared_token: str) -> None:
    for payload in ({}, {"profile_id": "not-a-uuid"}, {"profile_id": None}):
        response = client.put("/v1/profiles/default", json=payload, headers=auth(shared_token))
        assert error_fields(assert_problem(response, 422)) == ["profile_id"]


# --- rename -----------------------------------------------------------------


def test_rename_changes_the_name_and_bumps_the_version(client: httpx.Client, shared_token: str) -> None:
    created = create(client, shared_token, "Before")
    response = client.patch(
        f"/v1/profiles/{created['id']}", json={"name": " After "}, headers=auth(shared_token)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "After"
    assert body["version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert int(response.headers["X-Position"]) > 0
    assert datetime.fromisoformat(body["updated_at"]) > datetime.fromisoformat(body["created_at"])
    assert body["created_at"] == created["created_at"]
    assert get(client, shared_token, created["id"]) == body
    listed = {p["id"]: p["name"] for p in list_all(client, shared_token, limit=200)}
    assert listed[created["id"]] == "After"


def test_rename_to_the_same_name_changes_nothing(client: httpx.Client, shared_token: str) -> None:
    created = create(client, shared_token, "Same")
    response = client.patch(
        f"/v1/profiles/{created['id']}", json={"name": "Same"}, headers=auth(shared_token)
    )
    assert response.status_code == 200
    assert response.json() == created


def test_rename_with_if_match(client: httpx.Client, shared_token: str) -> None:
    pid = create(client, shared_token, "V1")["id"]
    ok = client.patch(
        f"/v1/profiles/{pid}", json={"name": "V2"}, headers=auth(shared_token, **{"If-Match": '"1"'})
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["version"] == 2
    weak = client.patch(
        f"/v1/profiles/{pid}", json={"name": "V3"}, headers=auth(shared_token, **{"If-Match": 'W/"2"'})
    )
    assert weak.status_code == 200, weak.text
    star = client.patch(
        f"/v1/profiles/{pid}", json={"name": "V4"}, headers=auth(shared_token, **{"If-Match": "*"})
    )
    assert star.status_code == 200, star.text

    stale = client.patch(
        f"/v1/profiles/{pid}", json={"name": "Lost"}, headers=auth(shared_token, **{"If-Match": '"99"'})
    )
    body = assert_problem(stale, 412, "precondition-failed")
    assert body["current_version"] == 4
    old = client.patch(
        f"/v1/profiles/{pid}", json={"name": "Lost"}, headers=auth(shared_token, **{"If-Match": '"1"'})
    )
    assert assert_problem(old, 412)["current_version"] == 4
    current = get(client, shared_token, pid)
    assert (current["name"], current["version"]) == ("V4", 4)


def test_malformed_if_match_is_422(client: httpx.Client, shared_token: str) -> None:
    pid = create(client, shared_token, "Tag")["id"]
    for value in ("1", "abc", '"x"', '"1", "2"', '"1234567890"'):
        response = client.patch(
            f"/v1/profiles/{pid}", json={"name": "New"}, headers=auth(shared_token, **{"If-Match": value})
        )
        body = assert_problem(response, 422, "validation")
        assert error_fields(body) == ["If-Match"], value
    assert get(client, shared_token, pid)["name"] == "Tag"


def test_rename_validation(client: httpx.Client, shared_token: str) -> None:
    pid = create(client, shared_token, "Valid")["id"]
    blank = assert_problem(
        client.patch(f"/v1/profiles/{pid}", json={"name": "   "}, headers=auth(shared_token)), 422
    )
    assert blank["errors"][0]["field"] == "name"
    too_long = assert_problem(
        client.patch(f"/v1/profiles/{pid}", json={"name": "x" * 81}, headers=auth(shared_token)), 422
    )
    assert too_long["errors"][0]["field"] == "name"
    control = assert_problem(
        client.patch(f"/v1/profiles/{pid}", json={"name": "a\u0007b"}, headers=auth(shared_token)), 422
    )
    assert control["errors"][0]["field"] == "name"
    not_text = assert_problem(
        client.patch(f"/v1/profiles/{pid}", json={"name": 5}, headers=auth(shared_token)), 422
    )
    assert not_text["errors"][0]["field"] == "name"
    missing = assert_problem(client.patch(f"/v1/profiles/{pid}", json={}, headers=auth(shared_token)), 422)
    assert missing["errors"][0]["field"] == "name"
    unknown = assert_problem(
        client.patch(f"/v1/profiles/{pid}", json={"name": "Ok", "nickname": "x"}, headers=auth(shared_token)),
        422,
    )
    assert error_fields(unknown) == ["nickname"]
    assert get(client, shared_token, pid)["version"] == 1

    exactly_80 = client.patch(f"/v1/profiles/{pid}", json={"name": "y" * 80}, headers=auth(shared_token))
    assert exactly_80.status_code == 200
    assert exactly_80.json()["name"] == "y" * 80


def test_create_validation(client: httpx.Client, token: str) -> None:
    assert (
        assert_problem(client.post("/v1/profiles", json={"name": ""}, headers=auth(token)), 422)["errors"][0][
            "field"
        ]
        == "name"
    )
    assert (
        assert_problem(client.post("/v1/profiles", json={"name": "z" * 81}, headers=auth(token)), 422)[
            "errors"
        ][0]["field"]
        == "name"
    )
    assert error_fields(assert_problem(client.post("/v1/profiles", json={}, headers=auth(token)), 422)) == [
        "name"
    ]
    unknown = assert_problem(
        client.post("/v1/profiles", json={"name": "A", "colour": "red"}, headers=auth(token)), 422
    )
    assert error_fields(unknown) == ["colour"]
    bad_vehicle = assert_problem(
        client.post(
            "/v1/profiles",
            json={"name": "A", "vehicles": [{"name": "K", "race_number": "#7"}]},
            headers=auth(token),
        ),
        422,
    )
    assert bad_vehicle["errors"][0]["field"] == "vehicles[0].race_number"
    too_many = assert_problem(
        client.post(
            "/v1/profiles", json={"name": "A", "vehicles": [{"name": "K"}] * 51}, headers=auth(token)
        ),
        422,
    )
    assert error_fields(too_many) == ["vehicles"]
    # Nothing was created by any of the refused requests.
    assert list_all(client, token, include_archived="true") == []
    assert_problem(client.get("/v1/profiles/default", headers=auth(token)), 404)


def test_rename_unknown_profile_is_404(client: httpx.Client, shared_token: str) -> None:
    response = client.patch(
        f"/v1/profiles/{uuid.uuid4()}", json={"name": "Ghost"}, headers=auth(shared_token)
    )
    assert_problem(response, 404, "not-found")


def test_rename_archived_profile_is_409(client: httpx.Client, shared_token: str) -> None:
    pid = create(client, shared_token, "Shelved")["id"]
    assert client.post(f"/v1/profiles/{pid}/archive", headers=auth(shared_token)).status_code == 200
    response = client.patch(f"/v1/profiles/{pid}", json={"name": "Renamed"}, headers=auth(shared_token))
    assert_problem(response, 409, "illegal-state")
    assert get(client, shared_token, pid)["name"] == "Shelved"


# --- archive and restore --------------------------------------------------


def test_archive_and_restore_a_non_default_profile(client: httpx.Client, token: str) -> None:
    default = create(client, token, "Main")
    other = create(client, token, "Other")
    response = client.post(
        f"/v1/profiles/{other['id']}/archive", json={"reason": "season over"}, headers=auth(token)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["archived"] is True and body["is_default"] is False
    assert body["version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert get(client, token, other["id"])["archived"] is True
    assert default_id(client, token) == default["id"]
    assert [p["id"] for p in list_all(client, token)] == [default["id"]]

    restored = client.post(
        f"/v1/profiles/{other['id']}/restore", json={"reason": "back"}, headers=auth(token)
    )
    assert restored.status_code == 200, restored.text
    assert restored.json()["archived"] is False and restored.json()["is_default"] is False
    assert restored.json()["version"] == 3
    assert default_id(client, token) == default["id"]
    assert [p["id"] for p in list_all(client, token)] == [default["id"], other["id"]]


def test_archiving_the_default_promotes_the_earliest_created(client: httpx.Client, token: str) -> None:
    ids = [create(client, token, n)["id"] for n in ("A", "B", "C")]
    # Make C the default, then archive it: A (earliest) takes over, not B.
    assert (
        client.put("/v1/profiles/default", json={"profile_id": ids[2]}, headers=auth(token)).status_code
        == 200
    )
    response = client.post(f"/v1/profiles/{ids[2]}/archive", headers=auth(token))
    assert response.status_code == 200, response.text
    assert response.json()["is_default"] is False
    assert default_id(client, token) == ids[0]
    assert get(client, token, ids[0])["is_default"] is True


def test_archiving_the_default_hands_over_to_the_named_successor(client: httpx.Client, token: str) -> None:
    ids = [create(client, token, n)["id"] for n in ("A", "B", "C")]
    response = client.post(
        f"/v1/profiles/{ids[0]}/archive", json={"successor_id": ids[2]}, headers=auth(token)
    )
    assert response.status_code == 200, response.text
    assert default_id(client, token) == ids[2]
    assert [p["is_default"] for p in list_all(client, token)] == [False, True]


def test_archive_refuses_unusable_successors(
    client: httpx.Client, token: str, new_token: Callable[..., str]
) -> None:
    a = create(client, token, "A")["id"]
    b = create(client, token, "B")["id"]
    c = create(client, token, "C")["id"]
    assert client.post(f"/v1/profiles/{c}/archive", headers=auth(token)).status_code == 200

    itself = client.post(f"/v1/profiles/{a}/archive", json={"successor_id": a}, headers=auth(token))
    assert_problem(itself, 409, "illegal-state")
    archived = client.post(f"/v1/profiles/{a}/archive", json={"successor_id": c}, headers=auth(token))
    assert_problem(archived, 409, "illegal-state")
    unknown = client.post(
        f"/v1/profiles/{a}/archive", json={"successor_id": str(uuid.uuid4())}, headers=auth(token)
    )
    assert error_fields(assert_problem(unknown, 422, "validation")) == ["successor_id"]
    stranger = new_token()
    foreign = create(client, stranger, "Theirs")["id"]
    other_account = client.post(
        f"/v1/profiles/{a}/archive", json={"successor_id": foreign}, headers=auth(token)
    )
    assert error_fields(assert_problem(other_account, 422)) == ["successor_id"]
    malformed = client.post(f"/v1/profiles/{a}/archive", json={"successor_id": "nope"}, headers=auth(token))
    assert error_fields(assert_problem(malformed, 422)) == ["successor_id"]

    # Nothing changed.
    assert default_id(client, token) == a
    assert [p["id"] for p in list_all(client, token)] == [a, b]
    assert default_id(client, stranger) == foreign


def test_archive_twice_is_409_and_unknown_is_404(client: httpx.Client, shared_token: str) -> None:
    pid = create(client, shared_token, "Once")["id"]
    assert client.post(f"/v1/profiles/{pid}/archive", headers=auth(shared_token)).status_code == 200
    assert_problem(
        client.post(f"/v1/profiles/{pid}/archive", headers=auth(shared_token)), 409, "illegal-state"
    )
    assert get(client, shared_token, pid)["version"] == 2
    assert_problem(
        client.post(f"/v1/profiles/{uuid.uuid4()}/archive", headers=auth(shared_token)), 404, "not-found"
    )


def test_archive_with_stale_if_match_is_412(client: httpx.Client, shared_token: str) -> None:
    pid = create(client, shared_token, "Guarded")["id"]
    response = client.post(f"/v1/profiles/{pid}/archive", headers=auth(shared_token, **{"If-Match": '"7"'}))
    assert assert_problem(response, 412)["current_version"] == 1
    assert get(client, shared_token, pid)["archived"] is False
    ok = client.post(f"/v1/profiles/{pid}/archive", headers=auth(shared_token, **{"If-Match": '"1"'}))
    assert ok.status_code == 200


def test_archiving_the_last_profile_then_restoring_it(client: httpx.Client, token: str) -> None:
    pid = create(client, token, "Phoenix")["id"]
    archived = client.post(f"/v1/profiles/{pid}/archive", headers=auth(token))
    assert archived.status_code == 200
    assert archived.json()["is_default"] is False
    assert_problem(client.get("/v1/profiles/default", headers=auth(token)), 404)
    assert list_all(client, token) == []

    # Restoring into an account with no active profile makes it the default.
    response = client.post(f"/v1/profiles/{pid}/restore", headers=auth(token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["archived"] is False and body["is_default"] is True
    assert body["version"] == 3
    assert response.headers["ETag"] == '"3"'
    assert default_id(client, token) == pid
    assert [p["id"] for p in list_all(client, token)] == [pid]


def test_restore_refusals(client: httpx.Client, shared_token: str) -> None:
    pid = create(client, shared_token, "Active")["id"]
    assert_problem(
        client.post(f"/v1/profiles/{pid}/restore", headers=auth(shared_token)), 409, "illegal-state"
    )
    assert_problem(
        client.post(f"/v1/profiles/{uuid.uuid4()}/restore", headers=auth(shared_token)), 404, "not-found"
    )
    unknown_field = client.post(
        f"/v1/profiles/{pid}/restore", json={"successor_id": pid}, headers=auth(shared_token)
    )
    assert error_fields(assert_problem(unknown_field, 422)) == ["successor_id"]
    assert get(client, shared_token, pid)["version"] == 1


# --- vehicles ---------------------------------------------------------------


def test_vehicle_lifecycle(client: httpx.Client, shared_token: str) -> None:
    pid = create(client, shared_token, "Garage", vehicles=[{"name": "Old kart"}])["id"]

    added = client.post(
        f"/v1/profiles/{pid}/vehicles",
        json={"name": "Rotax", "vehicle_class": "Junior", "race_number": "42"},
        headers=auth(shared_token),
    )
    assert added.status_code == 201, added.text
    body = added.json()
    new = body["vehicles"][-1]
    assert (new["name"], new["vehicle_class"], new["race_number"]) == ("Rotax", "Junior", "42")
    assert added.headers["Location"] == f"/v1/profiles/{pid}/vehicles/{new['id']}"
    assert added.headers["ETag"] == '"2"'
    assert body["vehicle_count"] == 2 and body["version"] == 2
    assert get(client, shared_token, pid) == body

    changed = client.patch(
        f"/v1/profiles/{pid}/vehicles/{new['id']}",
        json={"race_number": "7", "vehicle_class": None},
        headers=auth(shared_token),
    )
    assert changed.status_code == 200, changed.text
    after = {v["id"]: v for v in changed.json()["vehicles"]}[new["id"]]
    assert after == {"id": new["id"], "name": "Rotax", "vehicle_class": None, "race_number": "7"}
    assert changed.json()["version"] == 3
    assert changed.headers["ETag"] == '"3"'
    assert get(client, shared_token, pid)["vehicles"] == changed.json()["vehicles"]

    renamed = client.patch(
        f"/v1/profiles/{pid}/vehicles/{new['id']}", json={"name": "Rotax Evo"}, headers=auth(shared_token)
    )
    assert renamed.status_code == 200
    assert {v["id"]: v for v in get(client, shared_token, pid)["vehicles"]}[new["id"]]["name"] == "Rotax Evo"

    removed = client.delete(f"/v1/profiles/{pid}/vehicles/{new['id']}", headers=auth(shared_token))
    assert removed.status_code == 200, removed.text
    assert [v["name"] for v in removed.json()["vehicles"]] == ["Old kart"]
    assert removed.json()["vehicle_count"] == 1
    assert removed.json()["version"] == 5
    current = get(client, shared_token, pid)
    assert current["vehicle_count"] == 1 and [v["name"] for v in current["vehicles"]] == ["Old kart"]


def test_unknown_vehicle_is_404(client: httpx.Client, shared_token: str) -> None:
    pid = create(client, shared_token, "NoSuchKart", vehicles=[{"name": "Real"}])["id"]
    ghost = uuid.uuid4()
    assert_problem(
        client.patch(f"/v1/profiles/{pid}/vehicles/{ghost}", json={"name": "X"}, headers=auth(shared_token)),
        404,
        "not-found",
    )
    assert_problem(
        client.delete(f"/v1/profiles/{pid}/vehicles/{ghost}", headers=auth(shared_token)), 404, "not-found"
    )
    assert_problem(
        client.post(f"/v1/profiles/{uuid.uuid4()}/vehicles", json={"name": "X"}, headers=auth(shared_token)),
        404,
        "not-found",
    )
    assert get(client, shared_token, pid)["version"] == 1


def test_vehicle_validation(client: httpx.Client, shared_token: str) -> None:
    profile = create(client, shared_token, "Checks", vehicles=[{"name": "Kart", "race_number": "1"}])
    pid, vid = profile["id"], profile["vehicles"][0]["id"]
    url = f"/v1/profiles/{pid}/vehicles"
    for bad in ("#7", "1234567", "7 7", ""):
        body = assert_problem(
            client.post(url, json={"name": "K", "race_number": bad}, headers=auth(shared_token)), 422
        )
        assert body["errors"][0]["field"] == "race_number", bad
        body = assert_problem(
            client.patch(f"{url}/{vid}", json={"race_number": bad}, headers=auth(shared_token)), 422
        )
        assert body["errors"][0]["field"] == "race_number", bad
    assert (
        assert_problem(client.post(url, json={"name": " "}, headers=auth(shared_token)), 422)["errors"][0][
            "field"
        ]
        == "name"
    )
    long_class = client.post(url, json={"name": "K", "vehicle_class": "c" * 41}, headers=auth(shared_token))
    assert assert_problem(long_class, 422)["errors"][0]["field"] == "vehicle_class"
    assert error_fields(
        assert_problem(client.post(url, json={"name": "K", "wheels": 4}, headers=auth(shared_token)), 422)
    ) == ["wheels"]
    assert error_fields(assert_problem(client.post(url, json={}, headers=auth(shared_token)), 422)) == [
        "name"
    ]
    empty_patch = assert_problem(client.patch(f"{url}/{vid}", json={}, headers=auth(shared_token)), 422)
    assert empty_patch["errors"]
    null_name = assert_problem(
        client.patch(f"{url}/{vid}", json={"name": None}, headers=auth(shared_token)), 422
    )
    assert null_name["errors"][0]["field"] == "name"
    assert get(client, shared_token, pid) == profile


def test_vehicles_of_an_archived_profile_cannot_change(client: httpx.Client, shared_token: str) -> None:
    profile = create(client, shared_token, "Frozen", vehicles=[{"name": "Kart"}])
    pid, vid = profile["id"], profile["vehicles"][0]["id"]
    assert client.post(f"/v1/profiles/{pid}/archive", headers=auth(shared_token)).status_code == 200
    assert_problem(
        client.post(f"/v1/profiles/{pid}/vehicles", json={"name": "New"}, headers=auth(shared_token)), 409
    )
    assert_problem(
        client.patch(f"/v1/profiles/{pid}/vehicles/{vid}", json={"name": "New"}, headers=auth(shared_token)),
        409,
    )
    assert_problem(client.delete(f"/v1/profiles/{pid}/vehicles/{vid}", headers=auth(shared_token)), 409)
    after = get(client, shared_token, pid)
    assert after["vehicles"] == profile["vehicles"] and after["version"] == 2


def test_vehicle_commands_honour_if_match(client: httpx.Client, shared_token: str) -> None:
    pid = create(client, shared_token, "Tagged")["id"]
    stale = client.post(
        f"/v1/profiles/{pid}/vehicles", json={"name": "K"}, headers=auth(shared_token, **{"If-Match": '"3"'})
    )
    assert assert_problem(stale, 412)["current_version"] == 1
    ok = client.post(
        f"/v1/profiles/{pid}/vehicles", json={"name": "K"}, headers=auth(shared_token, **{"If-Match": '"1"'})
    )
    assert ok.status_code == 201
    vid = ok.json()["vehicles"][0]["id"]
    stale_delete = client.delete(
        f"/v1/profiles/{pid}/vehicles/{vid}", headers=auth(shared_token, **{"If-Match": '"1"'})
    )
    assert assert_problem(stale_delete, 412)["current_version"] == 2
    assert get(client, shared_token, pid)["vehicle_count"] == 1


def test_concurrent_commands_keep_exactly_one_default(client: httpx.Client, token: str) -> None:
    """Racing writers on one account (the server runs 4 request threads): every
    command succeeds and the account always ends with one default."""
    base_url = str(client.base_url)

    def call(method: str, path: str, payload: dict[str, str] | None = None) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=30) as own:
            return own.request(method, path, json=payload, headers=auth(token))

    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(lambda i: call("POST", "/v1/profiles", {"name": f"Racer {i}"}), range(8)))
        assert [r.status_code for r in created] == [201] * 8, [r.text for r in created]
        ids = [r.json()["id"] for r in created]
        listed = list_all(client, token)
        assert sorted(p["id"] for p in listed) == sorted(ids)
        assert sum(p["is_default"] for p in listed) == 1

        switched = list(pool.map(lambda pid: call("PUT", "/v1/profiles/default", {"profile_id": pid}), ids))
        assert [r.status_code for r in switched] == [200] * 8, [r.text for r in switched]
        archived = list(pool.map(lambda pid: call("POST", f"/v1/profiles/{pid}/archive"), ids[:6]))
        assert [r.status_code for r in archived] == [200] * 6, [r.text for r in archived]

    remaining = list_all(client, token)
    assert sorted(p["id"] for p in remaining) == sorted(ids[6:])
    assert sum(p["is_default"] for p in remaining) == 1
    assert default_id(client, token) in ids[6:]
    everything = list_all(client, token, include_archived="true")
    assert sum(p["is_default"] for p in everything) == 1


# --- read-your-writes and X-Min-Position ------------------------------------


def test_every_command_is_visible_to_the_next_read(client: httpx.Client, token: str) -> None:
    """No X-Min-Position: each read right after a command shows it."""
    h = auth(token)
    for round_ in range(3):
        a = create(client, token, f"A{round_}")["id"]
        assert get(client, token, a)["name"] == f"A{round_}"
        b = create(client, token, f"B{round_}")["id"]
        assert client.put("/v1/profiles/default", json={"profile_id": b}, headers=h).status_code == 200
        assert default_id(client, token) == b
        assert client.patch(f"/v1/profiles/{b}", json={"name": f"B{round_}x"}, headers=h).status_code == 200
        assert get(client, token, b)["name"] == f"B{round_}x"
        assert client.post(f"/v1/profiles/{b}/vehicles", json={"name": "K"}, headers=h).status_code == 201
        assert get(client, token, b)["vehicle_count"] == 1
        assert client.post(f"/v1/profiles/{b}/archive", headers=h).status_code == 200
        assert b not in [p["id"] for p in list_all(client, token)]
        assert default_id(client, token) != b
        assert client.post(f"/v1/profiles/{b}/restore", headers=h).status_code == 200
        assert b in [p["id"] for p in list_all(client, token)]


def test_x_min_position_of_a_command_is_served_at_once(client: httpx.Client, token: str) -> None:
    response = client.post("/v1/profiles", json={"name": "Waited"}, headers=auth(token))
    position = response.headers["X-Position"]
    pid = response.json()["id"]
    h = auth(token, **{"X-Min-Position": position})
    assert client.get("/v1/profiles", headers=h).status_code == 200
    assert client.get(f"/v1/profiles/{pid}", headers=h).json()["name"] == "Waited"
    assert client.get("/v1/profiles/default", headers=h).json()["id"] == pid


def test_x_min_position_beyond_the_log_is_refused_at_once_with_the_head(
    client: httpx.Client, shared_token: str
) -> None:
    created = create(client, shared_token, "Anything")
    head = int(client.get("/readyz").json()["head"])
    h = auth(shared_token, **{"X-Min-Position": str(10**9)})
    for path in ("/v1/profiles", "/v1/profiles/default", f"/v1/profiles/{created['id']}"):
        # No wait: a position no write has reached cannot be waited for (it used
        # to hold a request thread for WAIT_TIMEOUT and then answer 503).
        response = client.get(path, headers=h)
        body = assert_problem(response, 422, "position-ahead")
        assert str(10**9) in body["detail"]
        assert body["head"] >= head
        assert body["errors"] == [
            {"field": "X-Min-Position", "reason": f"is past the event log's head ({body['head']})"}
        ]
    # The head itself is a position a query may wait for.
    at_head = client.get("/v1/profiles/default", headers=auth(shared_token, **{"X-Min-Position": str(head)}))
    assert at_head.status_code in (200, 404), at_head.text


def test_x_min_position_must_be_a_non_negative_integer(client: httpx.Client, shared_token: str) -> None:
    for value in ("-1", "abc", "1.5"):
        response = client.get("/v1/profiles", headers=auth(shared_token, **{"X-Min-Position": value}))
        body = assert_problem(response, 422, "validation")
        assert body["errors"][0]["field"].lower() == "x-min-position", body
