"""Audit views replayed from the events (infrastructure/audit.py) on PostgreSQL:
recorded causes, a profile's history, the profile as it was, the default
timeline, and events stored before the audit fields existed.

One database serves the module; every test works in accounts of its own."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from domain.roster import roster_id
from domain.service import Cause, ProfilesService
from infrastructure.audit import export_record
from infrastructure.container import Container

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)$")
NEW_FIELDS = ("actor", "reason", "request_id", "prev_hash", "event_hash", "details")


@pytest.fixture(scope="module")
def shared(module_container: Container) -> Container:
    return module_container


@pytest.fixture
def acc() -> str:
    return f"acc-{uuid.uuid4().hex[:12]}"


def caught_up(c: Container, position: int) -> None:
    c.view.wait(c.app.name, position, timeout=10)


def now() -> datetime:
    return datetime.now(UTC)


def indexed(c: Container) -> None:
    """Waits until the projection has listed every event in the audit index."""
    caught_up(c, c.audit.log.head())


def history(c: Container, profile_id: UUID) -> list[dict[str, Any]]:
    indexed(c)
    timeline = c.audit.timeline(profile_id)
    assert timeline is not None
    return c.audit.history(timeline)


def state_at(c: Container, profile_id: UUID, **when: Any) -> dict[str, Any] | None:
    indexed(c)
    timeline = c.audit.timeline(profile_id)
    assert timeline is not None
    return c.audit.as_it_was(timeline, **when)


def defaults(c: Container, account_id: str) -> list[dict[str, Any]]:
    indexed(c)
    return c.audit.defaults(account_id)


def summary(state: dict[str, Any] | None) -> tuple[Any, ...] | None:
    if state is None:
        return None
    return (state["name"], state["archived"], [v["name"] for v in state["vehicles"]], state["is_default"])


# --- every event records who, why and in which request ----------------------------


def test_every_event_of_a_command_records_actor_reason_and_request_id(shared: Container, acc: str) -> None:
    c = shared
    pid = c.app.create_profile(acc, "Ann", [], Cause("alice", "signup", "rq-create")).profile_id
    other = c.app.create_profile(acc, "Bob", [], Cause("alice", None, "rq-bob")).profile_id
    c.app.archive(acc, pid, Cause("bob", "retired", "rq-archive"), successor_id=other)

    entries = history(c, pid)
    causes = [(e["type"], e["actor"], e["reason"], e["request_id"]) for e in entries]
    assert causes == [
        ("Created", "alice", "signup", "rq-create"),
        ("MemberAdded", "alice", "signup", "rq-create"),
        ("DefaultChanged", "alice", "signup", "rq-create"),
        ("Archived", "bob", "retired", "rq-archive"),
        ("MemberRemoved", "bob", "retired", "rq-archive"),
        ("DefaultChanged", "bob", "retired", "rq-archive"),
    ]
    # The stored JSON itself carries the fields, not only the decoded events.
    for logged in c.audit.log.of(pid):
        state = json.loads(logged.stored.state)
        assert {"actor", "reason", "request_id", "prev_hash", "event_hash"} <= set(state)


def test_a_cause_without_reason_is_recorded_as_null(shared: Container, acc: str) -> None:
    c = shared
    pid = c.app.create_profile(acc, "Ann", [], Cause("alice", None, "rq-1")).profile_id
    c.app.rename(acc, pid, "Anna", Cause("carol", None, "rq-2"))
    renamed = history(c, pid)[-1]
    assert (renamed["type"], renamed["actor"], renamed["reason"], renamed["request_id"]) == (
        "Renamed",
        "carol",
        None,
        "rq-2",
    )


# --- history ----------------------------------------------------------------------


def test_history_lists_the_profile_events_and_the_roster_events_about_it_in_order(
    shared: Container, acc: str
) -> None:
    c = shared
    p1 = c.app.create_profile(acc, "Ann", [{"name": "Kart"}], Cause("alice", "signup", "r1")).profile_id
    p2 = c.app.create_profile(acc, "Bob", [], Cause("alice", None, "r2")).profile_id
    c.app.rename(acc, p1, "Anna", Cause("alice", "typo", "r3"))
    c.app.set_default(acc, p2, Cause("bob", "my turn", "r4"))
    vehicle = c.app.add_vehicle(
        acc, p1, {"name": "Buggy", "race_number": "7"}, Cause("alice", None, "r5")
    ).vehicle_id
    c.app.archive(acc, p1, Cause("alice", "pause", "r6"))
    c.app.restore(acc, p1, Cause("alice", "back", "r7"))
    c.app.archive(acc, p2, Cause("bob", "gone", "r8"))  # p1 is the only one left: default again

    entries = history(c, p1)

    assert [(e["aggregate_type"], e["type"], e.get("concerns")) for e in entries] == [
        ("RacerProfile", "Created", None),
        ("Roster", "MemberAdded", "joined the active profiles"),
        ("Roster", "DefaultChanged", "became the default"),
        ("RacerProfile", "Renamed", None),
        ("Roster", "DefaultChanged", "stopped being the default"),
        ("RacerProfile", "VehicleAdded", None),
        ("RacerProfile", "Archived", None),
        ("Roster", "MemberRemoved", "left the active profiles"),
        ("RacerProfile", "Restored", None),
        ("Roster", "MemberAdded", "joined the active profiles"),
        ("Roster", "DefaultChanged", "became the default"),
    ]
    positions = [e["position"] for e in entries]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert [e["version"] for e in entries if e["aggregate_type"] == "RacerProfile"] == [1, 2, 3, 4, 5]
    roster_versions = [e["version"] for e in entries if e["aggregate_type"] == "Roster"]
    assert roster_versions == sorted(roster_versions)
    assert {e["aggregate_id"] for e in entries} == {str(p1), str(roster_id(acc))}
    assert [e["request_id"] for e in entries] == [
        "r1",
        "r1",
        "r1",
        "r3",
        "r4",
        "r5",
        "r6",
        "r6",
        "r7",
        "r7",
        "r8",
    ]
    assert [e["actor"] for e in entries][4] == "bob"
    assert [e["reason"] for e in entries][:5] == ["signup", "signup", "signup", "typo", "my turn"]

    by_type = {e["type"]: e for e in entries if e["aggregate_type"] == "RacerProfile"}
    assert by_type["Renamed"]["data"] == {"name": "Anna"}
    assert by_type["VehicleAdded"]["data"] == {
        "vehicle": {"id": vehicle, "name": "Buggy", "vehicle_class": None, "race_number": "7"}
    }
    assert by_type["Created"]["data"]["name"] == "Ann"
    assert by_type["Created"]["data"]["account_id"] == acc
    assert by_type["Archived"]["data"] == {}
    for entry in entries:
        assert not {"event_hash", "prev_hash", "timestamp", "actor", "request_id"} & set(entry["data"])
        assert RFC3339_UTC.match(entry["recorded_at"]), entry["recorded_at"]
        assert datetime.fromisoformat(entry["recorded_at"]).utcoffset() == timedelta(0)
    recorded = [datetime.fromisoformat(e["recorded_at"]) for e in entries]
    assert recorded == sorted(recorded)
    defaults = [e["data"] for e in entries if e["type"] == "DefaultChanged"]
    assert defaults == [
        {"previous": None, "new": str(p1)},
        {"previous": str(p1), "new": str(p2)},
        {"previous": str(p2), "new": str(p1)},
    ]


def test_history_leaves_out_roster_events_about_other_profiles(shared: Container, acc: str) -> None:
    c = shared
    p1 = c.app.create_profile(acc, "Ann", [], Cause("alice", None, "a")).profile_id
    p2 = c.app.create_profile(acc, "Bob", [], Cause("alice", None, "b")).profile_id
    p3 = c.app.create_profile(acc, "Cy", [], Cause("alice", None, "c")).profile_id
    c.app.set_default(acc, p3, Cause("alice", None, "d"))  # p1 -> p3: concerns p1 and p3
    c.app.set_default(acc, p2, Cause("alice", None, "e"))  # p3 -> p2: not about p1
    c.app.archive(acc, p3, Cause("alice", None, "f"))

    assert [e["request_id"] for e in history(c, p1)] == ["a", "a", "a", "d"]
    assert [(e["type"], e.get("concerns")) for e in history(c, p2)] == [
        ("Created", None),
        ("MemberAdded", "joined the active profiles"),
        ("DefaultChanged", "became the default"),
    ]
    assert [e.get("concerns") for e in history(c, p3)] == [
        None,
        "joined the active profiles",
        "became the default",
        "stopped being the default",
        None,
        "left the active profiles",
    ]


def test_no_timeline_for_unknown_ids_or_rosters(shared: Container, acc: str) -> None:
    c = shared
    c.app.create_profile(acc, "Ann", [], Cause("alice"))
    assert c.audit.timeline(uuid.uuid4()) is None
    assert c.audit.timeline(roster_id(acc)) is None


# --- as it was ---------------------------------------------------------------------


def test_each_version_replays_the_profile_as_that_command_left_it(shared: Container, acc: str) -> None:
    c = shared
    # The account's roster exists already (see the next test for its first profile).
    p0 = c.app.create_profile(acc, "Zero", [], Cause("alice", None, "q0")).profile_id
    c.app.archive(acc, p0, Cause("alice", None, "q00"))
    p1 = c.app.create_profile(acc, "Ann", [{"name": "Kart"}], Cause("alice", None, "q1")).profile_id
    p2 = c.app.create_profile(acc, "Bob", [], Cause("alice", None, "q2")).profile_id
    c.app.rename(acc, p1, "Anna", Cause("alice", None, "q3"))  # v2
    c.app.set_default(acc, p2, Cause("alice", None, "q4"))  # p1 loses default
    c.app.add_vehicle(acc, p1, {"name": "Buggy"}, Cause("alice", None, "q5"))  # v3
    c.app.archive(acc, p2, Cause("alice", None, "q6"))  # p1 default again
    c.app.archive(acc, p1, Cause("alice", None, "q7"))  # v4, no default left
    c.app.restore(acc, p1, Cause("alice", None, "q8"))  # v5, default again

    expected = {
        1: ("Ann", False, ["Kart"], True),
        2: ("Anna", False, ["Kart"], True),
        3: ("Anna", False, ["Kart", "Buggy"], False),
        4: ("Anna", True, ["Kart", "Buggy"], False),
        5: ("Anna", False, ["Kart", "Buggy"], True),
    }
    for version, want in expected.items():
        state = state_at(c, p1, version=version)
        assert state is not None
        assert summary(state) == want, version
        assert state["version"] == version
        assert state["id"] == str(p1)
        assert state["vehicle_count"] == len(want[2])
    assert state_at(c, p1, version=6) is None
    assert state_at(c, p1, version=0) is None


def test_version_one_of_an_account_s_first_profile_can_be_replayed(shared: Container, acc: str) -> None:
    """The first profile of an account is saved with the roster's Created event,
    which carries no request id."""
    c = shared
    pid = c.app.create_profile(acc, "Ann", [], Cause("alice", None, "rq-first")).profile_id
    state = state_at(c, pid, version=1)
    assert summary(state) == ("Ann", False, [], True)


def test_a_version_made_without_a_request_id_still_shows_the_default_it_got(
    shared: Container, acc: str
) -> None:
    """Commands called without a request id (the legacy import does) save the
    roster events of the command after the profile's: they belong to the version."""
    c = shared
    p1 = c.app.create_profile(acc, "Ann", [], Cause("importer")).profile_id
    p2 = c.app.create_profile(acc, "Bob", [], Cause("importer")).profile_id
    c.app.archive(acc, p1, Cause("importer"))  # p1 v2: p2 becomes the default
    c.app.restore(acc, p1, Cause("importer"))  # p1 v3: p2 stays the default
    assert summary(state_at(c, p2, version=1)) == ("Bob", False, [], False)
    assert summary(state_at(c, p1, version=2)) == ("Ann", True, [], False)
    assert summary(state_at(c, p1, version=1)) == ("Ann", False, [], True)


