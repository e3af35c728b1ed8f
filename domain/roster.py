"""The Roster aggregate: one per account, the consistency boundary of the
one-default rule. Every membership change saves the roster together with the
profile, so two racing writers collide on the roster's next version."""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.chain import ChainedAggregate
from domain.errors import InvalidSuccessor, NotAnActiveMember

ROSTER_NAMESPACE = uuid5(NAMESPACE_URL, "https://racer-profiles/roster")


def roster_id(account_id: str) -> UUID:
    return uuid5(ROSTER_NAMESPACE, account_id)


class Roster(ChainedAggregate):
    """Active members (profile id -> creation time) and the default member.

    Invariant: members non-empty <=> default is not None, and default in members.
    """

    class Created(ChainedAggregate.Created):
        account_id: str
        actor: str
        reason: str | None
        request_id: str | None

    @event(Created)
    def __init__(
        self,
        id: UUID,
        account_id: str,
        actor: str,
        reason: str | None,
        request_id: str | None,
    ) -> None:
        self.account_id = account_id
        self.members: dict[str, str] = {}
        self.default: str | None = None

    @classmethod
    def open(
        cls, account_id: str, actor: str, reason: str | None = None, request_id: str | None = None
    ) -> Roster:
        return cls(
            id=roster_id(account_id),
            account_id=account_id,
            actor=actor,
            reason=reason,
            request_id=request_id,
        )

    # --- commands -------------------------------------------------------

    def join(
        self,
        profile_id: UUID,
        created_at: str,
        actor: str,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> None:
        """An active profile joins; the first one becomes the default."""
        member = str(profile_id)
        if member in self.members:
            return
        self._member_added(
            profile_id=member, created_at=created_at, actor=actor, reason=reason, request_id=request_id
        )
        if self.default is None:
            self._change_default(member, actor, reason, request_id)

    def leave(
        self,
        profile_id: UUID,
        successor: UUID | None,
        actor: str,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> None:
        """A profile leaves (is archived); a leaving default hands over to the
        successor, or else to the earliest-created remaining member."""
        member = self._check_member(profile_id)
        if successor is not None:
            heir = str(successor)
            if heir == member or heir not in self.members:
                raise InvalidSuccessor(f"successor {heir} is not another active profile of this account")
        was_default = self.default == member
        self._member_removed(profile_id=member, actor=actor, reason=reason, request_id=request_id)
        if was_default:
            if successor is not None:
                new_default: str | None = str(successor)
            else:
                new_default = self.earliest_member()
            self._change_default(new_default, actor, reason, request_id)

    def set_default(
        self, profile_id: UUID, actor: str, reason: str | None = None, request_id: str | None = None
    ) -> None:
        member = self._check_member(profile_id)
        if self.default != member:
            self._change_default(member, actor, reason, request_id)

    def __deepcopy__(self, memo: dict[int, Any]) -> Roster:
        """The library's aggregate cache hands each command a deep copy of the
        cached roster, and copy.deepcopy walked every member: 180 us a command
        at 600 members. Members are str -> str and the rest of the state is
        immutable values, so copying the two containers is a complete copy."""
        copied = object.__new__(type(self))
        copied.__dict__.update(self.__dict__)
        copied.members = dict(self.members)
        copied._pending_events = list(self._pending_events)
        memo[id(self)] = copied
        return copied

    # --- queries --------------------------------------------------------

    def earliest_member(self) -> str | None:
        if not self.members:
            return None
        return min(self.members, key=lambda m: (self.members[m], m))

    def _check_member(self, profile_id: UUID) -> str:
        member = str(profile_id)
        if member not in self.members:
            raise NotAnActiveMember(f"profile {member} is not an active profile of this account")
        return member

    def _change_default(
        self, new: str | None, actor: str, reason: str | None, request_id: str | None
    ) -> None:
        self._default_changed(
            previous=self.default, new=new, actor=actor, reason=reason, request_id=request_id
        )

    # --- events ---------------------------------------------------------

    class MemberAdded(ChainedAggregate.Event):
        profile_id: str
        created_at: str
        actor: str
        reason: str | None
        request_id: str | None

    class MemberRemoved(ChainedAggregate.Event):
        profile_id: str
        actor: str
        reason: str | None
        request_id: str | None

    class DefaultChanged(ChainedAggregate.Event):
        previous: str | None
        new: str | None
        actor: str
        reason: str | None
        request_id: str | None

    @event(MemberAdded)
    def _member_added(
        self, profile_id: str, created_at: str, actor: str, reason: str | None, request_id: str | None
    ) -> None:
        self.members[profile_id] = created_at

    @event(MemberRemoved)
    def _member_removed(
        self, profile_id: str, actor: str, reason: str | None, request_id: str | None
    ) -> None:
        del self.members[profile_id]

    @event(DefaultChanged)
    def _default_changed(
        self,
        previous: str | None,
        new: str | None,
        actor: str,
        reason: str | None,
        request_id: str | None,
    ) -> None:
        self.default = new
