"""ProfilesService on in-memory (POPO) persistence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError, OperationalError

from domain.errors import (
    ConcurrencyConflict,
    InvalidSuccessor,
    InvalidValue,
    NotAnActiveMember,
    ProfileArchived,
    ProfileExists,
    ProfileNotArchived,
    ProfileNotFound,
    VehicleNotFound,
    VersionMismatch,
)
from domain.profile import RacerProfile
from domain.roster import Roster, roster_id
from domain.service import Cause, Command, Outcome, ProfilesService

ACC, OTHER = "acc-1", "acc-2"
CAUSE = Cause("alice", "because")


@pytest.fixture
def service() -> ProfilesService:
    return ProfilesService()


def create(service: ProfilesService, name: str = "Ann", account: str = ACC, **kw: Any) -> UUID:
    return service.create_profile(account, name, kw.pop("vehicles", []), CAUSE, **kw).profile_id


def head(service: ProfilesService) -> int:
    return service.recorder.max_notification_id() or 0


def default_of(service: ProfilesService, account: str = ACC) -> UUID | None:
    roster = service.get_roster(account)
    assert roster is not None
    return UUID(roster.default) if roster.default else None


def stored_types(service: ProfilesService, aggregate_id: UUID) -> list[str]:
    return [type(e).__name__ for e in service.events.get(aggregate_id)]


# --- create ---------------------------------------------------------------------


def test_create_profile_stores_the_profile_and_makes_the_first_one_default(
    service: ProfilesService,
) -> None:
    outcome = service.create_profile(ACC, " Ann ", [{"name": " Kart ", "race_number": "7"}], CAUSE)

    assert outcome.attempts == 1
    assert (
        outcome.position == head(service) == 4
    )  # profile Created + roster Created, MemberAdded, DefaultChanged
    profile = service.get_profile(outcome.profile_id)
    assert (profile.account_id, profile.name, profile.archived, profile.version) == (ACC, "Ann", False, 1)
    [vehicle] = profile.vehicles
    assert UUID(vehicle["id"])
    assert {k: v for k, v in vehicle.items() if k != "id"} == {
        "name": "Kart",
        "vehicle_class": None,
        "race_number": "7",
    }
    roster = service.get_roster(ACC)
    assert roster is not None
    assert roster.id == roster_id(ACC)
    assert (roster.members, roster.default) == (
        {str(outcome.profile_id): profile.created_at.isoformat()},
        str(outcome.profile_id),
    )


def test_every_event_of_a_command_records_its_cause_and_one_request_id(
    service: ProfilesService,
) -> None:
    pid = create(service)
    events = [*service.events.get(pid), *service.events.get(roster_id(ACC))]
    assert len(events) == 4
    assert {(e.actor, e.reason) for e in events} == {("alice", "because")}
    assert len({e.request_id for e in events}) == 1
    assert events[0].request_id


def test_a_given_request_id_is_recorded_and_each_command_gets_its_own_otherwise(
    service: ProfilesService,
) -> None:
    pid = create(service)
    service.rename(ACC, pid, "Bea", Cause("bob", None, request_id="req-7"))
    service.rename(ACC, pid, "Cy", Cause("bob"))
    created, renamed, renamed_again = service.events.get(pid)
    assert renamed.request_id == "req-7"
    assert renamed_again.request_id not in (None, "req-7", created.request_id)


def test_create_with_an_existing_profile_id_raises_profile_exists(service: ProfilesService) -> None:
    pid = create(service)
    before = head(service)
    for account in (ACC, OTHER):
        with pytest.raises(ProfileExists):
            create(service, "Bea", account=account, profile_id=pid)
    assert head(service) == before
    assert service.get_profile(pid).name == "Ann"


def test_second_profile_joins_without_taking_the_default(service: ProfilesService) -> None:
    first = create(service)
    second = create(service, "Bea")
    assert default_of(service) == first
    assert set(service.get_roster(ACC).members) == {str(first), str(second)}


def test_accounts_have_separate_rosters(service: ProfilesService) -> None:
    mine, theirs = create(service), create(service, account=OTHER)
    assert default_of(service, ACC) == mine
    assert default_of(service, OTHER) == theirs


@pytest.mark.parametrize(
    ("name", "vehicles", "field"),
    [
        ("  ", [], "name"),
        ("x" * 81, [], "name"),
        ("Ann", [{"name": "K"}, {"name": "K", "race_number": "1-2"}], "vehicles[1].race_number"),
        ("Ann", [{"vehicle_class": "GT"}], "vehicles[0].name"),
        ("Ann", [{"name": "K", "vehicle_class": "c" * 41}], "vehicles[0].vehicle_class"),
    ],
)
def test_invalid_create_raises_invalid_value_and_writes_nothing(
    service: ProfilesService, name: str, vehicles: list, field: str
) -> None:
    with pytest.raises(InvalidValue) as info:
        service.create_profile(ACC, name, vehicles, CAUSE)
    assert info.value.field == field
    assert head(service) == 0
    assert service.get_roster(ACC) is None


# --- queries ----------------------------------------------------------------------


def test_get_profile_of_an_unknown_id_raises_profile_not_found(service: ProfilesService) -> None:
    with pytest.raises(ProfileNotFound):
        service.get_profile(uuid4())


def test_get_roster_of_an_account_without_profiles_is_none(service: ProfilesService) -> None:
    assert service.get_roster("nobody") is None


def test_get_profile_at_a_version_returns_that_version(service: ProfilesService) -> None:
    pid = create(service)
    service.rename(ACC, pid, "Bea", CAUSE)
    assert service.get_profile(pid, version=1).name == "Ann"
    assert service.get_profile(pid).name == "Bea"


# --- rename / vehicles ----------------------------------------------------------------


def test_rename_changes_the_name_and_advances_the_position(service: ProfilesService) -> None:
    pid = create(service)
    before = head(service)

    outcome = service.rename(ACC, pid, " Bea ", CAUSE)

    assert outcome == Outcome(pid, before + 1, None, 1)
    profile = service.get_profile(pid)
    assert (profile.name, profile.version) == ("Bea", 2)


def test_rename_to_the_same_name_writes_no_event(service: ProfilesService) -> None:
    pid = create(service)
    before = head(service)

    outcome = service.rename(ACC, pid, "  Ann", CAUSE)

    assert outcome.position == before == head(service)
    assert service.get_profile(pid).version == 1


def test_rename_of_an_archived_profile_raises_profile_archived(service: ProfilesService) -> None:
    pid = create(service)
    service.archive(ACC, pid, CAUSE)
    with pytest.raises(ProfileArchived):
        service.rename(ACC, pid, "Bea", CAUSE)


def test_add_change_and_remove_vehicle(service: ProfilesService) -> None:
    pid = create(service)

    added = service.add_vehicle(ACC, pid, {"name": "Kart", "vehicle_class": "GT3"}, CAUSE)
    assert added.vehicle_id is not None
    assert service.get_profile(pid).vehicle(added.vehicle_id) == {
        "id": added.vehicle_id,
        "name": "Kart",
        "vehicle_class": "GT3",
        "race_number": None,
    }

    changed = service.change_vehicle(ACC, pid, added.vehicle_id, {"race_number": "42"}, CAUSE)
    assert changed.position > added.position
    assert service.get_profile(pid).vehicle(added.vehicle_id)["race_number"] == "42"

    removed = service.remove_vehicle(ACC, pid, added.vehicle_id, CAUSE)
    assert removed.position > changed.position
    assert service.get_profile(pid).vehicles == []
    assert stored_types(service, pid) == ["Created", "VehicleAdded", "VehicleChanged", "VehicleRemoved"]


def test_add_vehicle_gives_each_vehicle_a_fresh_id(service: ProfilesService) -> None:
    pid = create(service)
    a = service.add_vehicle(ACC, pid, {"name": "K"}, CAUSE).vehicle_id
    b = service.add_vehicle(ACC, pid, {"name": "K"}, CAUSE).vehicle_id
    assert a != b
    assert [v["id"] for v in service.get_profile(pid).vehicles] == [a, b]


def test_invalid_vehicle_raises_invalid_value_and_writes_nothing(service: ProfilesService) -> None:
    pid = create(service)
    before = head(service)
    with pytest.raises(InvalidValue) as info:
        service.add_vehicle(ACC, pid, {"name": "K", "race_number": "1234567"}, CAUSE)
    assert info.value.field == "race_number"
    assert head(service) == before


def test_unknown_vehicle_raises_vehicle_not_found(service: ProfilesService) -> None:
    pid = create(service)
    with pytest.raises(VehicleNotFound):
        service.remove_vehicle(ACC, pid, "nope", CAUSE)
    with pytest.raises(VehicleNotFound):
        service.change_vehicle(ACC, pid, "nope", {"name": "K"}, CAUSE)


def test_vehicle_changes_on_an_archived_profile_raise_profile_archived(
    service: ProfilesService,
) -> None:
    pid = create(service, vehicles=[{"name": "K"}])
    vid = service.get_profile(pid).vehicles[0]["id"]
    service.archive(ACC, pid, CAUSE)
    with pytest.raises(ProfileArchived):
        service.add_vehicle(ACC, pid, {"name": "K"}, CAUSE)
    with pytest.raises(ProfileArchived):
        service.change_vehicle(ACC, pid, vid, {"name": "L"}, CAUSE)
    with pytest.raises(ProfileArchived):
        service.remove_vehicle(ACC, pid, vid, CAUSE)


# --- set_default ----------------------------------------------------------------------


def test_set_default_moves_the_default(service: ProfilesService) -> None:
    first, second = create(service), create(service, "Bea")
    before = head(service)

    outcome = service.set_default(ACC, second, CAUSE)

    assert outcome.position == before + 1
    assert default_of(service) == second
    changed = list(service.events.get(roster_id(ACC)))[-1]
    assert type(changed) is Roster.DefaultChanged
    assert (changed.previous, changed.new) == (str(first), str(second))


def test_set_default_on_the_current_default_writes_no_event(service: ProfilesService) -> None:
    first = create(service)
    before = head(service)
    assert service.set_default(ACC, first, CAUSE).position == before == head(service)


def test_set_default_on_an_archived_profile_raises_not_an_active_member(
    service: ProfilesService,
) -> None:
    first, second = create(service), create(service, "Bea")
    service.archive(ACC, second, CAUSE)
    with pytest.raises(NotAnActiveMember):
        service.set_default(ACC, second, CAUSE)
    assert default_of(service) == first


def test_set_default_with_a_stale_roster_version_raises_version_mismatch(
    service: ProfilesService,
) -> None:
    create(service)
    second = create(service, "Bea")
    version = service.get_roster(ACC).version

    with pytest.raises(VersionMismatch) as info:
        service.set_default(ACC, second, CAUSE, expected_roster_version=version - 1)
    assert (info.value.expected, info.value.current) == (version - 1, version)

    service.set_default(ACC, second, CAUSE, expected_roster_version=version)
    assert default_of(service) == second


# --- archive / restore ------------------------------------------------------------------


def test_archiving_the_default_promotes_the_earliest_created_remaining_profile(
    service: ProfilesService,
) -> None:
    first, second, third = create(service), create(service, "Bea"), create(service, "Cy")
    service.set_default(ACC, third, CAUSE)

    service.archive(ACC, third, CAUSE)

    assert default_of(service) == first
    assert service.get_profile(third).archived is True
    assert str(third) not in service.get_roster(ACC).members
    service.archive(ACC, first, CAUSE)
    assert default_of(service) == second


def test_archiving_the_default_promotes_the_named_successor(service: ProfilesService) -> None:
    first, _, third = create(service), create(service, "Bea"), create(service, "Cy")
    service.archive(ACC, first, CAUSE, successor_id=third)
    assert default_of(service) == third


def test_archiving_a_non_default_keeps_the_default(service: ProfilesService) -> None:
    first, second = create(service), create(service, "Bea")
    service.archive(ACC, second, CAUSE)
    assert default_of(service) == first


def test_archiving_the_last_profile_leaves_no_default(service: ProfilesService) -> None:
    pid = create(service)
    service.archive(ACC, pid, CAUSE)
    roster = service.get_roster(ACC)
    assert (roster.members, roster.default) == ({}, None)


def test_archiving_an_archived_profile_raises_profile_archived(service: ProfilesService) -> None:
    pid = create(service)
    service.archive(ACC, pid, CAUSE)
    with pytest.raises(ProfileArchived):
        service.archive(ACC, pid, CAUSE)


def test_successor_that_is_not_a_profile_of_the_account_raises_invalid_value(
    service: ProfilesService,
) -> None:
    first, _ = create(service), create(service, "Bea")
    foreign = create(service, account=OTHER)
    before = head(service)
    for successor in (foreign, uuid4()):
        with pytest.raises(InvalidValue) as info:
            service.archive(ACC, first, CAUSE, successor_id=successor)
        assert info.value.field == "successor_id"
    assert head(service) == before


def test_successor_that_is_archived_or_the_profile_itself_raises_invalid_successor(
    service: ProfilesService,
) -> None:
    first, _, third = create(service), create(service, "Bea"), create(service, "Cy")
    service.archive(ACC, third, CAUSE)
    before = head(service)
    for successor in (third, first):
        with pytest.raises(InvalidSuccessor):
            service.archive(ACC, first, CAUSE, successor_id=successor)
    assert head(service) == before
    assert service.get_profile(first).archived is False
    assert default_of(service) == first


def test_restore_into_an_empty_roster_makes_the_profile_default(service: ProfilesService) -> None:
    pid = create(service)
    service.archive(ACC, pid, CAUSE)

    service.restore(ACC, pid, CAUSE)

    assert service.get_profile(pid).archived is False
    assert default_of(service) == pid


def test_restore_into_a_non_empty_roster_keeps_the_default(service: ProfilesService) -> None:
    first, second = create(service), create(service, "Bea")
    service.archive(ACC, first, CAUSE)
    service.restore(ACC, first, CAUSE)
    assert default_of(service) == second
    assert service.get_roster(ACC).members[str(first)] == service.get_profile(first).created_at.isoformat()


def test_restore_of_an_active_profile_raises_profile_not_archived(service: ProfilesService) -> None:
    pid = create(service)
    with pytest.raises(ProfileNotArchived):
        service.restore(ACC, pid, CAUSE)


# --- expected versions ----------------------------------------------------------------------


def test_expected_version_mismatch_raises_version_mismatch(service: ProfilesService) -> None:
    pid = create(service)
    with pytest.raises(VersionMismatch) as info:
        service.rename(ACC, pid, "Bea", CAUSE, expected_version=2)
    assert (info.value.expected, info.value.current) == (2, 1)
    service.rename(ACC, pid, "Bea", CAUSE, expected_version=1)
    assert service.get_profile(pid).name == "Bea"


@pytest.mark.parametrize(
    "command",
    [
        lambda s, p: s.add_vehicle(ACC, p, {"name": "K"}, CAUSE, expected_version=5),
        lambda s, p: s.remove_vehicle(ACC, p, "v", CAUSE, expected_version=5),
        lambda s, p: s.change_vehicle(ACC, p, "v", {"name": "K"}, CAUSE, expected_version=5),
        lambda s, p: s.archive(ACC, p, CAUSE, expected_version=5),
        lambda s, p: s.restore(ACC, p, CAUSE, expected_version=5),
    ],
    ids=["add_vehicle", "remove_vehicle", "change_vehicle", "archive", "restore"],
)
def test_every_profile_command_checks_the_expected_version(
    service: ProfilesService, command: Callable
) -> None:
    pid = create(service)
    with pytest.raises(VersionMismatch):
        command(service, pid)


# --- other accounts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        lambda s, p: s.rename(ACC, p, "Bea", CAUSE),
        lambda s, p: s.add_vehicle(ACC, p, {"name": "K"}, CAUSE),
        lambda s, p: s.change_vehicle(ACC, p, "v", {"name": "K"}, CAUSE),
        lambda s, p: s.remove_vehicle(ACC, p, "v", CAUSE),
        lambda s, p: s.archive(ACC, p, CAUSE),
        lambda s, p: s.restore(ACC, p, CAUSE),
        lambda s, p: s.set_default(ACC, p, CAUSE),
    ],
    ids=["rename", "add_vehicle", "change_vehicle", "remove_vehicle", "archive", "restore", "set_default"],
)
@pytest.mark.parametrize("whose", ["other-account", "unknown"])
def test_profile_outside_the_account_raises_profile_not_found(
    service: ProfilesService, command: Callable, whose: str
) -> None:
    create(service)  # the account has a roster of its own
    pid = create(service, account=OTHER) if whose == "other-account" else uuid4()
    before = head(service)

    with pytest.raises(ProfileNotFound):
        command(service, pid)

    assert head(service) == before


def test_a_roster_id_is_not_a_profile_of_the_account(service: ProfilesService) -> None:
    create(service)
    with pytest.raises(ProfileNotFound):
        service.rename(ACC, roster_id(ACC), "Bea", CAUSE)


# --- positions -----------------------------------------------------------------------------------


def test_positions_increase_with_every_written_command(service: ProfilesService) -> None:
    first = create(service)
    second = service.create_profile(ACC, "Bea", [], CAUSE).profile_id
    positions = [
        service.rename(ACC, first, "Ann 2", CAUSE).position,
        service.add_vehicle(ACC, second, {"name": "K"}, CAUSE).position,
        service.set_default(ACC, second, CAUSE).position,
        service.archive(ACC, second, CAUSE).position,
        service.restore(ACC, second, CAUSE).position,
        service.create_profile(OTHER, "Cy", [], CAUSE).position,
    ]
    assert positions == sorted(set(positions))
    assert positions[-1] == head(service)


# --- snapshots ------------------------------------------------------------------------------------


def test_state_is_the_same_after_snapshots_are_taken(service: ProfilesService) -> None:
    first, second = create(service), create(service, "Bea")
    for i in range(100):
        service.set_default(ACC, second if i % 2 == 0 else first, CAUSE)
        service.rename(ACC, first, f"Ann {i}", CAUSE)

    assert list(service.snapshots.get(first)) and list(service.snapshots.get(roster_id(ACC)))
    profile, roster = service.get_profile(first), service.get_roster(ACC)
    assert (profile.name, profile.version) == ("Ann 99", 101)
    assert (roster.members.keys(), roster.default, roster.version) == (
        {str(first), str(second)},
        str(first),
        104,
    )

    replayed = None
    for e in service.events.get(first):
        replayed = e.mutate(replayed)
    assert replayed == profile


# --- retries ---------------------------------------------------------------------------------------


class FlakyService(ProfilesService):
    """Raises IntegrityError from the first `failures` saves, as a lost race would."""

    def __init__(self, failures: int, **kwargs: Any) -> None:
        self.sleeps: list[float] = []
        super().__init__(sleep=self.sleeps.append, **kwargs)
        self.failures = failures
        self.save_calls = 0

    def save(self, *aggregates: Any, **kwargs: Any) -> Any:
        self.save_calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise IntegrityError("injected")
        return super().save(*aggregates, **kwargs)


def test_command_that_keeps_failing_raises_concurrency_conflict_after_max_attempts() -> None:
    service = FlakyService(failures=10**6, max_attempts=4, backoff_seconds=0.01)

    with pytest.raises(ConcurrencyConflict):
        service.create_profile(ACC, "Ann", [], CAUSE)

    assert service.save_calls == 4
    assert len(service.sleeps) == 3
    assert head(service) == 0


@pytest.mark.parametrize("failures", [1, 3])
def test_command_that_succeeds_after_k_failures_reports_k_plus_one_attempts(failures: int) -> None:
    service = FlakyService(failures=0)
    pid = create(service)
    service.failures = failures

    outcome = service.rename(ACC, pid, "Bea", CAUSE)

    assert outcome.attempts == failures + 1
    assert service.get_profile(pid).name == "Bea"
    assert len(service.sleeps) == failures


def test_create_that_succeeds_after_a_failure_reports_two_attempts() -> None:
    service = FlakyService(failures=1)
    outcome = service.create_profile(ACC, "Ann", [], CAUSE)
    assert outcome.attempts == 2
    assert default_of(service) == outcome.profile_id


def test_backoff_sleeps_are_jittered_within_the_exponential_bound() -> None:
    service = FlakyService(failures=10**6, max_attempts=9, backoff_seconds=0.5)
    with pytest.raises(ConcurrencyConflict):
        service.create_profile(ACC, "Ann", [], CAUSE)
    bounds = [0.5 * 2 ** min(attempt, 6) for attempt in range(1, 9)]
    assert len(service.sleeps) == len(bounds)
    assert all(0 <= s <= b for s, b in zip(service.sleeps, bounds, strict=True))


def test_max_attempts_of_one_gives_up_without_sleeping() -> None:
    service = FlakyService(failures=1, max_attempts=1)
    with pytest.raises(ConcurrencyConflict):
        service.create_profile(ACC, "Ann", [], CAUSE)
    assert service.sleeps == []


class RacedService(ProfilesService):
    """Before its first save, a rival writer creates a profile in the same account."""

    def __init__(self) -> None:
        super().__init__(sleep=lambda s: None)
        self.rival: UUID | None = None

    def save(self, *aggregates: Any, **kwargs: Any) -> Any:
        if self.rival is None and any(isinstance(a, RacerProfile) for a in aggregates):
            self.rival = uuid4()
            super().save(*self._rival_aggregates())
        return super().save(*aggregates, **kwargs)

    def _rival_aggregates(self) -> tuple:
        rival = RacerProfile.start(self.rival, ACC, "Rival", [], "mallory")
        roster = Roster.open(ACC, "mallory")
        roster.join(self.rival, rival.created_at.isoformat(), "mallory")
        return rival, roster


def test_lost_race_on_the_roster_is_retried_from_a_fresh_load() -> None:
    service = RacedService()

    outcome = service.create_profile(ACC, "Ann", [], CAUSE)

    assert outcome.attempts == 2
    roster = service.get_roster(ACC)
    assert set(roster.members) == {str(service.rival), str(outcome.profile_id)}
    assert roster.default == str(service.rival)
    assert service.get_profile(outcome.profile_id).version == 1


# --- run_together (the group commit's: infrastructure/group_commit.py) ----------


def _create_command(service: ProfilesService, account: str, profile_id: UUID | None = None) -> Command:
    new_id = profile_id or uuid4()
    cause = Cause(account).stamped()

    def decide() -> tuple[Any, ...]:
        profile = RacerProfile.start(new_id, account, "Ann", [], *cause.args()[:2], {}, cause.request_id)
        roster = service._roster(account, cause)
        roster.join(new_id, profile.created_at.isoformat(), *cause.args())
        return profile, roster

    return Command(account, new_id, decide, cause)


def test_run_together_stores_the_commands_in_one_save_each_with_its_own_outcome(
    service: ProfilesService, monkeypatch: pytest.MonkeyPatch
) -> None:
    existing = create(service, account=OTHER)
    saves: list[int] = []
    record = service._record
    monkeypatch.setattr(service, "_record", lambda pe: saves.append(len(pe.events)) or record(pe))
    commands = [_create_command(service, ACC), _create_command(service, "acc-3")]
    switch_cause = Cause(OTHER).stamped()

    def keep_default() -> tuple[Any, ...]:  # changes nothing: the default already
        roster = service._roster(OTHER, switch_cause)
        roster.set_default(existing, *switch_cause.args())
        return (roster,)

    commands.append(Command(OTHER, existing, keep_default, switch_cause))
    before = head(service)
    first, second, unchanged = service.run_together(commands)
    # One save: each create stores its profile and its account's new roster, joined, with its default.
    assert saves == [8]
    assert isinstance(first, Outcome) and isinstance(second, Outcome) and isinstance(unchanged, Outcome)
    assert (first.position, second.position) == (before + 4, before + 8)  # each its own last event
    assert unchanged.position == before  # the head when it found nothing to change
    assert default_of(service) == first.profile_id
    assert default_of(service, "acc-3") == second.profile_id
    assert first.roster_version == 3


def test_run_together_gives_a_command_that_fails_to_decide_its_own_error(service: ProfilesService) -> None:
    def refuse() -> tuple[Any, ...]:
        raise ProfileNotFound("no such profile")

    ok = _create_command(service, ACC)
    failed, done = service.run_together([Command(OTHER, uuid4(), refuse, Cause(OTHER)), ok])
    assert isinstance(failed, ProfileNotFound)
    assert isinstance(done, Outcome) and default_of(service) == ok.profile_id


@pytest.mark.parametrize("max_attempts", [1, 2])
def test_run_together_runs_each_alone_when_one_command_fails_the_save(
    service: ProfilesService, max_attempts: int
) -> None:
    """One command's events collide with stored ones: the save fails as a
    whole, each command then runs alone, and only that one fails (as it would
    have alone: it retries, then gives up). The try in the group is each
    command's first attempt, and each gets one of its own after it."""
    taken = create(service, account=OTHER)
    service.max_attempts = max_attempts
    colliding = _create_command(service, OTHER, profile_id=taken)
    ok = _create_command(service, ACC)
    failed, done = service.run_together([colliding, ok])
    assert isinstance(failed, ConcurrencyConflict)
    assert isinstance(done, Outcome) and done.attempts == 2
    assert default_of(service) == ok.profile_id
    assert [type(e).__name__ for e in service.events.get(taken)] == ["Created"]


def test_run_together_fails_the_group_at_once_when_the_database_is_out_of_reach(
    service: ProfilesService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alone, each command meets the outage in its own thread; in a group, one
    connect timeout after another would add up (an outage's answers took 4 s)."""
    called: list[str] = []

    def down(*_: Any) -> tuple[Any, ...]:
        called.append("down")
        raise OperationalError("connection refused")

    def later() -> tuple[Any, ...]:
        called.append("later")
        return ()

    first = _create_command(service, ACC)
    commands = [
        first,
        Command(OTHER, uuid4(), down, Cause(OTHER)),
        Command("acc-3", uuid4(), later, Cause("x")),
    ]
    results = service.run_together(commands)
    assert [type(r) for r in results] == [OperationalError] * 3  # the decided one's save would meet it too
    assert called == ["down"]
    assert service.get_roster(ACC) is None  # nothing was stored

    monkeypatch.setattr(service, "_fast_forward", down)
    called.clear()
    results = service.run_together(
        [_create_command(service, ACC), Command(OTHER, uuid4(), later, Cause(OTHER))]
    )
    assert [type(r) for r in results] == [OperationalError] * 2
    assert called == ["down"]  # no command went on to read on its own