def test_as_of_replays_the_profile_at_a_moment(shared: Container, acc: str) -> None:
    c = shared
    before = now()
    p1 = c.app.create_profile(acc, "Ann", [], Cause("alice", None, "t1")).profile_id
    t1 = now()
    p2 = c.app.create_profile(acc, "Bob", [], Cause("alice", None, "t2")).profile_id
    t2 = now()
    c.app.set_default(acc, p2, Cause("alice", None, "t3"))  # no new version of p1
    t3 = now()
    c.app.rename(acc, p1, "Anna", Cause("alice", None, "t4"))
    t4 = now()
    c.app.archive(acc, p1, Cause("alice", None, "t5"))
    t5 = now()

    assert state_at(c, p1, as_of=before) is None
    assert summary(state_at(c, p1, as_of=t1)) == ("Ann", False, [], True)
    assert summary(state_at(c, p1, as_of=t2)) == ("Ann", False, [], True)
    assert summary(state_at(c, p1, as_of=t3)) == ("Ann", False, [], False)
    assert summary(state_at(c, p1, as_of=t4)) == ("Anna", False, [], False)
    assert summary(state_at(c, p1, as_of=t5)) == ("Anna", True, [], False)
    assert summary(state_at(c, p1, as_of=t5 + timedelta(days=365))) == ("Anna", True, [], False)
    assert state_at(c, p1, as_of=t3)["version"] == 1  # type: ignore[index]
    # another offset names the same instant
    plus_two = t3.astimezone(timezone(timedelta(hours=2)))
    assert summary(state_at(c, p1, as_of=plus_two)) == ("Ann", False, [], False)
    assert summary(state_at(c, p2, as_of=t2)) == ("Bob", False, [], False)
    assert summary(state_at(c, p2, as_of=t3)) == ("Bob", False, [], True)


