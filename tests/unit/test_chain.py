"""The per-aggregate hash chain (domain/chain.py), on in-memory persistence."""

from __future__ import annotations

import itertools
import json
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import _topic_cache as topic_cache
from eventsourcing.utils import get_topic

from domain.chain import GENESIS, digest_of, event_digest
from domain.profile import RacerProfile
from domain.roster import Roster, roster_id
from domain.service import Cause, ProfilesService

ACC = "acc-chain"


@pytest.fixture
def app() -> ProfilesService:
    return ProfilesService()


def a_history(app: ProfilesService) -> tuple[UUID, UUID]:
    """Two profiles with a few changes each; returns (first profile, second profile)."""
    cause = Cause("alice", "setting up", "req-1")
    first = app.create_profile(ACC, "Ann", [{"name": "Kart", "race_number": "7"}], cause).profile_id
    second = app.create_profile(ACC, "Bob", [], Cause("bob")).profile_id
    app.rename(ACC, first, "Anna", Cause("alice", "typo"))
    vehicle = app.add_vehicle(ACC, first, {"name": "Buggy"}, Cause("alice")).vehicle_id
    assert vehicle is not None
    app.change_vehicle(ACC, first, vehicle, {"vehicle_class": "Open"}, Cause("alice"))
    app.set_default(ACC, second, Cause("bob", "mine now"))
    app.archive(ACC, first, Cause("alice", "retired"))
    app.restore(ACC, first, Cause("alice"))
    app.remove_vehicle(ACC, first, vehicle, Cause("alice"))
    return first, second


def stored_of(app: ProfilesService, aggregate_id: UUID) -> list[StoredEvent]:
    return list(app.recorder.select_events(aggregate_id))


def decoded_of(app: ProfilesService, aggregate_id: UUID) -> list[Any]:
    return [app.mapper.to_domain_event(s) for s in stored_of(app, aggregate_id)]


def with_state(stored: StoredEvent, **changes: Any) -> StoredEvent:
    state = json.loads(stored.state)
    state.update(changes)
    return StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode()
    )


# --- digest ----------------------------------------------------------------------


def test_every_stored_event_decodes_to_a_digest_equal_to_its_recorded_hash(app: ProfilesService) -> None:
    first, second = a_history(app)
    for aggregate_id in (first, second, roster_id(ACC)):
        events = decoded_of(app, aggregate_id)
        assert events
        for event in events:
            assert isinstance(event.event_hash, str) and len(event.event_hash) == 64
            assert digest_of(event) == event.event_hash, (type(event).__name__, event.originator_version)


def test_the_digest_survives_encode_decode_round_trips(app: ProfilesService) -> None:
    first, _ = a_history(app)
    for event in app.events.get(first):
        digest = digest_of(event)
        again = app.mapper.to_domain_event(app.mapper.to_stored_event(event))
        assert digest_of(again) == digest == event.event_hash
        # and once more, through a second encoding of the decoded event
        third = app.mapper.to_domain_event(app.mapper.to_stored_event(again))
        assert digest_of(third) == digest


