"""Given-when-then tests of the RacerProfile aggregate, without persistence."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.errors import (
    InvalidValue,
    ProfileArchived,
    ProfileNotArchived,
    VehicleNotFound,
)
from domain.profile import RacerProfile
from domain.values import VEHICLES_MAX, vehicle_record

ACCOUNT = "acc-1"


def kart(vehicle_id: str = "v1", **fields: object) -> dict:
    return vehicle_record(vehicle_id, {"name": "Kart", **fields})


def given_profile(*vehicles: dict, name: str = "Ann") -> RacerProfile:
    """A started profile whose Created event has already been collected."""
    profile = RacerProfile.start(uuid4(), ACCOUNT, name, list(vehicles), "alice", "signup")
    profile.collect_events()
    return profile


def given_archived(*vehicles: dict) -> RacerProfile:
    profile = given_profile(*vehicles)
    profile.archive("alice")
    profile.collect_events()
    return profile


def replay(events: list) -> RacerProfile:
    aggregate = None
    for e in events:
        aggregate = e.mutate(aggregate)
    assert aggregate is not None
    return aggregate


# --- start ------------------------------------------------------------------


def test_start_records_created_with_trimmed_name_vehicles_and_cause() -> None:
    pid = uuid4()
    profile = RacerProfile.start(pid, ACCOUNT, "  Ann  ", [kart()], "alice", "signup")

    [created] = profile.collect_events()

    assert type(created) is RacerProfile.Created
    assert created.originator_id == pid
    assert created.originator_version == 1
    assert (created.account_id, created.name, created.actor, created.reason) == (
        ACCOUNT,
        "Ann",
        "alice",
        "signup",
    )
    assert created.vehicles == [kart()]
    assert (profile.name, profile.archived, profile.vehicles) == ("Ann", False, [kart()])
    assert profile.created_at == created.timestamp


def test_start_reason_defaults_to_none() -> None:
    profile = RacerProfile.start(uuid4(), ACCOUNT, "Ann", [], "alice")
    [created] = profile.collect_events()
    assert created.reason is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "must not be blank"),
        ("   \t ", "must not be blank"),
        ("x" * 81, "must be at most 80 characters after trimming"),
        (42, "must be a string"),
        (None, "must be a string"),
        ("An\x00n", "must not contain control or unassigned characters"),
        ("An\u200bn", "must not contain control or unassigned characters"),
    ],
)
def test_start_rejects_an_invalid_name(name: object, reason: str) -> None:
    with pytest.raises(InvalidValue) as info:
        RacerProfile.start(uuid4(), ACCOUNT, name, [], "alice")  # type: ignore[arg-type]
    assert (info.value.field, info.value.reason) == ("name", reason)


def test_name_of_80_characters_after_trimming_is_accepted() -> None:
    profile = RacerProfile.start(uuid4(), ACCOUNT, "  " + "x" * 80 + "  ", [], "alice")
    assert profile.name == "x" * 80


def test_name_of_one_character_is_accepted() -> None:
    assert RacerProfile.start(uuid4(), ACCOUNT, " a ", [], "alice").name == "a"


def test_start_rejects_more_than_the_maximum_number_of_vehicles() -> None:
    vehicles = [kart(f"v{i}") for i in range(VEHICLES_MAX + 1)]
    with pytest.raises(InvalidValue) as info:
        RacerProfile.start(uuid4(), ACCOUNT, "Ann", vehicles, "alice")
    assert info.value.field == "vehicles"


def test_start_accepts_the_maximum_number_of_vehicles() -> None:
    vehicles = [kart(f"v{i}") for i in range(VEHICLES_MAX)]
    assert len(RacerProfile.start(uuid4(), ACCOUNT, "Ann", vehicles, "a").vehicles) == VEHICLES_MAX


# --- vehicle values -----------------------------------------------------------


def test_vehicle_record_keeps_trimmed_values_and_defaults_optionals_to_none() -> None:
    assert vehicle_record("v9", {"name": " Kart ", "vehicle_class": " GT3 ", "race_number": "A12"}) == {
        "id": "v9",
        "name": "Kart",
        "vehicle_class": "GT3",
        "race_number": "A12",
    }
    assert vehicle_record("v9", {"name": "Kart"}) == {
        "id": "v9",
        "name": "Kart",
        "vehicle_class": None,
        "race_number": None,
    }


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "vehicles[0].name"),
        ({"name": "  "}, "vehicles[0].name"),
        ({"name": "x" * 81}, "vehicles[0].name"),
        ({"name": "Kart", "vehicle_class": "c" * 41}, "vehicles[0].vehicle_class"),
        ({"name": "Kart", "vehicle_class": ""}, "vehicles[0].vehicle_class"),
        ({"name": "Kart", "race_number": "1234567"}, "vehicles[0].race_number"),
        ({"name": "Kart", "race_number": "12-3"}, "vehicles[0].race_number"),
        ({"name": "Kart", "race_number": 12}, "vehicles[0].race_number"),
    ],
)
def test_vehicle_record_names_the_invalid_field(fields: dict, field: str) -> None:
    with pytest.raises(InvalidValue) as info:
        vehicle_record("v1", fields, prefix="vehicles[0].")
    assert info.value.field == field


def test_vehicle_class_of_40_and_race_number_of_6_characters_are_accepted() -> None:
    record = vehicle_record("v1", {"name": "K", "vehicle_class": "c" * 40, "race_number": "AB1234"})
    assert (record["vehicle_class"], record["race_number"]) == ("c" * 40, "AB1234")


# --- rename -------------------------------------------------------------------


def test_rename_records_renamed_with_trimmed_name_and_cause() -> None:
    profile = given_profile()

    profile.rename("  Bea ", "bob", "typo")

    [renamed] = profile.collect_events()
    assert type(renamed) is RacerProfile.Renamed
    assert (renamed.name, renamed.actor, renamed.reason) == ("Bea", "bob", "typo")
    assert renamed.originator_version == 2
    assert profile.name == "Bea"


def test_rename_to_the_same_name_after_trimming_records_nothing() -> None:
    profile = given_profile(name="Ann")
    profile.rename("  Ann ", "bob")
    assert profile.collect_events() == []
    assert profile.version == 1


def test_rename_to_an_invalid_name_raises_and_records_nothing() -> None:
    profile = given_profile()
    with pytest.raises(InvalidValue) as info:
        profile.rename(" ", "bob")
    assert info.value.field == "name"
    assert profile.collect_events() == []
    assert profile.name == "Ann"


def test_rename_of_an_archived_profile_raises_profile_archived() -> None:
    profile = given_archived()
    with pytest.raises(ProfileArchived):
        profile.rename("Bea", "bob")
    assert profile.collect_events() == []


# --- vehicles -----------------------------------------------------------------


def test_add_vehicle_records_vehicle_added() -> None:
    profile = given_profile()

    profile.add_vehicle(kart("v2", race_number="7"), "bob", "new car")

    [added] = profile.collect_events()
    assert type(added) is RacerProfile.VehicleAdded
    assert (added.vehicle, added.actor, added.reason) == (kart("v2", race_number="7"), "bob", "new car")
    assert profile.vehicles == [kart("v2", race_number="7")]


def test_add_vehicle_to_an_archived_profile_raises_profile_archived() -> None:
    profile = given_archived()
    with pytest.raises(ProfileArchived):
        profile.add_vehicle(kart(), "bob")
    assert profile.collect_events() == []


def test_add_vehicle_beyond_the_maximum_raises_invalid_value() -> None:
    profile = given_profile(*[kart(f"v{i}") for i in range(VEHICLES_MAX)])
    with pytest.raises(InvalidValue) as info:
        profile.add_vehicle(kart("one-too-many"), "bob")
    assert info.value.field == "vehicles"
    assert profile.collect_events() == []


def test_change_vehicle_records_only_the_fields_that_change() -> None:
    profile = given_profile(kart("v1", vehicle_class="GT3"))

    profile.change_vehicle("v1", {"name": "Kart", "vehicle_class": None, "race_number": "9"}, "bob", "why")

    [changed] = profile.collect_events()
    assert type(changed) is RacerProfile.VehicleChanged
    assert (changed.vehicle_id, changed.changes, changed.actor, changed.reason) == (
        "v1",
        {"vehicle_class": None, "race_number": "9"},
        "bob",
        "why",
    )
    assert profile.vehicle("v1") == kart("v1", race_number="9")


def test_change_vehicle_to_its_current_values_records_nothing() -> None:
    profile = given_profile(kart("v1"))
    profile.change_vehicle("v1", {"name": " Kart "}, "bob")
    assert profile.collect_events() == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"colour": "red"}, "colour"), ({}, "body"), ({"race_number": "#1"}, "race_number")],
)
def test_change_vehicle_with_invalid_fields_raises_invalid_value(fields: dict, field: str) -> None:
    profile = given_profile(kart("v1"))
    with pytest.raises(InvalidValue) as info:
        profile.change_vehicle("v1", fields, "bob")
    assert info.value.field == field


def test_change_of_an_unknown_vehicle_raises_vehicle_not_found() -> None:
    with pytest.raises(VehicleNotFound):
        given_profile(kart("v1")).change_vehicle("v2", {"name": "X"}, "bob")


def test_change_vehicle_of_an_archived_profile_raises_profile_archived() -> None:
    with pytest.raises(ProfileArchived):
        given_archived(kart("v1")).change_vehicle("v1", {"name": "X"}, "bob")


def test_remove_vehicle_records_vehicle_removed() -> None:
    profile = given_profile(kart("v1"), kart("v2"))

    profile.remove_vehicle("v1", "bob", "sold")

    [removed] = profile.collect_events()
    assert type(removed) is RacerProfile.VehicleRemoved
    assert (removed.vehicle_id, removed.actor, removed.reason) == ("v1", "bob", "sold")
    assert profile.vehicles == [kart("v2")]


def test_remove_of_an_unknown_vehicle_raises_vehicle_not_found() -> None:
    profile = given_profile(kart("v1"))
    with pytest.raises(VehicleNotFound):
        profile.remove_vehicle("v2", "bob")
    assert profile.collect_events() == []


def test_remove_vehicle_of_an_archived_profile_raises_profile_archived() -> None:
    with pytest.raises(ProfileArchived):
        given_archived(kart("v1")).remove_vehicle("v1", "bob")


# --- archive / restore ----------------------------------------------------------


def test_archive_records_archived_with_cause() -> None:
    profile = given_profile()

    profile.archive("bob", "left the team")

    [archived] = profile.collect_events()
    assert type(archived) is RacerProfile.Archived
    assert (archived.actor, archived.reason) == ("bob", "left the team")
    assert profile.archived is True


def test_archive_of_an_archived_profile_raises_profile_archived() -> None:
    profile = given_archived()
    with pytest.raises(ProfileArchived):
        profile.archive("bob")
    assert profile.collect_events() == []


def test_restore_records_restored_with_cause() -> None:
    profile = given_archived()

    profile.restore("bob", "came back")

    [restored] = profile.collect_events()
    assert type(restored) is RacerProfile.Restored
    assert (restored.actor, restored.reason) == ("bob", "came back")
    assert profile.archived is False


def test_restore_of_an_active_profile_raises_profile_not_archived() -> None:
    profile = given_profile()
    with pytest.raises(ProfileNotArchived):
        profile.restore("bob")
    assert profile.collect_events() == []


def test_restored_profile_can_be_changed_again() -> None:
    profile = given_archived()
    profile.restore("bob")
    profile.rename("Bea", "bob")
    assert profile.name == "Bea"


# --- replay -----------------------------------------------------------------------


def test_profile_replayed_from_its_events_equals_the_live_profile() -> None:
    profile = RacerProfile.start(uuid4(), ACCOUNT, "Ann", [kart("v1")], "alice")
    events = list(profile.collect_events())
    profile.rename("Bea", "bob")
    profile.add_vehicle(kart("v2"), "bob")
    profile.change_vehicle("v2", {"race_number": "77"}, "bob")
    profile.remove_vehicle("v1", "bob")
    profile.archive("bob")
    profile.restore("bob")
    events += profile.collect_events()

    replayed = replay(events)

    assert replayed == profile
    assert (replayed.name, replayed.vehicles, replayed.archived, replayed.version) == (
        "Bea",
        [kart("v2", race_number="77")],
        False,
        7,
    )


def test_replay_of_a_prefix_gives_the_state_at_that_version() -> None:
    profile = RacerProfile.start(uuid4(), ACCOUNT, "Ann", [], "alice")
    profile.rename("Bea", "bob")
    profile.archive("bob")
    events = profile.collect_events()

    at_2 = replay(events[:2])

    assert (at_2.name, at_2.archived, at_2.version) == ("Bea", False, 2)
