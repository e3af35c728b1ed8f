"""AsyncClient: the racer-profiles API over httpx for asyncio, method for method as Client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from racer_profiles_client import _calls as calls
from racer_profiles_client._calls import UNSET, Call, ETag, Id, Page
from racer_profiles_client._core import Core, FollowUp, Options, Retry, StreamCursor
from racer_profiles_client.errors import unreachable
from racer_profiles_client.models import (
    AccountErasure,
    AccountSummary,
    Change,
    DefaultChange,
    ErasureReceipt,
    ExportedEvent,
    Health,
    HistoryEntry,
    IssuedToken,
    NewAccount,
    Profile,
    Readiness,
    Token,
    VehicleInput,
)

T = TypeVar("T")


class AsyncClient:
    """Client for asyncio: the same methods, awaited (iterators are async iterators)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.25,
        read_your_writes: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        options = Options(
            base_url.rstrip("/"),
            token,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            read_your_writes=read_your_writes,
        )
        self._core = Core(options)
        self._http = httpx.AsyncClient(transport=transport, **options.client_kwargs())

    # -- plumbing -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def base_url(self) -> str:
        return self._core.options.base_url

    @property
    def last_position(self) -> int:
        """The highest X-Position seen: what reads wait for."""
        return self._core.positions.highest

    def saw_position(self, position: int) -> None:
        """Reads from now on wait until the service has applied `position`: pass
        the X-Position another process was given, to read its writes here."""
        self._core.positions.raise_to(position)

    async def _run(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = await self._http.request(**self._core.request(call))
            except httpx.TransportError as error:
                if not self._core.may_retry(attempt):
                    raise unreachable(self._core.options.base_url, error) from error
                await asyncio.sleep(self._core.delay(attempt, None))
                attempt += 1
                continue
            step = self._core.outcome(call, response, attempt)
            if isinstance(step, Retry):
                await asyncio.sleep(step.delay)
                attempt += 1
            elif isinstance(step, FollowUp):
                call, attempt = step.call, 0
            else:
                return step.value

    async def _pages(self, call: Call[Page[T]]) -> AsyncIterator[T]:
        following: Call[Page[T]] | None = call
        while following is not None:
            page = await self._run(following)
            for item in page.items:
                yield item
            following = page.next

    # -- profiles -------------------------------------------------------------

    def list_profiles(
        self, include_archived: bool = False, *, page_size: int = 100, account_id: str | None = None
    ) -> AsyncIterator[Profile]:
        """Every profile of the account in creation order, page after page (auditors name the account)."""
        return self._pages(calls.list_profiles(include_archived, page_size, account_id))

    def list_accounts(self, *, page_size: int = 100) -> AsyncIterator[AccountSummary]:
        """Every account with its profile counts (auditor and admin tokens)."""
        return self._pages(calls.list_accounts(page_size))

    async def get_profile(
        self, profile_id: Id, version: int | None = None, as_of: datetime | None = None
    ) -> Profile:
        """The profile now, or as it was at `version` or at the time `as_of`."""
        return await self._run(calls.get_profile_call(profile_id, version, as_of))

    async def get_default(self, account_id: str | None = None) -> Profile | None:
        """The account's default profile; None when it has no active profile (auditors name the account)."""
        return await self._run(calls.get_default_call(account_id=account_id))

    async def set_default(
        self, profile_id: Id, if_match: ETag = None, *, reason: str | None = None
    ) -> Profile:
        """Makes the profile the default; `if_match` is the roster's ETag (`get_default().roster_etag`)."""
        return await self._run(calls.set_default(profile_id, if_match, reason))

    async def create_profile(
        self,
        name: str,
        vehicles: Iterable[VehicleInput] = (),
        details: Mapping[str, Any] | None = None,
        *,
        reason: str | None = None,
    ) -> Profile:
        return await self._run(calls.create_profile(name, vehicles, details, reason))

    async def rename(
        self, profile_id: Id, name: str, if_match: ETag = None, *, reason: str | None = None
    ) -> Profile:
        return await self._run(calls.rename(profile_id, name, if_match, reason))

    async def archive(
        self,
        profile_id: Id,
        successor_id: Id | None = None,
        if_match: ETag = None,
        *,
        reason: str | None = None,
    ) -> Profile:
        return await self._run(calls.archive(profile_id, successor_id, if_match, reason))

    async def restore(self, profile_id: Id, if_match: ETag = None, *, reason: str | None = None) -> Profile:
        return await self._run(calls.restore(profile_id, if_match, reason))

    async def add_vehicle(
        self,
        profile_id: Id,
        name: str,
        vehicle_class: str | None = None,
        race_number: str | None = None,
        if_match: ETag = None,
        *,
        reason: str | None = None,
    ) -> Profile:
        return await self._run(
            calls.add_vehicle(profile_id, name, vehicle_class, race_number, if_match, reason)
        )

    async def change_vehicle(
        self,
        profile_id: Id,
        vehicle_id: Id,
        *,
        name: str = UNSET,
        vehicle_class: str | None = UNSET,
        race_number: str | None = UNSET,
        if_match: ETag = None,
        reason: str | None = None,
    ) -> Profile:
        """Changes the fields given; None clears vehicle_class or race_number."""
        changes = {"name": name, "vehicle_class": vehicle_class, "race_number": race_number}
        return await self._run(calls.change_vehicle(profile_id, vehicle_id, changes, if_match, reason))

    async def remove_vehicle(
        self, profile_id: Id, vehicle_id: Id, if_match: ETag = None, *, reason: str | None = None
    ) -> Profile:
        return await self._run(calls.remove_vehicle(profile_id, vehicle_id, if_match, reason))

    async def erase(
        self,
        profile_id: Id,
        if_match: ETag = None,
        *,
        successor_id: Id | None = None,
        reason: str | None = None,
    ) -> ErasureReceipt:
        """Erases the profile for good (archived first; successor_id takes over the default).
        Afterwards it answers Gone (410); its history stays, personal fields erased."""
        return await self._run(calls.erase(profile_id, successor_id, if_match, reason))

    async def erase_account(self, account_id: str, *, reason: str | None = None) -> AccountErasure:
        """Admin tokens: erases every profile of the account, revokes its tokens, removes its name."""
        return await self._run(calls.erase_account(account_id, reason))

    # -- audit ----------------------------------------------------------------

    def history(self, profile_id: Id, *, page_size: int = 200) -> AsyncIterator[HistoryEntry]:
        """Every event of the profile (and of its roster about it), oldest first."""
        return self._pages(calls.history(profile_id, page_size))

    def default_timeline(
        self, account_id: str | None = None, *, page_size: int = 200
    ) -> AsyncIterator[DefaultChange]:
        return self._pages(calls.default_timeline(account_id, page_size))

    def export_events(self, after: int = 0, *, page_size: int = 10_000) -> AsyncIterator[ExportedEvent]:
        return self._pages(calls.export_events(after, page_size))

    # -- tokens (any token: its own account's) and accounts (admin tokens) ------

    async def tokens(self, include_revoked: bool = False) -> list[Token]:
        """The tokens of this token's account (never their secrets)."""
        return await self._run(calls.tokens(include_revoked))

    async def revoke_token(self, token_id: str) -> None:
        """Revokes one of the account's live tokens (NotFound otherwise)."""
        await self._run(calls.revoke_token(token_id))

    async def create_account(
        self,
        name: str,
        role: str = "owner",
        *,
        token_name: str | None = None,
        token_expires_at: datetime | None = None,
    ) -> NewAccount:
        """Admin: an account and its first token (`.token.token`, shown this once)."""
        return await self._run(calls.create_account(name, role, token_name, token_expires_at))

    async def account_tokens(self, account_id: Id, include_revoked: bool = False) -> list[Token]:
        """Admin: any account's tokens."""
        return await self._run(calls.account_tokens(account_id, include_revoked))

    async def issue_token(self, account_id: Id, name: str, expires_at: datetime | None = None) -> IssuedToken:
        """Admin: a new named token for an account (`.token`, shown this once)."""
        return await self._run(calls.issue_token(account_id, name, expires_at))

    async def revoke_any_token(self, token_id: str) -> None:
        """Admin: revokes any live token."""
        await self._run(calls.revoke_any_token(token_id))

    # -- operations -----------------------------------------------------------

    async def health(self) -> Health:
        return await self._run(calls.health())

    async def readiness(self) -> Readiness:
        return await self._run(calls.readiness())

    async def metrics(self) -> str:
        return await self._run(calls.metrics())

    # -- the live stream ------------------------------------------------------

    async def changes(self, last_event_id: int | None = None) -> AsyncIterator[Change]:
        """The account's profile changes, live, as Profiles with their `position`, and
        a ProfileErased (its id, `erased_at`, `position`) when a profile is erased.

        Without `last_event_id` it starts with every profile of the account. A
        dropped connection is resumed with Last-Event-ID (nothing is lost); it
        gives up with ServiceUnreachable after `retries` failed reconnections
        in a row. Break out of the loop (or close the generator) to stop."""
        stream = StreamCursor(self._core, last_event_id)
        while True:
            try:
                async with self._http.stream(**stream.request()) as response:
                    if response.status_code != 200:
                        await response.aread()
                        await asyncio.sleep(stream.refused(response))
                        continue
                    stream.connected()
                    async for line in response.aiter_lines():
                        if (change := stream.feed(line)) is not None:
                            yield change
            except httpx.TransportError as error:
                stream.dropped(error)
            await asyncio.sleep(stream.wait)  # the server ended the stream, or the connection broke
