"""The audit index: where each event is listed, so that a profile's history, its
past states, the default timeline and an account's export read a page of
entries instead of decoding every event of the account.

Pure (event in, index entry out): the runner, the inline projection and the
rebuild all list events through changes_for."""

from __future__ import annotations

from functools import singledispatch
from uuid import UUID

from domain.profile import RacerProfile
from domain.roster import Roster
from projections.rows import ListEvent

JOINED = "joined the active profiles"
LEFT = "left the active profiles"
BECAME_DEFAULT = "became the default"
STOPPED_DEFAULT = "stopped being the default"


@singledispatch
def history_entry(event: object) -> list[ListEvent]:
    """Events of no known aggregate are not listed."""
    return []


@history_entry.register
def _(e: RacerProfile.Event) -> list[ListEvent]:
    # Every profile event, those of later kinds included: a profile's own events
    # are all in its history and its account's export.
    account = getattr(e, "account_id", None) if isinstance(e, RacerProfile.Created) else None
    return [ListEvent(e.timestamp, account, e.originator_id, ((e.originator_id, None),))]


@history_entry.register
def _(e: Roster.Event) -> list[ListEvent]:
    if isinstance(e, Roster.Created):
        return [ListEvent(e.timestamp, e.account_id, None)]
    if isinstance(e, Roster.MemberAdded):
        return [ListEvent(e.timestamp, None, UUID(e.profile_id), ((UUID(e.profile_id), JOINED),))]
    if isinstance(e, Roster.MemberRemoved):
        return [ListEvent(e.timestamp, None, UUID(e.profile_id), ((UUID(e.profile_id), LEFT),))]
    if isinstance(e, Roster.DefaultChanged) and (e.new or e.previous):
        concerned = [(UUID(e.new), BECAME_DEFAULT)] if e.new else []
        if e.previous:
            concerned.append((UUID(e.previous), STOPPED_DEFAULT))
        return [ListEvent(e.timestamp, None, concerned[0][0], tuple(concerned), default_change=True)]
    # A roster event naming no profile has no row to find its account by.
    return []
