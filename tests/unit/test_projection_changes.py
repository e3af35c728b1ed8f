"""changes_for: each event maps to the row changes the racer_profiles view executes,
then to its entry in the audit index (row_changes and history_entry)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import Tracking

from domain.profile import RacerProfile
from domain.roster import Roster
from projections.history import BECAME_DEFAULT, JOINED, LEFT, STOPPED_DEFAULT, history_entry
from projections.profiles import RacerProfilesProjection, changes_for, row_changes
from projections.rows import (
    AddVehicle,
    ChangeDefault,
    ChangeVehicle,
    InsertProfile,
    ListEvent,
    RemoveVehicle,
    UpdateProfile,
)

KART = {"id": "v1", "name": "Kart", "vehicle_class": None, "race_number": "7"}
DETAILS = {"team": "Red", "licence": 3}


def profile_events() -> tuple[UUID, list[Any]]:
    pid = uuid4()
    profile = RacerProfile.start(pid, "acc-1", "Ann", [KART], "alice", details=DETAILS)
    profile.rename("Bea", "alice")
    profile.add_vehicle({**KART, "id": "v2"}, "alice")
    profile.change_vehicle("v2", {"race_number": "8"}, "alice")
    profile.remove_vehicle("v1", "alice")
    profile.archive("alice")
    profile.restore("alice")
    return pid, list(profile.collect_events())


def test_created_inserts_the_profile_row() -> None:
    pid, events = profile_events()
    created = events[0]

    assert row_changes(created) == [
        InsertProfile(
            profile_id=pid,
            account_id="acc-1",
            name="Ann",
            vehicles=[KART],
            details=DETAILS,
            version=1,
            created_at=created.timestamp,
        )
    ]


def test_inserted_vehicles_and_details_are_copies_of_the_events() -> None:
    _, events = profile_events()
    [insert] = row_changes(events[0])
    insert.vehicles[0]["name"] = "changed"
    insert.details["team"] = "changed"
    assert (events[0].vehicles[0]["name"], events[0].details["team"]) == ("Kart", "Red")


def test_each_profile_change_maps_to_its_row_change_with_version_and_time() -> None:
    pid, events = profile_events()
    renamed, added, changed, removed, archived, restored = events[1:]

    def at(e: Any) -> tuple[UUID, int, Any]:
        return pid, e.originator_version, e.timestamp

    assert row_changes(renamed) == [UpdateProfile(*at(renamed), {"name": "Bea"})]
    assert row_changes(added) == [AddVehicle(*at(added), {**KART, "id": "v2"})]
    assert row_changes(changed) == [ChangeVehicle(*at(changed), "v2", {"race_number": "8"})]
    assert row_changes(removed) == [RemoveVehicle(*at(removed), "v1")]
    assert row_changes(archived) == [UpdateProfile(*at(archived), {"archived": True})]
    assert row_changes(restored) == [UpdateProfile(*at(restored), {"archived": False})]
    assert [e.originator_version for e in events] == list(range(1, 8))


P1, P2 = uuid4(), uuid4()


def roster_events() -> list[Any]:
    roster = Roster.open("acc-1", "alice")
    roster.join(P1, "2024-01-01T00:00:01+00:00", "alice")
    roster.join(P2, "2024-01-01T00:00:02+00:00", "alice")
    roster.set_default(P2, "alice")
    roster.leave(P2, None, "alice")
    roster.leave(P1, None, "alice")
    return list(roster.collect_events())


def test_default_changes_map_to_change_default_with_uuids_or_none() -> None:
    changes = [row_changes(e) for e in roster_events() if type(e) is Roster.DefaultChanged]
    assert changes == [
        [ChangeDefault(previous=None, new=P1)],
        [ChangeDefault(previous=P1, new=P2)],
        [ChangeDefault(previous=P2, new=P1)],
        [ChangeDefault(previous=P1, new=None)],
    ]


@pytest.mark.parametrize("event_type", [Roster.Created, Roster.MemberAdded, Roster.MemberRemoved])
def test_roster_membership_events_change_no_row(event_type: type) -> None:
    matching = [e for e in roster_events() if type(e) is event_type]
    assert matching
    assert all(row_changes(e) == [] for e in matching)


def test_unknown_objects_change_no_row_and_are_not_listed() -> None:
    assert changes_for(object()) == []


class RecordingView:
    def __init__(self) -> None:
        self.applied: list[tuple[list, Tracking]] = []

    def apply(self, changes: list, tracking: Tracking) -> None:
        self.applied.append((changes, tracking))


def test_projection_applies_the_events_changes_with_its_tracking() -> None:
    view = RecordingView()
    projection = RacerProfilesProjection(view)  # type: ignore[arg-type]
    _, events = profile_events()
    membership = roster_events()[1]
    tracking = [Tracking("RacerProfiles", 7), Tracking("RacerProfiles", 8)]

    projection.process_event(events[1], tracking[0])
    projection.process_event(membership, tracking[1])

    assert view.applied == [
        (changes_for(events[1]), tracking[0]),
        (history_entry(membership), tracking[1]),
    ]


def test_every_profile_event_is_listed_under_its_profile_after_its_row_changes() -> None:
    pid, events = profile_events()
    for event in events:
        *rows, entry = changes_for(event)
        assert rows == row_changes(event)
        account = "acc-1" if event is events[0] else None
        assert entry == ListEvent(event.timestamp, account, account_of=pid, profiles=((pid, None),))


def test_roster_events_are_listed_in_the_history_of_the_profiles_they_concern() -> None:
    events = roster_events()
    listed = [(type(e).__name__, history_entry(e)) for e in events]
    assert [
        (name, [(e.account_id, e.account_of, e.profiles, e.default_change) for e in entries])
        for name, entries in listed
    ] == [
        ("Created", [("acc-1", None, (), False)]),
        ("MemberAdded", [(None, None, ((P1, JOINED),), False)]),
        ("DefaultChanged", [(None, None, ((P1, BECAME_DEFAULT),), True)]),
        ("MemberAdded", [(None, None, ((P2, JOINED),), False)]),
        ("DefaultChanged", [(None, None, ((P2, BECAME_DEFAULT), (P1, STOPPED_DEFAULT)), True)]),
        ("MemberRemoved", [(None, None, ((P2, LEFT),), False)]),
        ("DefaultChanged", [(None, None, ((P1, BECAME_DEFAULT), (P2, STOPPED_DEFAULT)), True)]),
        ("MemberRemoved", [(None, None, ((P1, LEFT),), False)]),
        ("DefaultChanged", [(None, None, ((P1, STOPPED_DEFAULT),), True)]),
    ]
    # Listed under the roster's account, which its first event names.
    assert {entry.roster for _, entries in listed for entry in entries} == {events[0].originator_id}
    assert [entries[0].recorded_at for _, entries in listed] == [e.timestamp for e in events]
