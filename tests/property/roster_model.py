"""A pure-Python model of the racer-profiles rules and a hypothesis state machine
that runs random commands against a ProfilesService and the model side by side.

Reuse: subclass RosterMachine and override
  * make_service()   - the service under test (default: in-memory ProfilesService),
  * account_names()  - e.g. unique names when a database outlives one example,
  * check_extra()    - extra checks, called after each step's state/invariant check,
  * teardown()       - call super().teardown() to close the service.

The model validates and mutates only when a command succeeds; a refused command
raises the same domain error the service must raise, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
)

from domain.errors import (
    DomainError,
    InvalidSuccessor,
    InvalidValue,
    NotAnActiveMember,
    ProfileArchived,
    ProfileErased,
    ProfileNotArchived,
    ProfileNotFound,
    VehicleNotFound,
    VersionMismatch,
)
from domain.profile import ERASED, VEHICLE_FIELDS
from domain.service import Cause, Outcome, ProfilesService

NAME_MAX, CLASS_MAX, NUMBER_MAX, VEHICLES_MAX = 80, 40, 6, 50


# --- the model ------------------------------------------------------------------------


@dataclass
class ModelProfile:
    account: str
    name: str
    vehicles: list[dict[str, Any]]
    archived: bool = False
    erased: bool = False
    version: int = 1
    created_at: datetime | None = None  # learnt from the service after creation


@dataclass
class ModelRoster:
    default: UUID | None = None
    version: int = 0  # 0: the account has no roster yet


def _text(fld: str, value: object, max_len: int) -> str:
    if not isinstance(value, str):
        raise InvalidValue(fld, "must be a string")
    text = value.strip()
    if not text:
        raise InvalidValue(fld, "must not be blank")
    if len(text) > max_len:
        raise InvalidValue(fld, "too long")
    return text


def _optional(fld: str, value: object, max_len: int) -> str | None:
    return None if value is None else _text(fld, value, max_len)


def _number(fld: str, value: object) -> str | None:
    number = _optional(fld, value, NUMBER_MAX)
    if number is not None and not number.isalnum():
        raise InvalidValue(fld, "not alphanumeric")
    return number


def _vehicle(fields: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A vehicle record whose id the service assigns (filled in by the machine)."""
    return {
        "id": None,
        "name": _text(f"{prefix}name", fields.get("name"), NAME_MAX),
        "vehicle_class": _optional(f"{prefix}vehicle_class", fields.get("vehicle_class"), CLASS_MAX),
        "race_number": _number(f"{prefix}race_number", fields.get("race_number")),
    }


