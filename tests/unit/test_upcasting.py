"""Events stored before actor/reason/request id/hashes/details existed still load
(domain/upcasting.py), on in-memory persistence."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from domain.profile import RacerProfile
from domain.roster import Roster, roster_id
from domain.service import Cause, ProfilesService
from domain.upcasting import DEFAULTS, UpcastingMapper

ACC = "acc-old"
NEW_FIELDS = ("actor", "reason", "request_id", "prev_hash", "event_hash", "details")


@pytest.fixture
def app() -> ProfilesService:
    return ProfilesService()


def without(stored: StoredEvent, *fields: str, originator_id: UUID | None = None) -> StoredEvent:
    """The stored event as an older version of the service would have written it."""
    state = json.loads(stored.state)
    for name in fields:
        state.pop(name, None)
    return StoredEvent(
        originator_id or stored.originator_id,
        stored.originator_version,
        stored.topic,
        json.dumps(state).encode(),
    )


def stored_of(app: ProfilesService, aggregate_id: UUID) -> list[StoredEvent]:
    return list(app.recorder.select_events(aggregate_id))


def old_profile_history(app: ProfilesService) -> list[StoredEvent]:
    """Created (with a vehicle and details), Renamed, VehicleAdded, Archived, Restored
    of a profile in a scratch service, with every new field stripped."""
    scratch = ProfilesService()
    pid = scratch.create_profile(
        ACC, "Ann", [{"name": "Kart"}], Cause("alice", "signup", "rq-1"), details={"team": "red"}
    ).profile_id
    scratch.rename(ACC, pid, "Anna", Cause("alice", "typo", "rq-2"))
    scratch.add_vehicle(ACC, pid, {"name": "Buggy"}, Cause("alice"))
    scratch.archive(ACC, pid, Cause("alice"))
    scratch.restore(ACC, pid, Cause("alice"))
    return [without(s, *NEW_FIELDS) for s in stored_of(scratch, pid)]


def test_the_service_uses_the_upcasting_mapper(app: ProfilesService) -> None:
    assert isinstance(app.mapper, UpcastingMapper)


def test_an_old_created_event_decodes_with_neutral_defaults(app: ProfilesService) -> None:
    created = old_profile_history(app)[0]
    state = json.loads(created.state)
    assert not set(NEW_FIELDS) & set(state)  # really the old shape

    event = app.mapper.to_domain_event(created)

    assert isinstance(event, RacerProfile.Created)
    assert event.actor == "unknown"
    assert event.reason is None
    assert event.request_id is None
    assert event.prev_hash is None
    assert event.event_hash is None
    assert event.details == {}
    assert event.name == "Ann"
    assert [v["name"] for v in event.vehicles] == ["Kart"]


@pytest.mark.parametrize("missing", NEW_FIELDS)
def test_each_missing_field_alone_gets_its_default_and_the_others_are_kept(
    app: ProfilesService, missing: str
) -> None:
    pid = app.create_profile(
        ACC, "Ann", [], Cause("alice", "signup", "rq-1"), details={"team": "red"}
    ).profile_id
    stored = stored_of(app, pid)[0]
    full = app.mapper.to_domain_event(stored)

    event = app.mapper.to_domain_event(without(stored, missing))

    for name in NEW_FIELDS:
        expected = DEFAULTS[name] if name == missing else getattr(full, name)
        assert getattr(event, name) == expected, name


def test_old_events_of_every_type_decode(app: ProfilesService) -> None:
    for stored in old_profile_history(app):
        event = app.mapper.to_domain_event(stored)
        assert event.actor == "unknown"
        assert event.reason is None and event.request_id is None
        assert event.prev_hash is None and event.event_hash is None


def test_only_fields_the_event_class_declares_are_added(app: ProfilesService) -> None:
    app.create_profile(ACC, "Ann", [], Cause("alice"))
    roster_created, member_added, _ = stored_of(app, roster_id(ACC))

    created = app.mapper.to_domain_event(without(roster_created, *NEW_FIELDS))
    joined = app.mapper.to_domain_event(without(member_added, *NEW_FIELDS))

    assert isinstance(created, Roster.Created)
    assert created.actor == "unknown" and created.event_hash is None and created.prev_hash is None
    assert "details" not in vars(created)
    assert isinstance(joined, Roster.MemberAdded)
    assert joined.actor == "unknown"
    assert "details" not in vars(joined)


def test_default_details_are_not_shared_between_events(app: ProfilesService) -> None:
    old = old_profile_history(app)[0]
    first = app.mapper.to_domain_event(old)
    first.details["mutated"] = True
    second = app.mapper.to_domain_event(old)
    assert second.details == {}
    assert DEFAULTS["details"] == {}


def test_an_aggregate_stored_by_an_older_version_loads_and_accepts_commands(app: ProfilesService) -> None:
    pid = uuid4()
    history = [without(s, *NEW_FIELDS, originator_id=pid) for s in old_profile_history(app)]
    app.recorder.insert_events(history)

    profile = app.get_profile(pid)
    assert (profile.name, profile.archived, profile.version) == ("Anna", False, 5)
    assert [v["name"] for v in profile.vehicles] == ["Kart", "Buggy"]
    assert profile.details == {}
    assert profile.account_id == ACC
    assert app.get_profile(pid, version=1).name == "Ann"

    app.rename(ACC, pid, "Annie", Cause("carol", "new era", "rq-9"))
    newest = app.mapper.to_domain_event(stored_of(app, pid)[-1])
    assert (newest.actor, newest.reason, newest.request_id) == ("carol", "new era", "rq-9")
    assert app.get_profile(pid).name == "Annie"


def test_present_fields_win_over_defaults(app: ProfilesService) -> None:
    pid = app.create_profile(ACC, "Ann", [], Cause("alice", None, None)).profile_id
    stored = stored_of(app, pid)[0]
    state: dict[str, Any] = json.loads(stored.state)
    assert state["actor"] == "alice" and state["reason"] is None
    event = app.mapper.to_domain_event(stored)
    assert event.actor == "alice"
    assert event.prev_hash == "" and isinstance(event.event_hash, str)


def test_events_stored_before_the_source_existed_decode_without_one(app: ProfilesService) -> None:
    pid = app.create_profile(
        ACC, "Ann", [], Cause("import", "legacy import: profile 3, vehicles []"), source={"legacy_profile": 3}
    ).profile_id
    app.add_vehicle(ACC, pid, {"name": "Kart"}, Cause("import"), source={"legacy_vehicle": 7})
    created, added = stored_of(app, pid)
    assert json.loads(created.state)["source"] == {"legacy_profile": 3}

    old_created = app.mapper.to_domain_event(without(created, "source"))
    old_added = app.mapper.to_domain_event(without(added, "source"))

    assert old_created.source is None and old_added.source is None
    assert old_created.reason == "legacy import: profile 3, vehicles []"
    assert app.mapper.to_domain_event(added).source == {"legacy_vehicle": 7}