def test_the_digest_of_a_pending_event_equals_the_digest_after_storing_it() -> None:
    app = ProfilesService()
    profile = RacerProfile.start(uuid4(), ACC, "Ann", [], "alice", "why", {"team": "red"}, "rq")
    profile.rename("Anna", "alice")
    pending = list(profile.pending_events)
    hashes = [e.event_hash for e in pending]
    assert [digest_of(e) for e in pending] == hashes
    app.save(profile)
    assert [e.event_hash for e in decoded_of(app, profile.id)] == hashes
    assert [digest_of(e) for e in decoded_of(app, profile.id)] == hashes


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "Eve"},
        {"actor": "mallory"},
        {"reason": "forged"},
        {"request_id": "req-forged"},
        {"prev_hash": "0" * 64},
        {"details": {"team": "blue"}},
        {"vehicles": []},
        {"account_id": "someone-else"},
        {"timestamp": {"_type_": "datetime_iso", "_data_": "2001-01-01T00:00:00+00:00"}},
        {"extra": "field"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_an_altered_field_changes_the_digest(app: ProfilesService, changes: dict[str, Any]) -> None:
    first, _ = a_history(app)
    created = stored_of(app, first)[0]
    original = app.mapper.to_domain_event(created)
    altered = app.mapper.to_domain_event(with_state(created, **changes))
    assert altered.event_hash == original.event_hash  # the recorded hash is carried along
    assert digest_of(altered) != original.event_hash


def test_the_position_topic_and_aggregate_are_part_of_the_digest(app: ProfilesService) -> None:
    first, second = a_history(app)
    renamed = stored_of(app, first)[1]
    event = app.mapper.to_domain_event(renamed)
    moved = [
        StoredEvent(renamed.originator_id, renamed.originator_version + 1, renamed.topic, renamed.state),
        StoredEvent(second, renamed.originator_version, renamed.topic, renamed.state),
    ]
    for stored in moved:
        assert digest_of(app.mapper.to_domain_event(stored)) != event.event_hash
    state = dict(vars(event))
    assert event_digest(get_topic(RacerProfile.Restored), state) != event.event_hash
    assert event_digest(get_topic(type(event)), state) == event.event_hash


def test_the_recorded_hash_itself_is_not_part_of_the_digest(app: ProfilesService) -> None:
    first, _ = a_history(app)
    created = stored_of(app, first)[0]
    event = app.mapper.to_domain_event(with_state(created, event_hash="f" * 64))
    assert digest_of(event) == app.mapper.to_domain_event(created).event_hash


def test_the_digest_does_not_depend_on_key_order() -> None:
    state = {"b": 1, "a": {"y": 2, "x": [1, 2]}, "originator_id": uuid4()}
    shuffled = dict(reversed(list(state.items())))
    assert event_digest("t:T", state) == event_digest("t:T", shuffled)
    assert event_digest("t:T", state) != event_digest("t:U", state)


def test_values_that_cannot_be_hashed_canonically_are_refused() -> None:
    with pytest.raises(TypeError):
        event_digest("t:T", {"value": object()})


# --- links -------------------------------------------------------------------------


def test_each_event_links_to_the_hash_of_the_one_before(app: ProfilesService) -> None:
    first, second = a_history(app)
    for aggregate_id in (first, second, roster_id(ACC)):
        events = decoded_of(app, aggregate_id)
        assert events[0].prev_hash == GENESIS
        for before, after in itertools.pairwise(events):
            assert after.prev_hash == before.event_hash
        assert len({e.event_hash for e in events}) == len(events)


def test_a_reloaded_aggregate_continues_its_chain(app: ProfilesService) -> None:
    first, _ = a_history(app)
    last = decoded_of(app, first)[-1]
    profile = app.get_profile(first)
    assert profile.chain_head == last.event_hash
    app.rename(ACC, first, "Annabel", Cause("alice"))
    newest = decoded_of(app, first)[-1]
    assert newest.originator_version == last.originator_version + 1
    assert newest.prev_hash == last.event_hash
    assert digest_of(newest) == newest.event_hash


def test_equal_commands_on_two_aggregates_give_different_hashes(app: ProfilesService) -> None:
    one = app.create_profile(ACC, "Same", [], Cause("alice")).profile_id
    two = app.create_profile(ACC, "Same", [], Cause("alice")).profile_id
    assert decoded_of(app, one)[0].event_hash != decoded_of(app, two)[0].event_hash


def test_a_chained_aggregate_needs_an_explicit_id() -> None:
    with pytest.raises(TypeError):
        Roster._create(Roster.Created, account_id="acc")


# --- schema changes: the hash covers the stored form --------------------------------


class CreatedV2(RacerProfile.Created):
    class_version = 2
    nickname: str = ""

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["nickname"] = "(none)"


def stored_digest(app: ProfilesService, stored: StoredEvent) -> str:
    return event_digest(stored.topic, app.mapper.stored_state(stored))  # type: ignore[attr-defined]


def test_an_upcast_changes_the_decoded_event_but_not_the_stored_form_the_hash_covers(
    app: ProfilesService, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = a_history(app)
    created = stored_of(app, first)[0]
    monkeypatch.setitem(topic_cache, created.topic, CreatedV2)
    upcast: Any = app.mapper.to_domain_event(created)
    assert type(upcast) is CreatedV2 and upcast.nickname == "(none)"
    assert digest_of(upcast) != upcast.event_hash  # what verify used to hash
    assert stored_digest(app, created) == upcast.event_hash


def test_an_event_of_a_later_class_version_hashes_its_stored_class_version(app: ProfilesService) -> None:
    profile = RacerProfile._create(
        CreatedV2,
        id=uuid4(),
        account_id=ACC,
        name="Ann",
        vehicles=[],
        details={},
        actor="alice",
        reason=None,
        request_id=None,
        nickname="Annie",
    )
    app.save(profile)
    stored = stored_of(app, profile.id)[0]
    assert json.loads(stored.state)["class_version"] == 2
    assert stored_digest(app, stored) == json.loads(stored.state)["event_hash"]
    # Rewinding the stored class version (so that an upcast would run again) is an edit.
    assert stored_digest(app, with_state(stored, class_version=1)) != json.loads(stored.state)["event_hash"]
