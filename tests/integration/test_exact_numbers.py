"""Numbers survive the read table exactly, even those the API no longer accepts.

PostgreSQL's jsonb prints the float 1e20 back as the integer 100000000000000000000:
stored that way, the read turned a float into a 67-bit integer, the response
encoder refused it (500 on every read of the account) and verify reported a
difference. Events written before details were bounded still hold such floats,
so the read table must carry them exactly."""

from __future__ import annotations

import math
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from domain.profile import RacerProfile
from domain.roster import Roster
from infrastructure.container import Container
from tests.support.operations import rebuild_read_table, verify_store

pytestmark = pytest.mark.postgres

FLOATS = {"big": 1e20, "max": 1.7976931348623157e308, "tiny": 5e-324, "neg": -1.5e300, "third": 1 / 3}


def _store_unchecked(container: Container, account: str, details: dict[str, object]) -> int:
    """A profile whose details skip today's checks, as an event stored before them."""
    profile = RacerProfile(
        id=uuid4(),
        account_id=account,
        name="Old",
        vehicles=[],
        details=details,
        actor=account,
        reason=None,
        request_id=None,
        source=None,
    )
    roster = Roster.open(account, account, None, None)
    roster.join(profile.id, profile.created_at.isoformat(), account, None, None)
    recordings = container.app.save(profile, roster)
    return recordings[-1].notification.id


def test_floats_beyond_the_bound_come_back_exactly_from_the_table_the_api_and_verify(
    container: Container,
) -> None:
    account = container.accounts.create("old-floats")
    position = _store_unchecked(container, str(account.account_id), dict(FLOATS))
    container.view.wait(container.app.name, position, timeout=10)

    (row,) = [r for r in container.queries.all_rows() if r.account_id == str(account.account_id)]
    for key, value in FLOATS.items():
        assert type(row.details[key]) is float and row.details[key] == value, (key, row.details[key])

    with TestClient(create_app(container)) as client:
        listed = client.get("/v1/profiles", headers={"Authorization": f"Bearer {account.token}"})
    assert listed.status_code == 200, listed.text
    shown = listed.json()["items"][0]["details"]
    assert shown == FLOATS and all(isinstance(v, float) for v in shown.values()), shown

    assert verify_store(container) == []
    rebuild_read_table(container)
    (rebuilt,) = [r for r in container.queries.all_rows() if r.account_id == str(account.account_id)]
    assert rebuilt.details == FLOATS
    assert verify_store(container) == []


def test_an_integer_beyond_64_bits_from_an_old_event_is_still_answered(container: Container) -> None:
    account = container.accounts.create("old-bigint")
    position = _store_unchecked(container, str(account.account_id), {"laps": 2**70, "ok": 1.0})
    container.view.wait(container.app.name, position, timeout=10)
    with TestClient(create_app(container)) as client:
        listed = client.get("/v1/profiles", headers={"Authorization": f"Bearer {account.token}"})
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"][0]["details"] == {"laps": 2**70, "ok": 1.0}
    assert math.copysign(1, listed.json()["items"][0]["details"]["ok"]) == 1
