"""Given-when-then tests of the Roster aggregate: the one-default rule."""

from __future__ import annotations

import copy
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

import pytest

from domain.errors import InvalidSuccessor, NotAnActiveMember
from domain.roster import ROSTER_NAMESPACE, Roster, roster_id

ACCOUNT = "acc-1"
P1, P2, P3 = uuid4(), uuid4(), uuid4()
T1, T2, T3 = (f"2024-05-01T10:00:0{n}+00:00" for n in (1, 2, 3))


def given_roster(*members: tuple[UUID, str]) -> Roster:
    """A roster that the given (profile, created_at) joined in order; events collected."""
    roster = Roster.open(ACCOUNT, "alice")
    for profile_id, created_at in members:
        roster.join(profile_id, created_at, "alice")
    roster.collect_events()
    return roster


def default_changed(events: list) -> list[tuple]:
    return [(e.previous, e.new, e.actor, e.reason) for e in events if type(e) is Roster.DefaultChanged]


def assert_invariant(roster: Roster) -> None:
    if roster.members:
        assert roster.default in roster.members
    else:
        assert roster.default is None


# --- open ---------------------------------------------------------------------


def test_open_uses_the_account_derived_uuid5_id_and_records_the_cause() -> None:
    roster = Roster.open(ACCOUNT, "alice", "signup", "req-1")

    [created] = roster.collect_events()

    assert type(created) is Roster.Created
    assert (created.account_id, created.actor, created.reason, created.request_id) == (
        ACCOUNT,
        "alice",
        "signup",
        "req-1",
    )
    assert roster.id == roster_id(ACCOUNT) == uuid5(ROSTER_NAMESPACE, ACCOUNT)
    assert roster_id("acc-2") != roster_id(ACCOUNT)
    assert (roster.members, roster.default) == ({}, None)


def test_roster_namespace_is_stable() -> None:
    # Stored roster ids derive from it: changing it would orphan every roster.
    assert uuid5(NAMESPACE_URL, "https://racer-profiles/roster") == ROSTER_NAMESPACE


# --- join ----------------------------------------------------------------------


def test_first_member_to_join_becomes_the_default() -> None:
    roster = given_roster()

    roster.join(P1, T1, "alice", "signup")

    added, changed = roster.collect_events()
    assert type(added) is Roster.MemberAdded
    assert (added.profile_id, added.created_at, added.actor, added.reason) == (
        str(P1),
        T1,
        "alice",
        "signup",
    )
    assert type(changed) is Roster.DefaultChanged
    assert (changed.previous, changed.new, changed.actor, changed.reason) == (
        None,
        str(P1),
        "alice",
        "signup",
    )
    assert (roster.members, roster.default) == ({str(P1): T1}, str(P1))


def test_later_member_joins_without_changing_the_default() -> None:
    roster = given_roster((P1, T1))

    roster.join(P2, T2, "bob")

    [added] = roster.collect_events()
    assert type(added) is Roster.MemberAdded
    assert roster.default == str(P1)
    assert set(roster.members) == {str(P1), str(P2)}


def test_joining_again_records_nothing() -> None:
    roster = given_roster((P1, T1))
    roster.join(P1, T2, "bob")
    assert roster.collect_events() == []
    assert roster.members == {str(P1): T1}


def test_member_joining_an_emptied_roster_becomes_the_default() -> None:
    roster = given_roster((P1, T1))
    roster.leave(P1, None, "alice")
    roster.collect_events()

    roster.join(P2, T2, "bob", "restored")

    assert default_changed(roster.collect_events()) == [(None, str(P2), "bob", "restored")]
    assert roster.default == str(P2)


# --- set_default -------------------------------------------------------------------


def test_set_default_records_previous_and_new_default() -> None:
    roster = given_roster((P1, T1), (P2, T2))

    roster.set_default(P2, "bob", "main car")

    events = roster.collect_events()
    assert [type(e) for e in events] == [Roster.DefaultChanged]
    assert default_changed(events) == [(str(P1), str(P2), "bob", "main car")]
    assert roster.default == str(P2)


def test_set_default_on_the_current_default_records_nothing() -> None:
    roster = given_roster((P1, T1), (P2, T2))
    roster.set_default(P1, "bob")
    assert roster.collect_events() == []


def test_set_default_on_a_non_member_raises_not_an_active_member() -> None:
    roster = given_roster((P1, T1))
    with pytest.raises(NotAnActiveMember):
        roster.set_default(P2, "bob")
    assert roster.collect_events() == []
    assert roster.default == str(P1)


def test_set_default_on_a_member_that_left_raises_not_an_active_member() -> None:
    roster = given_roster((P1, T1), (P2, T2))
    roster.leave(P2, None, "alice")
    with pytest.raises(NotAnActiveMember):
        roster.set_default(P2, "bob")


# --- leave -------------------------------------------------------------------------


