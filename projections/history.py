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
    account = e.account_id if isinstance(e, RacerProfile.Created) else None
    return [ListEvent(e.timestamp, account, account_of=e.originator_id, profiles=((e.originator_id, None),))]


@history_entry.register
def _(e: Roster.Event) -> list[ListEvent]:
    # The roster names its account once, in its first event; the others are
    # listed under the account remembered for the roster (not through a member
    # profile, whose own first event may come later in the log).
    roster = e.originator_id
    if isinstance(e, Roster.Created):
        return [ListEvent(e.timestamp, e.account_id, roster=roster)]
    if isinstance(e, Roster.MemberAdded):
        return [ListEvent(e.timestamp, None, roster=roster, profiles=((UUID(e.profile_id), JOINED),))]
    if isinstance(e, Roster.MemberRemoved):
        return [ListEvent(e.timestamp, None, roster=roster, profiles=((UUID(e.profile_id), LEFT),))]
    if isinstance(e, Roster.DefaultChanged):
        concerned = [(UUID(e.new), BECAME_DEFAULT)] if e.new else []
        if e.previous:
            concerned.append((UUID(e.previous), STOPPED_DEFAULT))
        return [ListEvent(e.timestamp, None, roster=roster, profiles=tuple(concerned), default_change=True)]
    return [ListEvent(e.timestamp, None, roster=roster)]
