"""The application service: one method per command, each load -> decide -> save.

A command that changes membership saves the profile and the roster in ONE
save() (one transaction). When two writers race, the loser's insert collides
on the roster's (originator_id, originator_version) key and raises
IntegrityError; the whole command is then retried from a fresh load.

Commands may also run together (run_together, for a group commit: the
commands of several accounts decided by one thread and saved with ONE save);
each command's outcome is still what it would have been alone.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, InterfaceError, Mapper, OperationalError, Recording
from eventsourcing.utils import Environment, EnvType

from domain.errors import (
    ConcurrencyConflict,
    InvalidValue,
    ProfileErased,
    ProfileExists,
    ProfileNotFound,
    VersionMismatch,
)
from domain.profile import RacerProfile
from domain.roster import Roster, roster_id
from domain.upcasting import UpcastingMapper
from domain.values import vehicle_record

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What a command did: the profile it concerned, the position of its last
    event (or of the log's head when nothing changed), and any new vehicle id."""

    profile_id: UUID
    position: int
    vehicle_id: str | None = None
    attempts: int = 1
    roster_version: int | None = None


@dataclass(frozen=True)
class Cause:
    """Who asked for a change, why, and in which request (recorded on every event)."""

    actor: str
    reason: str | None = None
    request_id: str | None = None
    # (account, key) of the request's Idempotency-Key, opaque to the domain.
    idempotency: tuple[str, str] | None = None

    def stamped(self) -> Cause:
        """This cause with a request id: a fresh one per command when none was
        given, so that the events of one command can be told apart from others'."""
        return self if self.request_id else replace(self, request_id=uuid4().hex)

    def args(self) -> tuple[str, str | None, str | None]:
        return self.actor, self.reason, self.request_id


@dataclass(frozen=True)
class Command:
    """A command ready to run: decide() loads what it needs and returns the
    aggregates it changed (their pending events are what it records)."""

    account_id: str
    profile_id: UUID
    decide: Callable[[], tuple[Aggregate, ...]]
    cause: Cause


