"""Whatever a command accepts, it gives back unchanged: hypothesis draws bodies
for creating a profile, adding a vehicle and renaming (names and text with
padding and every printable script, numbers up to the bounds and beyond, floats
from subnormals to 2^53, -0.0, booleans, null, reasons in the body and in
X-Reason), sends them through the real API (in process, PostgreSQL behind it)
and compares, kinds of numbers included, what was accepted with the JSON
response, the read table (GET), the event store, the history, the export and,
at the end, verify. A refused body answers a 4xx problem and stores nothing.

Unchanged means: as the documented rules normalise it (text trimmed, -0.0 as 0.0).
One database for the module, a fresh account for every example."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from domain.values import SAFE_INTEGER
from infrastructure.container import Container
from tests.support.operations import verify_store

pytestmark = pytest.mark.postgres

TALLY = {"accepted": 0, "refused": 0}


@pytest.fixture(scope="module")
def api(module_container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(module_container), raise_server_exceptions=False) as client:
        yield client


# --- what clients send -----------------------------------------------------------------

printable = st.characters(categories=["L", "M", "N", "P", "S", "Zs"])
padding = st.sampled_from(["", " ", "  ", "\u3000", " \u00a0"])


def padded(core: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(padding, core, padding).map("".join)


def text(max_size: int) -> st.SearchStrategy[str]:
    # Mostly within the limit, sometimes just over it.
    return padded(st.text(printable, min_size=1, max_size=max_size + 2))


numbers = st.one_of(
    st.integers(-SAFE_INTEGER - 2, SAFE_INTEGER + 2),
    st.sampled_from([0, -0.0, 0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e15, 1e16, 0.1, 1 / 3]),
    st.sampled_from([float(SAFE_INTEGER), -float(SAFE_INTEGER), float(SAFE_INTEGER + 1), 1e20, 1.797e308]),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-(2.0**54), max_value=2.0**54),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
detail_values = st.one_of(st.none(), st.booleans(), numbers, text(200))
race_numbers = st.one_of(st.none(), padded(st.from_regex(r"[A-Za-z0-9]{1,7}", fullmatch=True)))
vehicles = st.fixed_dictionaries(
    {"name": text(80)},
    optional={"vehicle_class": st.one_of(st.none(), text(40)), "race_number": race_numbers},
)
reasons = st.one_of(st.none(), text(500))
create_bodies = st.fixed_dictionaries(
    {"name": text(80)},
    optional={
        "vehicles": st.lists(vehicles, max_size=3),
        "details": st.dictionaries(text(40), detail_values, max_size=6),
        "reason": reasons,
    },
)


# --- what the rules make of it ---------------------------------------------------------


def trimmed(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def number(value: Any) -> Any:
    return 0.0 if isinstance(value, float) and value == 0 else value


def expected_vehicle(body: dict[str, Any]) -> dict[str, Any]:
    return {k: trimmed(body.get(k)) for k in ("name", "vehicle_class", "race_number")}


def expected_profile(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": body["name"].strip(),
        "details": {k.strip(): number(trimmed(v)) for k, v in body.get("details", {}).items()},
        "vehicles": [expected_vehicle(v) for v in body.get("vehicles", [])],
    }


def exact(value: Any) -> str:
    """JSON with kinds kept: 1, 1.0 and True differ, and so do 0.0 and -0.0."""
    return json.dumps(value, sort_keys=True)


def shown(profile: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": profile["name"],
        "details": profile["details"],
        "vehicles": [
            {k: v[k] for k in ("name", "vehicle_class", "race_number")} for v in profile["vehicles"]
        ],
    }


# --- the property ----------------------------------------------------------------------


def assert_everywhere(
    c: Container, api: TestClient, token: str, pid: str, want: dict[str, Any], reasons: list[str | None]
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    read = api.get(f"/v1/profiles/{pid}", headers=auth)
    assert read.status_code == 200, read.text
    assert exact(shown(read.json())) == exact(want), "the read table"

    stored = c.app.get_profile(UUID(pid))
    store = {"name": stored.name, "details": stored.details, "vehicles": stored.vehicles}
    assert exact(shown(store)) == exact(want), "the event store"
    assert not any(
        math.copysign(1, v) < 0 for v in stored.details.values() if isinstance(v, float) and v == 0
    )

    history = api.get(f"/v1/profiles/{pid}/history", params={"limit": 200}, headers=auth)
    assert history.status_code == 200, history.text
    own = [e for e in history.json()["items"] if e["aggregate_id"] == pid]
    assert [e["reason"] for e in own] == reasons, "the history's reasons"
    created = own[0]["data"]
    assert exact(created["details"]) == exact(want["details"]), "the history"

    export = api.get("/v1/audit/events", headers=auth)
    assert export.status_code == 200, export.text
    lines = [json.loads(line) for line in export.text.splitlines()]
    exported = [line for line in lines if line["aggregate_id"] == pid]
    assert [line["position"] for line in exported] == [e["position"] for e in own], "the export"
    assert exact(exported[0]["data"]["details"]) == exact(want["details"]), "the export"
    assert latest_name(exported) == want["name"], "the export"


def latest_name(exported: list[dict[str, Any]]) -> str:
    """The profile's name after its exported events (Created and Renamed carry one)."""
    names = [line["data"]["name"] for line in exported if line["type"] in ("Created", "Renamed")]
    return str(names[-1])


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=create_bodies,
    vehicle=vehicles,
    new_name=text(80),
    header_reason=reasons,
)
def test_what_a_command_accepts_comes_back_unchanged_everywhere(
    module_container: Container,
    api: TestClient,
    body: dict[str, Any],
    vehicle: dict[str, Any],
    new_name: str,
    header_reason: str | None,
) -> None:
    c = module_container
    token = c.accounts.create("round-trip").token
    auth = {"Authorization": f"Bearer {token}"}
    head = c.audit.log.head()

    created = api.post("/v1/profiles", json=body, headers=auth)
    if created.status_code != 201:
        TALLY["refused"] += 1
        assert 400 <= created.status_code < 500 and created.json()["errors"], created.text
        assert c.audit.log.head() == head, "a refused body was stored"
        return
    TALLY["accepted"] += 1
    want = expected_profile(body)
    assert exact(shown(created.json())) == exact(want), "the JSON response"
    pid = created.json()["id"]
    reasons = [trimmed(body.get("reason")) or None]

    headers = dict(auth)
    if header_reason is not None:
        headers["X-Reason"] = quote(header_reason)
    added = api.post(f"/v1/profiles/{pid}/vehicles", json=vehicle, headers=headers)
    if added.status_code == 201:
        want["vehicles"].append(expected_vehicle(vehicle))
        reasons.append(trimmed(header_reason) or None)
        assert exact(shown(added.json())) == exact(want), "the JSON response"
    else:
        assert added.status_code == 422, added.text

    renamed = api.patch(f"/v1/profiles/{pid}", json={"name": new_name, "reason": header_reason}, headers=auth)
    if renamed.status_code == 200:
        if new_name.strip() != want["name"]:
            reasons.append(trimmed(header_reason) or None)
        want["name"] = new_name.strip()
        assert exact(shown(renamed.json())) == exact(want), "the JSON response"
    else:
        assert renamed.status_code == 422, renamed.text

    assert_everywhere(c, api, token, pid, want, reasons)


def test_verify_finds_the_store_and_the_read_table_equal_after_the_round_trips(
    module_container: Container,
) -> None:
    assert TALLY["accepted"] >= 10, TALLY  # the property above was not vacuous
    assert verify_store(module_container) == []