# --- the default timeline ----------------------------------------------------------


def test_the_default_timeline_lists_every_change_in_order(shared: Container, acc: str) -> None:
    c = shared
    start = now()
    p1 = c.app.create_profile(acc, "Ann", [], Cause("alice", "signup", "d1")).profile_id
    p2 = c.app.create_profile(acc, "Bob", [], Cause("alice", None, "d2")).profile_id
    c.app.set_default(acc, p2, Cause("bob", "my turn", "d3"))
    c.app.set_default(acc, p2, Cause("bob", "again", "d4"))  # already the default: no change
    c.app.archive(acc, p2, Cause("carol", "left the team", "d5"))
    c.app.archive(acc, p1, Cause("carol", "season over", "d6"))
    c.app.restore(acc, p2, Cause("dave", None, "d7"))
    end = now()

    changes = defaults(c, acc)

    assert [
        (ch["from_profile_id"], ch["to_profile_id"], ch["actor"], ch["reason"], ch["request_id"])
        for ch in changes
    ] == [
        (None, str(p1), "alice", "signup", "d1"),
        (str(p1), str(p2), "bob", "my turn", "d3"),
        (str(p2), str(p1), "carol", "left the team", "d5"),
        (str(p1), None, "carol", "season over", "d6"),
        (None, str(p2), "dave", None, "d7"),
    ]
    positions = [ch["position"] for ch in changes]
    assert positions == sorted(positions)
    times = [datetime.fromisoformat(ch["changed_at"]) for ch in changes]
    assert times == sorted(times)
    assert all(start <= t <= end for t in times)
    assert all(RFC3339_UTC.match(ch["changed_at"]) for ch in changes)