def test_non_default_member_leaves_without_changing_the_default() -> None:
    roster = given_roster((P1, T1), (P2, T2))

    roster.leave(P2, None, "bob", "gone")

    [removed] = roster.collect_events()
    assert type(removed) is Roster.MemberRemoved
    assert (removed.profile_id, removed.actor, removed.reason) == (str(P2), "bob", "gone")
    assert (roster.members, roster.default) == ({str(P1): T1}, str(P1))


def test_leaving_default_hands_over_to_the_earliest_created_remaining_member() -> None:
    # P3 joined last but was created before P2.
    roster = given_roster((P1, T1), (P2, T3), (P3, T2))

    roster.leave(P1, None, "bob", "retired")

    events = roster.collect_events()
    assert [type(e) for e in events] == [Roster.MemberRemoved, Roster.DefaultChanged]
    assert default_changed(events) == [(str(P1), str(P3), "bob", "retired")]
    assert_invariant(roster)


def test_earliest_member_ties_on_creation_time_are_broken_by_profile_id() -> None:
    low, high = sorted([uuid4(), uuid4()], key=str)
    roster = given_roster((P1, T1), (high, T2), (low, T2))
    roster.leave(P1, None, "bob")
    assert roster.default == str(low)


def test_leaving_default_hands_over_to_the_named_successor() -> None:
    roster = given_roster((P1, T1), (P2, T2), (P3, T3))

    roster.leave(P1, P3, "bob", "handover")

    assert default_changed(roster.collect_events()) == [(str(P1), str(P3), "bob", "handover")]
    assert roster.default == str(P3)


def test_last_member_leaving_leaves_no_default() -> None:
    roster = given_roster((P1, T1))

    roster.leave(P1, None, "bob", "closing")

    events = roster.collect_events()
    assert [type(e) for e in events] == [Roster.MemberRemoved, Roster.DefaultChanged]
    assert default_changed(events) == [(str(P1), None, "bob", "closing")]
    assert (roster.members, roster.default) == ({}, None)


@pytest.mark.parametrize(
    ("leaving", "successor"),
    [(P1, P1), (P1, uuid4()), (P2, P2), (P2, uuid4())],
    ids=["default-names-itself", "default-names-stranger", "other-names-itself", "other-names-stranger"],
)
def test_successor_that_is_not_another_member_raises_invalid_successor(
    leaving: UUID, successor: UUID
) -> None:
    roster = given_roster((P1, T1), (P2, T2))
    before = (dict(roster.members), roster.default)

    with pytest.raises(InvalidSuccessor):
        roster.leave(leaving, successor, "bob")

    assert roster.collect_events() == []
    assert (roster.members, roster.default) == before


def test_successor_that_already_left_raises_invalid_successor() -> None:
    roster = given_roster((P1, T1), (P2, T2), (P3, T3))
    roster.leave(P2, None, "bob")
    with pytest.raises(InvalidSuccessor):
        roster.leave(P1, P2, "bob")
    assert roster.default == str(P1)


def test_non_default_leaving_with_a_valid_successor_keeps_the_default() -> None:
    roster = given_roster((P1, T1), (P2, T2), (P3, T3))
    roster.leave(P2, P3, "bob")
    assert [type(e) for e in roster.collect_events()] == [Roster.MemberRemoved]
    assert roster.default == str(P1)


def test_non_member_leaving_raises_not_an_active_member() -> None:
    roster = given_roster((P1, T1))
    with pytest.raises(NotAnActiveMember):
        roster.leave(P2, None, "bob")
    assert roster.collect_events() == []


# --- replay ------------------------------------------------------------------------


def test_roster_replayed_from_its_events_equals_the_live_roster() -> None:
    roster = Roster.open(ACCOUNT, "a")
    roster.join(P1, T1, "a")
    roster.join(P2, T2, "a")
    roster.join(P3, T3, "a")
    roster.set_default(P3, "a")
    roster.leave(P3, P2, "a")
    roster.leave(P1, None, "a")
    events = roster.collect_events()

    replayed = None
    for e in events:
        replayed = e.mutate(replayed)

    assert replayed == roster
    assert (replayed.members, replayed.default) == ({str(P2): T2}, str(P2))
    assert_invariant(replayed)


def test_a_deep_copy_is_independent_and_complete() -> None:
    """The aggregate cache hands commands deep copies (Roster.__deepcopy__ copies
    only the containers): a copy changed by a command leaves the cached roster
    as it was, and no other attribute may be mutable."""
    roster = Roster.open("acc", "me")
    first, second = uuid4(), uuid4()
    roster.join(first, "2026-01-01T00:00:00+00:00", "me")
    roster.collect_events()
    copied = copy.deepcopy(roster)
    assert vars(copied) == vars(roster) and copied is not roster
    copied.join(second, "2026-01-02T00:00:00+00:00", "me")
    copied.set_default(second, "me")
    assert list(roster.members) == [str(first)] and roster.default == str(first)
    assert roster.pending_events == [] and len(copied.pending_events) == 2
    assert roster.version == 3 and copied.version == 5
    containers = {"members", "_pending_events"}
    immutable = (str, int, UUID, datetime, type(None))
    assert all(isinstance(v, immutable) for k, v in vars(roster).items() if k not in containers), vars(roster)
