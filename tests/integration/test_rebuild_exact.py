"""A rebuild writes its fresh tables a page at a time (infrastructure/fresh_tables.py),
not statement by statement as the live view does: the four tables it swaps in must
be the live view's, row for row, wherever the pages split the events."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from psycopg.sql import SQL, Identifier

from domain.profile import RacerProfile
from domain.roster import Roster
from domain.service import Cause
from infrastructure import rebuild
from infrastructure.container import Container
from infrastructure.profiles_sql import TABLE, tables
from tests.support.operations import rebuild_read_table, verify_store

CAUSE = Cause("tester", "exact rebuild")


def _story(c: Container, account: str, n: int) -> int:
    """Every kind of row change, on new profiles and on profiles of earlier pages."""
    app = c.app
    a = app.create_profile(account, f"A{n}", [{"name": "Kart", "race_number": "7"}], CAUSE)
    b = app.create_profile(account, f"B{n}", [], CAUSE, details={"club": "X", "weight": 71.5})
    d = app.create_profile(account, f"D{n}", [{"name": "GT", "vehicle_class": "GT3"}, {"name": "F4"}], CAUSE)
    app.rename(account, a.profile_id, f"A{n}-renamed", CAUSE)
    added = app.add_vehicle(account, b.profile_id, {"name": "Bike", "vehicle_class": "MX"}, CAUSE)
    app.change_vehicle(account, b.profile_id, str(added.vehicle_id), {"race_number": "99"}, CAUSE)
    app.remove_vehicle(account, d.profile_id, app.get_profile(d.profile_id).vehicles[0]["id"], CAUSE)
    app.set_default(account, d.profile_id, CAUSE)
    app.archive(account, d.profile_id, CAUSE, successor_id=b.profile_id)
    if n % 2:
        app.erase(account, b.profile_id, CAUSE)  # the default erased: A takes over
    last = app.restore(account, d.profile_id, CAUSE).position
    # A new profile that is changed at once (within the same page, mostly).
    e = app.create_profile(account, f"E{n}", [{"name": "Quad"}], CAUSE)
    app.add_vehicle(account, e.profile_id, {"name": "Buggy"}, CAUSE)
    app.set_default(account, e.profile_id, CAUSE)
    return max(last, app.rename(account, e.profile_id, f"E{n}-renamed", CAUSE).position)


def _roster_first(c: Container, account: str) -> int:
    """A bulk writer's save: the roster's events before those of its profiles."""
    roster = Roster.open(account, "bulk")
    profiles = []
    for name in ("Ann", "Bob"):
        profile = RacerProfile.start(uuid4(), account, name, [], "bulk")
        roster.join(profile.id, profile.created_at.isoformat(), "bulk")
        profiles.append(profile)
    return int(c.app.save(roster, *profiles)[-1].notification.id)


def _tables(c: Container) -> list[list[tuple[Any, ...]]]:
    schema = Identifier(c.datastore.schema)
    contents = []
    with c.datastore.transaction(commit=False) as curs:
        for name in tables(TABLE):
            curs.execute(SQL("SELECT * FROM {}.{}").format(schema, Identifier(name)))
            contents.append(sorted((tuple(map(repr, row.values())) for row in curs.fetchall()), key=str))
    return contents


@pytest.mark.parametrize("page", [1000, 7, 1])
def test_the_rebuilt_tables_are_the_live_views_row_for_row(
    container: Container, monkeypatch: pytest.MonkeyPatch, page: int
) -> None:
    c = container
    last = 0
    for n in range(4):
        last = max(last, _story(c, f"acct-exact-{n}", n))
    last = max(last, _roster_first(c, "acct-exact-bulk"))
    c.view.wait(c.app.name, last, timeout=10)
    # The read table misses the bulk account's default (its roster's events come
    # before its profiles' rows: test_audit_index.py), and so must the rebuilt one.
    checked = verify_store(c)
    assert len(checked) == 2 and "account acct-exact-bulk: read table shows 0 defaults" in checked[1]
    live = _tables(c)
    assert all(live)

    monkeypatch.setattr(rebuild, "BATCH", page)  # pages split the events everywhere
    assert rebuild_read_table(c) == last

    assert _tables(c) == live
    assert verify_store(c) == checked