def test_the_default_timeline_of_an_account_without_profiles_is_empty(shared: Container, acc: str) -> None:
    shared.app.create_profile(f"{acc}-other", "Ann", [], Cause("alice"))
    assert defaults(shared, acc) == []


def test_an_accounts_events_are_every_event_of_its_roster_and_profiles(shared: Container, acc: str) -> None:
    c = shared
    p1 = c.app.create_profile(acc, "Ann", [], Cause("alice")).profile_id
    p2 = c.app.create_profile(acc, "Bob", [], Cause("alice")).profile_id
    c.app.archive(acc, p1, Cause("alice"))
    c.app.restore(acc, p1, Cause("alice"))
    c.app.create_profile(f"{acc}-other", "Eve", [], Cause("eve"))
    indexed(c)
    mine = {roster_id(acc), p1, p2}
    expected = [e.position for e in c.audit.log.iterate(0) if e.aggregate_id in mine]
    assert [e.position for e in c.audit.account_events(acc, page=3)] == expected
    assert [e.position for e in c.audit.account_events(acc, after=expected[4])] == expected[5:]


# --- events stored before the audit fields existed ----------------------------------


def old_shaped_history(account: str) -> list[StoredEvent]:
    """A profile's and its roster's events as an older version stored them."""
    scratch = ProfilesService()
    pid = scratch.create_profile(account, "Old Ann", [{"name": "Kart"}], Cause("x")).profile_id
    scratch.rename(account, pid, "Old Anna", Cause("x"))
    events = []
    for n in scratch.recorder.select_notifications(0, 100):
        state = json.loads(n.state)
        for name in NEW_FIELDS:
            state.pop(name, None)
        events.append(StoredEvent(n.originator_id, n.originator_version, n.topic, json.dumps(state).encode()))
    return events


