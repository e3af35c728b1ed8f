"""The audit index the projection keeps beside the read table: rebuilt by
`rebuild`, checked by `verify`, and read a page at a time."""

from __future__ import annotations

from psycopg.sql import SQL, Identifier

from domain.service import Cause
from infrastructure.container import Container
from infrastructure.profiles_sql import TABLE, account_events_table, history_table
from tests.support.operations import rebuild_read_table, verify_store

ACC = "acct-index"


def _some_history(c: Container) -> tuple[object, object]:
    p1 = c.app.create_profile(ACC, "Ann", [{"name": "Kart"}], Cause("alice", "signup", "r1")).profile_id
    p2 = c.app.create_profile(ACC, "Bob", [], Cause("alice", None, "r2")).profile_id
    c.app.set_default(ACC, p2, Cause("bob", "my turn", "r3"))
    c.app.rename(ACC, p1, "Anna", Cause("alice", None, "r4"))
    last = c.app.archive(ACC, p2, Cause("carol", "left", "r5"))
    c.view.wait(c.app.name, last.position, timeout=10)
    return p1, p2


def _everything(c: Container, p1: object, p2: object) -> tuple[object, ...]:
    refs = [c.audit.timeline(p) for p in (p1, p2)]  # type: ignore[arg-type]
    assert all(refs)
    return (
        [c.audit.history(ref) for ref in refs],  # type: ignore[arg-type]
        [c.audit.as_it_was(ref, version=v) for ref in refs for v in (1, 2, 3)],  # type: ignore[arg-type]
        c.audit.defaults(ACC),
        [e.position for e in c.audit.account_events(ACC)],
    )


def test_rebuild_rebuilds_the_audit_index_and_verify_notices_a_missing_one(container: Container) -> None:
    c = container
    p1, p2 = _some_history(c)
    before = _everything(c, p1, p2)
    history_of_anna = before[0][0]  # type: ignore[index]
    assert [e["type"] for e in history_of_anna] == [
        "Created",
        "MemberAdded",
        "DefaultChanged",
        "DefaultChanged",
        "Renamed",
        "DefaultChanged",
    ]
    assert [e.get("concerns") for e in history_of_anna] == [
        None,
        "joined the active profiles",
        "became the default",
        "stopped being the default",
        None,
        "became the default",
    ]
    assert verify_store(c) == []

    # An index that lacks events (a database from before the index existed).
    schema = Identifier(c.datastore.schema)
    with c.datastore.transaction(commit=True) as curs:
        for table in (history_table(TABLE), account_events_table(TABLE)):
            curs.execute(SQL("DELETE FROM {}.{}").format(schema, Identifier(table)))
    problems = verify_store(c)
    assert len(problems) == 1 and "audit index lists 0 of the" in problems[0], problems

    rebuild_read_table(c)
    assert verify_store(c) == []
    assert _everything(c, p1, p2) == before


def test_a_history_page_starts_after_the_cursor_position(container: Container) -> None:
    c = container
    p1, _ = _some_history(c)
    ref = c.audit.timeline(p1)  # type: ignore[arg-type]
    assert ref is not None
    whole = c.audit.history(ref)
    assert c.audit.history(ref, limit=2) == whole[:2]
    assert c.audit.history(ref, after=whole[1]["position"], limit=3) == whole[2:5]
    assert c.audit.history(ref, after=whole[-1]["position"]) == []


def test_roster_events_stored_before_their_profiles_are_listed_under_the_account(
    container: Container,
) -> None:
    """A bulk writer may save the roster before the profiles that join it (the
    benchmark's seeding does): the index must not depend on the profile's row."""
    from uuid import uuid4

    from domain.profile import RacerProfile
    from domain.roster import Roster

    c = container
    roster = Roster.open("acct-bulk", "bulk")
    profiles = []
    for name in ("Ann", "Bob"):
        profile = RacerProfile.start(uuid4(), "acct-bulk", name, [], "bulk")
        roster.join(profile.id, profile.created_at.isoformat(), "bulk")
        profiles.append(profile)
    last = c.app.save(roster, *profiles)[-1].notification.id
    c.view.wait(c.app.name, last, timeout=10)

    assert [e.position for e in c.audit.account_events("acct-bulk")] == list(range(last - 5, last + 1))
    assert [d["to_profile_id"] for d in c.audit.defaults("acct-bulk")] == [str(profiles[0].id)]
    ann = c.audit.timeline(profiles[0].id)
    assert ann is not None
    assert [e["type"] for e in c.audit.history(ann)] == ["MemberAdded", "DefaultChanged", "Created"]
    # (The read table itself assumes a profile's first event comes before its
    # roster's events about it: its default flag is not asserted here.)