def _vehicle_changes(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - {"name", "vehicle_class", "race_number"}
    if unknown:
        raise InvalidValue(sorted(unknown)[0], "not a vehicle field")
    if not fields:
        raise InvalidValue("body", "no field")
    changes: dict[str, Any] = {}
    if "name" in fields:
        changes["name"] = _text("name", fields["name"], NAME_MAX)
    if "vehicle_class" in fields:
        changes["vehicle_class"] = _optional("vehicle_class", fields["vehicle_class"], CLASS_MAX)
    if "race_number" in fields:
        changes["race_number"] = _number("race_number", fields["race_number"])
    return changes


class RosterModel:
    """Profiles and per-account defaults. Each command returns how many events
    the service must write for it (0 for a no-op)."""

    def __init__(self, accounts: list[str]) -> None:
        self.profiles: dict[UUID, ModelProfile] = {}
        self.rosters: dict[str, ModelRoster] = {a: ModelRoster() for a in accounts}

    # --- queries --

    def active(self, account: str) -> list[UUID]:
        return [pid for pid, p in self.profiles.items() if p.account == account and not p.archived]

    def earliest_active(self, account: str) -> UUID | None:
        active = self.active(account)
        if not active:
            return None
        return min(active, key=lambda pid: (self.profiles[pid].created_at, str(pid)))

    def profile(self, account: str, pid: UUID, expected_version: int | None = None) -> ModelProfile:
        p = self.profiles.get(pid)
        if p is None or p.account != account:
            raise ProfileNotFound(str(pid))
        if expected_version is not None and expected_version != p.version:
            raise VersionMismatch(expected_version, p.version)
        return p

    def _active_profile(self, account: str, pid: UUID, expected_version: int | None) -> ModelProfile:
        p = self.profile(account, pid, expected_version)
        if p.erased:
            raise ProfileErased(str(pid))
        if p.archived:
            raise ProfileArchived(str(pid))
        return p

    def _join(self, account: str, pid: UUID) -> int:
        roster = self.rosters[account]
        written = 1 if roster.version == 0 else 0  # Roster.Created
        written += 1  # MemberAdded
        if roster.default is None:
            roster.default = pid
            written += 1  # DefaultChanged
        roster.version += written
        return written

    # --- commands --

    def create(self, account: str, pid: UUID, name: str, vehicles: list[Mapping[str, Any]]) -> int:
        records = [_vehicle(v, prefix=f"vehicles[{i}].") for i, v in enumerate(vehicles)]
        clean = _text("name", name, NAME_MAX)
        if len(records) > VEHICLES_MAX:
            raise InvalidValue("vehicles", "too many")
        self.profiles[pid] = ModelProfile(account, clean, records)
        return 1 + self._join(account, pid)

    def rename(self, account: str, pid: UUID, name: str, expected_version: int | None) -> int:
        p = self._active_profile(account, pid, expected_version)
        clean = _text("name", name, NAME_MAX)
        if clean == p.name:
            return 0
        p.name, p.version = clean, p.version + 1
        return 1

    def add_vehicle(self, account: str, pid: UUID, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Returns the appended record, whose id the caller fills in."""
        record = _vehicle(fields)
        p = self._active_profile(account, pid, None)
        if len(p.vehicles) >= VEHICLES_MAX:
            raise InvalidValue("vehicles", "too many")
        p.vehicles.append(record)
        p.version += 1
        return record

    def change_vehicle(self, account: str, pid: UUID, vehicle_id: str, fields: Mapping[str, Any]) -> int:
        p = self._active_profile(account, pid, None)
        vehicle = self._vehicle_of(p, vehicle_id)
        changes = {k: v for k, v in _vehicle_changes(fields).items() if vehicle[k] != v}
        if not changes:
            return 0
        vehicle.update(changes)
        p.version += 1
        return 1

    def remove_vehicle(self, account: str, pid: UUID, vehicle_id: str) -> int:
        p = self._active_profile(account, pid, None)
        self._vehicle_of(p, vehicle_id)
        p.vehicles = [v for v in p.vehicles if v["id"] != vehicle_id]
        p.version += 1
        return 1

    def set_default(self, account: str, pid: UUID) -> int:
        p = self.profile(account, pid)
        roster = self.rosters[account]
        if p.archived:
            raise NotAnActiveMember(str(pid))
        if roster.default == pid:
            return 0
        roster.default = pid
        roster.version += 1
        return 1

    def archive(self, account: str, pid: UUID, successor: UUID | None) -> int:
        p = self.profile(account, pid)
        if successor is not None:
            heir = self.profiles.get(successor)
            if heir is None or heir.account != account:
                raise InvalidValue("successor_id", "not a profile of this account")
        if p.erased:
            raise ProfileErased(str(pid))
        if p.archived:
            raise ProfileArchived(str(pid))
        if successor is not None and (successor == pid or self.profiles[successor].archived):
            raise InvalidSuccessor(str(successor))
        p.archived, p.version = True, p.version + 1
        roster = self.rosters[account]
        written = 2  # Archived, MemberRemoved
        if roster.default == pid:
            roster.default = successor if successor is not None else self.earliest_active(account)
            written += 1  # DefaultChanged
        roster.version += written - 1
        return written

    def restore(self, account: str, pid: UUID) -> int:
        p = self.profile(account, pid)
        if p.erased:
            raise ProfileErased(str(pid))
        if not p.archived:
            raise ProfileNotArchived(str(pid))
        p.archived, p.version = False, p.version + 1
        return 1 + self._join(account, pid)

    def erase(self, account: str, pid: UUID, successor: UUID | None) -> int:
        """Archived first when active (as archive, the successor rule included),
        then Erased: every personal field reads ERASED from then on."""
        p = self.profiles.get(pid)
        if p is not None and p.account == account and p.erased:
            raise ProfileErased(str(pid))
        p = self.profile(account, pid)
        written = 1  # Erased
        if not p.archived:
            written += self.archive(account, pid, successor)
        p.erased, p.version, p.name = True, p.version + 1, ERASED
        p.vehicles = [{"id": v["id"], **dict.fromkeys(VEHICLE_FIELDS, ERASED)} for v in p.vehicles]
        return written

    @staticmethod
    def _vehicle_of(p: ModelProfile, vehicle_id: str) -> dict[str, Any]:
        for v in p.vehicles:
            if v["id"] == vehicle_id:
                return v
        raise VehicleNotFound(vehicle_id)


# --- strategies ----------------------------------------------------------------------------

ACCOUNT_COUNT = 3
CAUSE = Cause("tester", "property")
MISSING_VEHICLE = "no-such-vehicle"


def mostly_valid(valid: list[Any], invalid: list[Any]) -> st.SearchStrategy[Any]:
    """Valid values about three times in four, so that most commands get through."""
    return st.one_of(st.sampled_from(valid), st.sampled_from(valid + invalid))


names = mostly_valid(["Ann", "Bea", " Ann ", "Cy", "x" * NAME_MAX], ["", "  ", "y" * (NAME_MAX + 1)])
vehicle_names = mostly_valid(["Kart", " Kart ", "GT"], ["", "k" * (NAME_MAX + 1)])
vehicle_classes = mostly_valid([None, "GT3", " GT3 ", "c" * CLASS_MAX], ["c" * (CLASS_MAX + 1), " "])
race_numbers = mostly_valid([None, "7", "A12", "123456"], ["1234567", "1-2"])
vehicle_fields = st.fixed_dictionaries(
    {"name": vehicle_names},
    optional={"vehicle_class": vehicle_classes, "race_number": race_numbers},
)
change_fields = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={"name": vehicle_names, "vehicle_class": vehicle_classes, "race_number": race_numbers},
    ).filter(bool),
    st.fixed_dictionaries(
        {},
        optional={
            "name": vehicle_names,
            "vehicle_class": vehicle_classes,
            "race_number": race_numbers,
            "colour": st.just("red"),
        },
    ),
)
# Most commands land in the first account, so that its roster grows long enough
# for successors and earliest-created hand-overs to matter.
accounts = st.sampled_from([0, 0, 0, *range(ACCOUNT_COUNT)])
# Whose profile id a command names: the owner's own, another account's, or nobody's.
addressees = st.sampled_from(["own"] * 6 + ["foreign", "unknown"])
versions = st.sampled_from([None, None, "current", "stale"])
successors = st.sampled_from(["none", "none", "peer", "peer", "self", "unknown", "any"])


# --- the machine --------------------------------------------------------------------------------


class RosterMachine(RuleBasedStateMachine):
    profiles = Bundle("profiles")

    def __init__(self) -> None:
        super().__init__()
        self.accounts = self.account_names()
        self.service = self.make_service()
        self.model = RosterModel(self.accounts)
        self.position = self.head()

    # --- hooks for subclasses --

    def make_service(self) -> ProfilesService:
        return ProfilesService()

    def account_names(self) -> list[str]:
        return [f"acc-{i}" for i in range(ACCOUNT_COUNT)]

    def check_extra(self) -> None:
        """Called after every step, once the state and invariant checks passed."""

    def teardown(self) -> None:
        self.service.close()

    # --- plumbing --

    def head(self) -> int:
        return self.service.recorder.max_notification_id() or 0

    def address(self, pid: UUID, who: str) -> tuple[str, UUID]:
        owner = self.model.profiles[pid].account
        if who == "own":
            return owner, pid
        if who == "foreign":
            i = self.accounts.index(owner)
            return self.accounts[(i + 1) % len(self.accounts)], pid
        return owner, uuid4()

    def run(
        self,
        model_call: Callable[[], Any],
        service_call: Callable[[], Outcome],
        written: Callable[[Any], int] = int,
    ) -> tuple[Any, Outcome] | None:
        """Runs a command on the model and the service; both refuse it with the same
        error, or both accept it and the service writes the expected events."""
        try:
            result = model_call()
        except DomainError as expected:
            self._expect_refusal(expected, service_call)
            return None
        outcome = service_call()
        assert outcome.attempts == 1
        if written(result):
            assert outcome.position > self.position, (outcome, self.position)
            self.position = outcome.position
        assert outcome.position == self.position == self.head(), (outcome, self.position)
        return result, outcome

    def _expect_refusal(self, expected: DomainError, service_call: Callable[[], Outcome]) -> None:
        try:
            outcome = service_call()
        except DomainError as actual:
            assert type(actual) is type(expected), f"expected {expected!r}, got {actual!r}"
            if isinstance(expected, InvalidValue):
                assert isinstance(actual, InvalidValue)
                assert actual.field == expected.field, (actual, expected)
            if isinstance(expected, VersionMismatch):
                assert isinstance(actual, VersionMismatch)
                assert (actual.expected, actual.current) == (expected.expected, expected.current)
        else:
            raise AssertionError(f"expected {expected!r}, the service accepted: {outcome}")
        assert self.head() == self.position, "a refused command wrote events"

    # --- rules --

    @rule(target=profiles, account=accounts, name=names, vehicles=st.lists(vehicle_fields, max_size=2))
    def create(self, account: int, name: str, vehicles: list[dict[str, Any]]) -> Any:
        acc, pid = self.accounts[account], uuid4()
        ran = self.run(
            lambda: self.model.create(acc, pid, name, vehicles),
            lambda: self.service.create_profile(acc, name, vehicles, CAUSE, profile_id=pid),
        )
        if ran is None:
            try:
                self.service.get_profile(pid)
            except ProfileNotFound:
                return multiple()
            raise AssertionError("a refused create stored the profile")
        stored = self.service.get_profile(pid)
        mp = self.model.profiles[pid]
        mp.created_at = stored.created_at
        assert len(stored.vehicles) == len(mp.vehicles)
        for record, vehicle in zip(mp.vehicles, stored.vehicles, strict=True):
            record["id"] = vehicle["id"]
        return pid

    @rule(target=profiles, account=accounts)
    def create_plain(self, account: int) -> Any:
        """A valid create without vehicles: more profiles per account."""
        return self.create(account, "Racer", [])

    @rule(pid=profiles, who=addressees, name=names, version=versions)
    def rename(self, pid: UUID, who: str, name: str, version: str | None) -> None:
        acc, target = self.address(pid, who)
        current = self.model.profiles[pid].version
        expected = {None: None, "current": current, "stale": current - 1}[version]
        self.run(
            lambda: self.model.rename(acc, target, name, expected),
            lambda: self.service.rename(acc, target, name, CAUSE, expected_version=expected),
        )

    @rule(pid=profiles, who=addressees, fields=vehicle_fields)
    def add_vehicle(self, pid: UUID, who: str, fields: dict[str, Any]) -> None:
        acc, target = self.address(pid, who)
        ran = self.run(
            lambda: self.model.add_vehicle(acc, target, fields),
            lambda: self.service.add_vehicle(acc, target, fields, CAUSE),
            written=lambda record: 1,
        )
        if ran is not None:
            record, outcome = ran
            assert outcome.vehicle_id is not None
            record["id"] = outcome.vehicle_id

    def pick_vehicle(self, pid: UUID, index: int) -> str:
        """One of the profile's vehicles, or (one time in len+1) a missing one."""
        vehicles = self.model.profiles[pid].vehicles
        i = index % (len(vehicles) + 1)
        return vehicles[i]["id"] if i < len(vehicles) else MISSING_VEHICLE

    @rule(pid=profiles, who=addressees, index=st.integers(0, 3), fields=change_fields)
    def change_vehicle(self, pid: UUID, who: str, index: int, fields: dict[str, Any]) -> None:
        acc, target = self.address(pid, who)
        vid = self.pick_vehicle(pid, index)
        self.run(
            lambda: self.model.change_vehicle(acc, target, vid, fields),
            lambda: self.service.change_vehicle(acc, target, vid, fields, CAUSE),
        )

    @rule(pid=profiles, who=addressees, index=st.integers(0, 3))
    def remove_vehicle(self, pid: UUID, who: str, index: int) -> None:
        acc, target = self.address(pid, who)
        vid = self.pick_vehicle(pid, index)
        self.run(
            lambda: self.model.remove_vehicle(acc, target, vid),
            lambda: self.service.remove_vehicle(acc, target, vid, CAUSE),
        )

    @rule(pid=profiles, who=addressees)
    def set_default(self, pid: UUID, who: str) -> None:
        acc, target = self.address(pid, who)
        self.run(
            lambda: self.model.set_default(acc, target),
            lambda: self.service.set_default(acc, target, CAUSE),
        )

    def successor(self, pid: UUID, kind: str, other: UUID, pick: int) -> UUID | None:
        """The successor an archive or erase names: none, an active peer, the profile
        itself, an unknown id, or any profile at all."""
        peers = [p for p in self.model.active(self.model.profiles[pid].account) if p != pid]
        return {
            "none": None,
            "peer": peers[pick % len(peers)] if peers else None,
            "self": pid,
            "unknown": uuid4(),
            "any": other,
        }[kind]

    @rule(pid=profiles, who=addressees, kind=successors, other=profiles, pick=st.integers(0, 7))
    def archive(self, pid: UUID, who: str, kind: str, other: UUID, pick: int) -> None:
        acc, target = self.address(pid, who)
        successor = self.successor(pid, kind, other, pick)
        self.run(
            lambda: self.model.archive(acc, target, successor),
            lambda: self.service.archive(acc, target, CAUSE, successor_id=successor),
        )

    @precondition(lambda self: any(len(self.model.active(a)) >= 2 for a in self.accounts))
    @rule(named=st.booleans(), pick=st.integers(0, 7))
    def archive_a_default(self, named: bool, pick: int) -> None:
        """Archives the default of the account with the most active profiles,
        handing over to a named peer or to the earliest-created one."""
        acc = max(self.accounts, key=lambda a: len(self.model.active(a)))
        default = self.model.rosters[acc].default
        peers = [p for p in self.model.active(acc) if p != default]
        successor = peers[pick % len(peers)] if named and peers else None
        self.run(
            lambda: self.model.archive(acc, default, successor),
            lambda: self.service.archive(acc, default, CAUSE, successor_id=successor),
        )

    @rule(pid=profiles, who=addressees, kind=successors, other=profiles, pick=st.integers(0, 7))
    def erase(self, pid: UUID, who: str, kind: str, other: UUID, pick: int) -> None:
        acc, target = self.address(pid, who)
        successor = self.successor(pid, kind, other, pick)
        self.run(
            lambda: self.model.erase(acc, target, successor),
            lambda: self.service.erase(acc, target, CAUSE, successor_id=successor),
        )

    @rule(pid=profiles, who=addressees)
    def restore(self, pid: UUID, who: str) -> None:
        acc, target = self.address(pid, who)
        self.run(
            lambda: self.model.restore(acc, target),
            lambda: self.service.restore(acc, target, CAUSE),
        )

    @precondition(lambda self: any(p.archived for p in self.model.profiles.values()))
    @rule(pick=st.integers(0, 7))
    def restore_an_archived(self, pick: int) -> None:
        """Restores an archived profile: it rejoins the roster after younger members."""
        archived = [pid for pid, p in self.model.profiles.items() if p.archived]
        self.restore(archived[pick % len(archived)], "own")

    # --- checks --

    @invariant()
    def service_state_matches_the_model(self) -> None:
        for acc in self.accounts:
            self.check_roster(acc)
        for pid, expected in self.model.profiles.items():
            p = self.service.get_profile(pid)
            assert (p.account_id, p.name, p.vehicles, p.archived, p.version) == (
                expected.account,
                expected.name,
                expected.vehicles,
                expected.archived,
                expected.version,
            ), pid
        self.check_extra()

    def check_roster(self, acc: str) -> None:
        expected = self.model.rosters[acc]
        roster = self.service.get_roster(acc)
        if expected.version == 0:
            assert roster is None
            return
        assert roster is not None
        # The invariant, on the service's own state.
        if roster.members:
            assert roster.default in roster.members
        else:
            assert roster.default is None
        # And the state itself, against the model.
        active = self.model.active(acc)
        assert roster.members == {str(pid): self.model.profiles[pid].created_at.isoformat() for pid in active}
        assert roster.default == (str(expected.default) if expected.default else None)
        assert roster.version == expected.version
        assert (expected.default is None) == (not active)