def test_events_without_the_audit_fields_load_with_defaults(shared: Container, acc: str) -> None:
    c = shared
    old = old_shaped_history(acc)
    pid = UUID(str(old[0].originator_id))
    ids = c.app.recorder.insert_events(old)
    assert ids
    caught_up(c, max(ids))

    profile = c.app.get_profile(pid)
    assert (profile.name, profile.version, profile.details) == ("Old Anna", 2, {})
    row = c.queries.get(acc, pid)
    assert row is not None and (row.name, row.is_default, row.details) == ("Old Anna", True, {})

    entries = history(c, pid)
    assert [e["type"] for e in entries] == ["Created", "MemberAdded", "DefaultChanged", "Renamed"]
    for entry in entries:
        assert (entry["actor"], entry["reason"], entry["request_id"]) == ("unknown", None, None)
    assert summary(state_at(c, pid, version=2)) == ("Old Anna", False, ["Kart"], True)
    assert [(ch["actor"], ch["to_profile_id"]) for ch in defaults(c, acc)] == [("unknown", str(pid))]
    for logged in c.audit.log.of(pid):
        record = export_record(logged, c.audit.log.decode(logged))
        assert record["actor"] == "unknown"

    # A new command on the old profile records its cause as usual.
    c.app.rename(acc, pid, "New Anna", Cause("alice", "cleanup", "rq-new"))
    newest = history(c, pid)[-1]
    assert (newest["type"], newest["actor"], newest["reason"], newest["request_id"]) == (
        "Renamed",
        "alice",
        "cleanup",
        "rq-new",
    )


def test_an_event_stripped_in_the_table_still_loads(shared: Container, acc: str) -> None:
    c = shared
    pid = c.app.create_profile(acc, "Ann", [], Cause("alice", "why", "rq")).profile_id
    c.app.rename(acc, pid, "Anna", Cause("alice", "why", "rq2"))
    with psycopg.connect(c.settings.database_url, autocommit=True) as conn:  # type: ignore[arg-type]
        row = conn.execute(
            "SELECT state FROM racerprofiles_events WHERE originator_id = %s AND originator_version = 2",
            (pid,),
        ).fetchone()
        assert row is not None
        state = json.loads(bytes(row[0]))
        for name in NEW_FIELDS:
            state.pop(name, None)
        conn.execute(
            "UPDATE racerprofiles_events SET state = %s WHERE originator_id = %s AND originator_version = 2",
            (json.dumps(state).encode(), pid),
        )
    assert c.app.get_profile(pid).name == "Anna"
    renamed = history(c, pid)[-1]
    assert (renamed["type"], renamed["actor"], renamed["reason"], renamed["request_id"]) == (
        "Renamed",
        "unknown",
        None,
        None,
    )