def project(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's project_aggregate without its `assert isinstance(event,
    CanMutateProtocol)` per event: an isinstance check against a runtime
    Protocol walks the protocol's members every time, and py-spy put it at a
    fifth of a command's CPU (loading a roster replays up to 99 events after
    its snapshot). Every event here is one of this domain's own."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class ProfilesService(Application[UUID]):
    # Table names derive from the name: never change it.
    name = "RacerProfiles"
    snapshotting_intervals = {  # noqa: RUF012 - the library's class attribute
        Roster: 100,
        RacerProfile: 100,
    }

    # Set by the composition root: runs a command together with other accounts'
    # commands (infrastructure/group_commit.py, which calls run_together); None:
    # every command runs alone.
    committer: Callable[[Command], Outcome] | None = None

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        max_attempts: int = 12,
        backoff_seconds: float = 0.002,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(env)
        # Commands on one account queue here instead of colliding in the store
        # (striped: bounded memory, unrelated accounts rarely share a stripe).
        self._account_locks = [threading.Lock() for _ in range(256)]
        # A group's rosters, fast-forwarded together (run_together), by id, per thread.
        self._group = threading.local()
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self._sleep = sleep

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """The library's construct_env without its merge of os.environ: the
        caller's env is the whole configuration (infrastructure's Settings
        derives it), so no stray POSTGRES_* or RACERPROFILES_* variable can move
        the event store or change its behaviour behind it."""
        base = dict(type(self).env)
        if type(self).is_snapshotting_enabled or type(self).snapshotting_intervals:
            base["IS_SNAPSHOTTING_ENABLED"] = "y"
        return Environment(name, {**base, **(env or {})})

    def construct_mapper(self) -> Mapper[UUID]:
        return self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=UpcastingMapper)

    # --- commands -------------------------------------------------------

    def create_profile(
        self,
        account_id: str,
        name: str,
        vehicles: Sequence[Mapping[str, Any]],
        cause: Cause,
        profile_id: UUID | None = None,
        details: Mapping[str, Any] | None = None,
        source: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """source: where an imported profile came from, recorded on its Created event."""
        cause = cause.stamped()
        new_id = profile_id or uuid4()
        records = [vehicle_record(str(uuid4()), v, prefix=f"vehicles[{i}].") for i, v in enumerate(vehicles)]

        def decide() -> tuple[Aggregate, ...]:
            # Only a caller-chosen id can exist already (imports); a new uuid4 cannot.
            if profile_id is not None and profile_id in self.repository:
                raise ProfileExists(f"profile {profile_id} already exists")
            profile = RacerProfile.start(
                new_id,
                account_id,
                name,
                records,
                cause.actor,
                cause.reason,
                dict(details or {}),
                cause.request_id,
                dict(source) if source is not None else None,
            )
            roster = self._roster(account_id, cause)
            roster.join(new_id, profile.created_at.isoformat(), *cause.args())
            return profile, roster

        return self._run(account_id, new_id, decide, cause)

    def rename(
        self,
        account_id: str,
        profile_id: UUID,
        name: str,
        cause: Cause,
        expected_version: int | None = None,
    ) -> Outcome:
        cause = cause.stamped()

        def decide() -> tuple[Aggregate, ...]:
            profile = self._profile(account_id, profile_id, expected_version)
            profile.rename(name, *cause.args())
            return (profile,)

        return self._run(account_id, profile_id, decide, cause)

    def add_vehicle(
        self,
        account_id: str,
        profile_id: UUID,
        fields: Mapping[str, Any],
        cause: Cause,
        expected_version: int | None = None,
        source: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """source: where an imported vehicle came from, recorded on its VehicleAdded event."""
        cause = cause.stamped()
        vehicle = vehicle_record(str(uuid4()), fields)

        def decide() -> tuple[Aggregate, ...]:
            profile = self._profile(account_id, profile_id, expected_version)
            profile.add_vehicle(vehicle, *cause.args(), dict(source) if source is not None else None)
            return (profile,)

        outcome = self._run(account_id, profile_id, decide, cause)
        return replace(outcome, vehicle_id=vehicle["id"])

    def change_vehicle(
        self,
        account_id: str,
        profile_id: UUID,
        vehicle_id: str,
        fields: Mapping[str, Any],
        cause: Cause,
        expected_version: int | None = None,
    ) -> Outcome:
        cause = cause.stamped()

        def decide() -> tuple[Aggregate, ...]:
            profile = self._profile(account_id, profile_id, expected_version)
            profile.change_vehicle(vehicle_id, dict(fields), *cause.args())
            return (profile,)

        return self._run(account_id, profile_id, decide, cause)

    def remove_vehicle(
        self,
        account_id: str,
        profile_id: UUID,
        vehicle_id: str,
        cause: Cause,
        expected_version: int | None = None,
    ) -> Outcome:
        cause = cause.stamped()

        def decide() -> tuple[Aggregate, ...]:
            profile = self._profile(account_id, profile_id, expected_version)
            profile.remove_vehicle(vehicle_id, *cause.args())
            return (profile,)

        return self._run(account_id, profile_id, decide, cause)

    def archive(
        self,
        account_id: str,
        profile_id: UUID,
        cause: Cause,
        successor_id: UUID | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        cause = cause.stamped()

        def decide() -> tuple[Aggregate, ...]:
            profile = self._profile(account_id, profile_id, expected_version)
            if successor_id is not None:
                self._profile(account_id, successor_id, None, field="successor_id")
            roster = self._roster(account_id, cause)
            profile.archive(*cause.args())
            roster.leave(profile_id, successor_id, *cause.args())
            return profile, roster

        return self._run(account_id, profile_id, decide, cause)

    def restore(
        self,
        account_id: str,
        profile_id: UUID,
        cause: Cause,
        expected_version: int | None = None,
    ) -> Outcome:
        cause = cause.stamped()

        def decide() -> tuple[Aggregate, ...]:
            profile = self._profile(account_id, profile_id, expected_version)
            roster = self._roster(account_id, cause)
            profile.restore(*cause.args())
            roster.join(profile_id, profile.created_at.isoformat(), *cause.args())
            return profile, roster

        return self._run(account_id, profile_id, decide, cause)

    def set_default(
        self,
        account_id: str,
        profile_id: UUID,
        cause: Cause,
        expected_roster_version: int | None = None,
    ) -> Outcome:
        cause = cause.stamped()

        def decide() -> tuple[Aggregate, ...]:
            roster = self._roster(account_id, cause)
            if str(profile_id) not in roster.members:
                # The roster's members are the account's active profiles, so a
                # member needs no loading; anything else is told apart here
                # (missing or another account's: 404; archived: not active).
                self._profile(account_id, profile_id, None)
            if expected_roster_version is not None and roster.version != expected_roster_version:
                raise VersionMismatch(expected_roster_version, roster.version)
            roster.set_default(profile_id, *cause.args())
            return (roster,)

        return self._run(account_id, profile_id, decide, cause)

    def erase(
        self,
        account_id: str,
        profile_id: UUID,
        cause: Cause,
        successor_id: UUID | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """Archives the profile if it is active (the successor rule applies),
        records that it was erased, then forgets its personal data (forget())."""
        cause = cause.stamped()
        current = self._load(profile_id)
        if isinstance(current, RacerProfile) and current.account_id == account_id and current.erased:
            self.forget(profile_id)  # completes an erasure whose forget() failed after its save
            raise ProfileErased(f"profile {profile_id} was erased")

        def decide() -> tuple[Aggregate, ...]:
            profile = self._profile(account_id, profile_id, expected_version)
            self.check_erasable(profile_id)
            aggregates: list[Aggregate] = [profile]
            if not profile.archived:
                if successor_id is not None:
                    self._profile(account_id, successor_id, None, field="successor_id")
                roster = self._roster(account_id, cause)
                profile.archive(*cause.args())
                # No free text on the roster's events of an erasure: the reason
                # stays with the profile's own events, which are forgotten with it.
                roster.leave(profile_id, successor_id, cause.actor, None, cause.request_id)
                aggregates.append(roster)
            profile.erase(*cause.args())
            return tuple(aggregates)

        outcome = self._run(account_id, profile_id, decide, cause)
        self.forget(profile_id)
        if self.repository.cache is not None:
            with contextlib.suppress(KeyError):
                self.repository.cache.get(profile_id, evict=True)
        return outcome

    def stored_chain_head(self, provisional: str) -> str:
        """The hash an event the domain hashed as provisional was stored with,
        by this thread's last save. The same here; an infrastructure subclass
        whose mapper changes events as it stores them (sealing) says which."""
        return provisional

    def check_erasable(self, aggregate_id: UUID) -> None:
        """Raises when erasing the aggregate could not remove all its personal
        data (an infrastructure subclass checks for events stored in plaintext)."""

    def forget(self, aggregate_id: UUID) -> None:
        """Makes the aggregate's personal data unreadable for good. The domain
        holds no keys: an infrastructure subclass destroys the aggregate's data key."""

    # --- queries --------------------------------------------------------

    def get_profile(self, profile_id: UUID, version: int | None = None) -> RacerProfile:
        profile = self._load(profile_id, version)
        if not isinstance(profile, RacerProfile):  # a roster's id is no profile's
            raise ProfileNotFound(f"no profile {profile_id}")
        return profile

    def get_roster(self, account_id: str) -> Roster | None:
        return self._load(roster_id(account_id))  # type: ignore[no-any-return]

    def _load(self, aggregate_id: UUID, version: int | None = None) -> Any:
        """The aggregate (at version, or its latest), or None when it does not exist."""
        group: dict[UUID, Any] | None = getattr(self._group, "rosters", None)
        if group is not None and version is None and aggregate_id in group:
            return deepcopy(group[aggregate_id])  # a command's copy, as the repository gives
        try:
            return self.repository.get(aggregate_id, version=version, projector_func=project)
        except AggregateNotFoundError:
            return None

    # --- plumbing -------------------------------------------------------

    def _profile(
        self,
        account_id: str,
        profile_id: UUID,
        expected_version: int | None,
        field: str | None = None,
    ) -> RacerProfile:
        profile = self._load(profile_id)
        if not isinstance(profile, RacerProfile) or profile.account_id != account_id:
            # Another account's profile is reported exactly like a missing one.
            if field is not None:
                raise InvalidValue(field, f"no profile {profile_id} in this account")
            raise ProfileNotFound(f"no profile {profile_id} in this account")
        if expected_version is not None and profile.version != expected_version:
            raise VersionMismatch(expected_version, profile.version)
        return profile

    def _roster(self, account_id: str, cause: Cause) -> Roster:
        roster = self.get_roster(account_id)
        return roster if roster is not None else Roster.open(account_id, *cause.args())

    def _run(
        self,
        account_id: str,
        profile_id: UUID,
        decide: Callable[[], tuple[Aggregate, ...]],
        cause: Cause,
    ) -> Outcome:
        command = Command(account_id, profile_id, decide, cause)
        # An Idempotency-Key is marked used in its command's own transaction.
        if self.committer is not None and cause.idempotency is None:
            return self.committer(command)
        return self.run_alone(command)

    def run_alone(self, command: Command) -> Outcome:
        with self._account_locks[self.stripe(command.account_id)]:
            return self._attempt(command.profile_id, command.decide, command.cause)

    def stripe(self, account_id: str) -> int:
        """The account's lock (shared with other accounts: bounded memory)."""
        return hash(account_id) % len(self._account_locks)

    def run_together(self, commands: Sequence[Command]) -> list[Outcome | Exception]:
        """Runs commands of DISTINCT accounts with one save: their events (and
        their read-table rows, inline) commit in one transaction, under one
        take of the events table's lock. Each command's result is what it
        would have been alone: its outcome or its own error. A save that fails
        for a reason other than the connection (an IntegrityError: another
        process wrote to one of these accounts; an error of one command's
        events) rolled back, and each command then runs alone, deciding again
        (its try in the group counts as its first attempt)."""
        results: list[Outcome | Exception | None] = [None] * len(commands)
        with contextlib.ExitStack() as locks:
            # In order: two callers never wait for each other's stripes in turn.
            for stripe in sorted({self.stripe(c.account_id) for c in commands}):
                locks.enter_context(self._account_locks[stripe])
            decided = self._decide_together(commands, results)
            if decided:
                self._record_together(commands, decided, results)
        return [r if r is not None else RuntimeError("no result") for r in results]

    def _decide_together(
        self, commands: Sequence[Command], results: list[Outcome | Exception | None]
    ) -> list[tuple[int, tuple[Aggregate, ...]]]:
        """Each command decides on its account's roster, read with the others'
        (_fast_forward); one that fails or changes nothing has its result now."""
        decided: list[tuple[int, tuple[Aggregate, ...]]] = []
        try:
            self._group.rosters = self._fast_forward([roster_id(c.account_id) for c in commands])
        except (OperationalError, InterfaceError) as e:
            # The database is out of reach. Alone, each command would meet this
            # error in its own thread; here they would meet it one connect timeout
            # after another (an outage's answers took 4 s instead of 1).
            results[:] = [e] * len(commands)
            return decided
        except Exception:
            # Each command reads its roster itself (and meets the error itself, if it lasts).
            log.warning("a group's rosters could not be read together", exc_info=True)
        head: int | None = None  # the log's head, read once for the group's commands that change nothing
        try:
            for i, command in enumerate(commands):
                try:
                    aggregates = command.decide()
                except (OperationalError, InterfaceError) as e:
                    # As above: every command without an answer yet (the rest, and
                    # those decided, whose save would meet it too) fails alike.
                    results[:] = [e if r is None else r for r in results]
                    return []
                except Exception as e:
                    results[i] = e
                    continue
                if any(a.pending_events for a in aggregates):
                    decided.append((i, aggregates))
                else:
                    if head is None:
                        head = self.recorder.max_notification_id() or 0
                    results[i] = Outcome(command.profile_id, head, None, 1, _roster_version(aggregates))
        finally:
            self._group.rosters = None
        return decided

    def _fast_forward(self, aggregate_ids: list[UUID]) -> dict[UUID, Any]:
        """The cached ones of these aggregates brought up to date with ONE query
        (each would otherwise be read on its own, a round trip each), and kept
        so in the cache; those not cached are left to the repository."""
        select = getattr(self.recorder, "select_events_after", None)
        cache = self.repository.cache
        if select is None or cache is None or not self.repository.fastforward:
            return {}
        cached: dict[UUID, Any] = {}
        for aggregate_id in aggregate_ids:
            with contextlib.suppress(KeyError):
                cached[aggregate_id] = cache.get(aggregate_id)
        if not cached:
            return {}
        new_events: defaultdict[UUID, list[Any]] = defaultdict(list)
        for stored in select({i: a.version for i, a in cached.items()}):
            new_events[stored.originator_id].append(self.mapper.to_domain_event(stored))
        fresh = {}
        for aggregate_id, aggregate in cached.items():
            if aggregate_id in new_events:
                # A copy: the cached object stays as another thread may be reading it.
                aggregate = project(deepcopy(aggregate), new_events[aggregate_id])
                cache.put(aggregate_id, aggregate)
            fresh[aggregate_id] = aggregate
        return fresh

    def _record_together(
        self,
        commands: Sequence[Command],
        decided: list[tuple[int, tuple[Aggregate, ...]]],
        results: list[Outcome | Exception | None],
    ) -> None:
        sizes = [sum(len(a.pending_events) for a in aggregates) for _, aggregates in decided]
        group: ProcessingEvent[UUID] = ProcessingEvent()
        # command_sizes: where each command's events start (the sealing mapper
        # seals a roster's events under ITS command's profile's key).
        group.collect_events(*(a for _, aggregates in decided for a in aggregates), command_sizes=sizes)
        try:
            # Application.save's steps, split where the transaction has committed.
            recordings: list[Recording[UUID]] = self._record(group)
        except (OperationalError, InterfaceError) as e:
            for i, _ in decided:  # the connection failed: as it would have for each
                results[i] = e
            return
        except Exception:
            for i, _ in decided:
                command = commands[i]
                try:  # (the caller holds the stripes already)
                    results[i] = self._attempt(command.profile_id, command.decide, command.cause, 2)
                except Exception as e:
                    results[i] = e
            return
        start = 0
        cache = self.repository.cache
        for (i, aggregates), size in zip(decided, sizes, strict=True):
            start += size
            position = recordings[start - 1].notification.id
            results[i] = Outcome(commands[i].profile_id, position, None, 1, _roster_version(aggregates))
            for aggregate in aggregates:
                if cache is not None and isinstance(aggregate, Roster):
                    # As stored (its chain's head is the stored event's hash; asked
                    # before the snapshots below, whose save the mapper would tell of
                    # instead): the account's next group reads only what others stored since.
                    aggregate.chain_head = self.stored_chain_head(aggregate.chain_head)
                    cache.put(aggregate.id, aggregate)
        try:
            self._take_snapshots(group)
            self._notify(recordings)
        except Exception as e:
            for i, _ in decided:  # stored, then failed: as it would have for each
                results[i] = e

    def _attempt(
        self,
        profile_id: UUID,
        decide: Callable[[], tuple[Aggregate, ...]],
        cause: Cause,
        first_attempt: int = 1,
    ) -> Outcome:
        """first_attempt 2: the command's first try, in a group, did not commit
        (it still gets one attempt of its own, whatever max_attempts says)."""
        last = max(first_attempt, self.max_attempts)
        for attempt in range(first_attempt, last + 1):
            aggregates = decide()
            roster_version = _roster_version(aggregates)
            if not any(a.pending_events for a in aggregates):
                head = self.recorder.max_notification_id() or 0
                return Outcome(profile_id, head, None, attempt, roster_version)
            try:
                # An idempotency key is marked used in the events' own transaction.
                mark = (*cause.idempotency, str(profile_id)) if cause.idempotency else None
                recordings = self.save(*aggregates, idempotency=mark)
            except IntegrityError:
                if attempt == last:
                    break
                # Jittered exponential backoff so that racing writers spread out.
                self._sleep(random.uniform(0, self.backoff_seconds * 2 ** min(attempt, 6)))
                continue
            position = recordings[-1].notification.id
            return Outcome(profile_id, position, None, attempt, roster_version)
        raise ConcurrencyConflict(
            f"gave up after {self.max_attempts} attempts: other changes to this account kept winning"
        )


def _roster_version(aggregates: Sequence[Aggregate]) -> int | None:
    """The version of the command's roster, if it changed or read one."""
    return next((a.version for a in aggregates if isinstance(a, Roster)), None)
