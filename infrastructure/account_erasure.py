"""Erasing an account: every profile erased (as DELETE /v1/profiles/{id}
does), the account's own key destroyed, every token revoked, its name removed.

Every profile is checked before any is erased, so an account with events
stored before encryption is refused as a whole, never erased in part."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from domain.errors import ProfileErased
from domain.roster import Roster, roster_id
from domain.service import Cause, ProfilesService
from infrastructure.accounts import Accounts


class NoSuchAccount(Exception):
    """The account id names no account."""


@dataclass(frozen=True)
class AccountErasure:
    account_id: str
    erased: list[UUID] = field(default_factory=list)  # profiles erased now
    already: list[UUID] = field(default_factory=list)  # profiles erased before
    tokens_revoked: int = 0
    position: int = 0


def _profiles_of(app: ProfilesService, account_id: str) -> list[UUID]:
    """Every profile the account ever had: each joined its roster when created,
    so the roster's events name them all (the read table may lag)."""
    found: dict[UUID, None] = {}
    for event in app.repository.event_store.get(roster_id(account_id)):
        if isinstance(event, Roster.MemberAdded):
            found.setdefault(UUID(event.profile_id))
    return list(found)


def erase_account(app: ProfilesService, accounts: Accounts, account_id: str, cause: Cause) -> AccountErasure:
    if not accounts.exists(account_id):
        raise NoSuchAccount(f"no account {account_id}")
    profiles = _profiles_of(app, account_id)
    for profile_id in profiles:
        app.check_erasable(profile_id)
    erased, already = [], []
    for profile_id in profiles:
        profile = app.get_profile(profile_id)
        if profile.erased:
            app.forget(profile_id)  # idempotent: completes an erasure cut short
            already.append(profile_id)
            continue
        try:
            app.erase(account_id, profile_id, cause)
        except ProfileErased:
            already.append(profile_id)
        else:
            erased.append(profile_id)
    app.forget(roster_id(account_id))  # the account's own key (reasons of its default changes)
    revoked = accounts.erase(account_id)
    position = app.recorder.max_notification_id() or 0
    return AccountErasure(account_id, erased, already, revoked, position)
