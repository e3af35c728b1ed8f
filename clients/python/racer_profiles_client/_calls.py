"""Each API operation as a description of its request and of how to read its
answer, shared by Client and AsyncClient (which only send them)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import httpx

from racer_profiles_client.models import (
    Accepted,
    AccountErasure,
    AccountSummary,
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
Id = UUID | str  # a profile, vehicle or token id as the caller holds it
ETag = str | int | None  # an ETag as received, or the version it names

# operationId in openapi.json -> (client method, HTTP method, path). A test
# fails when openapi.json has an operation missing here or on either client.
OPERATIONS: dict[str, tuple[str, str, str]] = {
    "healthz": ("health", "GET", "/healthz"),
    "readyz": ("readiness", "GET", "/readyz"),
    "metrics": ("metrics", "GET", "/metrics"),
    "list_profiles": ("list_profiles", "GET", "/v1/profiles"),
    "create_profile": ("create_profile", "POST", "/v1/profiles"),
    "get_default": ("get_default", "GET", "/v1/profiles/default"),
    "set_default": ("set_default", "PUT", "/v1/profiles/default"),
    "profile_stream": ("changes", "GET", "/v1/profiles/stream"),
    "get_profile": ("get_profile", "GET", "/v1/profiles/{profile_id}"),
    "rename_profile": ("rename", "PATCH", "/v1/profiles/{profile_id}"),
    "erase_profile": ("erase", "DELETE", "/v1/profiles/{profile_id}"),
    "erase_account": ("erase_account", "DELETE", "/v1/admin/accounts/{account_id}"),
    "archive_profile": ("archive", "POST", "/v1/profiles/{profile_id}/archive"),
    "restore_profile": ("restore", "POST", "/v1/profiles/{profile_id}/restore"),
    "add_vehicle": ("add_vehicle", "POST", "/v1/profiles/{profile_id}/vehicles"),
    "change_vehicle": ("change_vehicle", "PATCH", "/v1/profiles/{profile_id}/vehicles/{vehicle_id}"),
    "remove_vehicle": ("remove_vehicle", "DELETE", "/v1/profiles/{profile_id}/vehicles/{vehicle_id}"),
    "profile_history": ("history", "GET", "/v1/profiles/{profile_id}/history"),
    "default_timeline": ("default_timeline", "GET", "/v1/audit/defaults"),
    "export_events": ("export_events", "GET", "/v1/audit/events"),
    "list_accounts": ("list_accounts", "GET", "/v1/accounts"),
    "list_tokens": ("tokens", "GET", "/v1/tokens"),
    "revoke_token": ("revoke_token", "DELETE", "/v1/tokens/{token_id}"),
    "create_account": ("create_account", "POST", "/v1/admin/accounts"),
    "list_account_tokens": ("account_tokens", "GET", "/v1/admin/accounts/{account_id}/tokens"),
    "issue_token": ("issue_token", "POST", "/v1/admin/accounts/{account_id}/tokens"),
    "revoke_any_token": ("revoke_any_token", "DELETE", "/v1/admin/tokens/{token_id}"),
}


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""An argument not given (change_vehicle: None clears a field, UNSET leaves it)."""


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and how its answer becomes a T. A command carries one
    Idempotency-Key for all its retries (a Call is retried as it is)."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    command: bool = False
    read: bool = False  # sends X-Min-Position (read-your-writes)
    ok: tuple[int, ...] = (200,)
    # 202 Accepted: the change is stored; this read gets its result once visible.
    accepted: Callable[[Accepted], Call[T]] | None = None
    # 404 answers this instead of raising (get_default: None).
    missing: Callable[[], T] | None = None
    min_position: int | None = None
    idempotency_key: str = field(default_factory=lambda: f"rpc-{uuid.uuid4().hex}")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next: Call[Page[T]] | None


def _position(response: httpx.Response) -> int | None:
    value = response.headers.get("X-Position")
    return int(value) if value and value.isdigit() else None


def _profile(response: httpx.Response) -> Profile:
    return Profile.model_validate({**response.json(), "position": _position(response)})


def _default(response: httpx.Response) -> Profile:
    data = {**response.json(), "position": _position(response), "roster_etag": response.headers.get("ETag")}
    return Profile.model_validate(data)


def _command_headers(if_match: str | int | None) -> dict[str, str]:
    if if_match is None:
        return {}
    return {"If-Match": f'"{if_match}"' if isinstance(if_match, int) else if_match}


def _with_reason(body: dict[str, Any], reason: str | None) -> dict[str, Any]:
    return {**body, "reason": reason} if reason is not None else body


def get_profile_call(
    profile_id: UUID | str,
    version: int | None = None,
    as_of: datetime | None = None,
    min_position: int | None = None,
) -> Call[Profile]:
    params: dict[str, Any] = {}
    if version is not None:
        params["version"] = version
    if as_of is not None:
        params["as_of"] = as_of.isoformat()
    return Call(
        "GET", f"/v1/profiles/{profile_id}", _profile, params=params, read=True, min_position=min_position
    )


def _at(position: int, parse: Callable[[httpx.Response], Profile]) -> Callable[[httpx.Response], Profile]:
    """The read after a 202 answers with the command's own position."""
    return lambda response: parse(response).model_copy(update={"position": position})


def _after_accepted(accepted: Accepted) -> Call[Profile]:
    call = get_profile_call(accepted.profile_id, min_position=accepted.position)
    return replace(call, parse=_at(accepted.position, _profile))


def _profile_command(
    method: str, path: str, body: Any, if_match: str | int | None, status: int = 200
) -> Call[Profile]:
    return Call(
        method,
        path,
        _profile,
        body=body,
        headers=_command_headers(if_match),
        command=True,
        ok=(status,),
        accepted=_after_accepted,
    )


def create_profile(
    name: str, vehicles: Iterable[VehicleInput], details: Mapping[str, Any] | None, reason: str | None
) -> Call[Profile]:
    body: dict[str, Any] = {"name": name, "vehicles": list(vehicles)}
    if details is not None:
        body["details"] = dict(details)
    return _profile_command("POST", "/v1/profiles", _with_reason(body, reason), None, status=201)


def get_default_call(min_position: int | None = None, account_id: str | None = None) -> Call[Profile | None]:
    return Call(
        "GET",
        "/v1/profiles/default",
        _default,
        params={"account_id": account_id} if account_id is not None else None,
        read=True,
        missing=lambda: None,
        min_position=min_position,
    )


def _default_after_accepted(accepted: Accepted) -> Call[Profile]:
    parse = _at(accepted.position, _default)
    return Call("GET", "/v1/profiles/default", parse, read=True, min_position=accepted.position)


def set_default(profile_id: UUID | str, if_match: str | int | None, reason: str | None) -> Call[Profile]:
    body = _with_reason({"profile_id": str(profile_id)}, reason)
    return Call(
        "PUT",
        "/v1/profiles/default",
        _default,
        body=body,
        headers=_command_headers(if_match),
        command=True,
        accepted=_default_after_accepted,
    )


def rename(
    profile_id: UUID | str, name: str, if_match: str | int | None, reason: str | None
) -> Call[Profile]:
    return _profile_command(
        "PATCH", f"/v1/profiles/{profile_id}", _with_reason({"name": name}, reason), if_match
    )


def archive(
    profile_id: UUID | str, successor_id: UUID | str | None, if_match: str | int | None, reason: str | None
) -> Call[Profile]:
    body = {"successor_id": str(successor_id)} if successor_id is not None else {}
    return _profile_command(
        "POST", f"/v1/profiles/{profile_id}/archive", _with_reason(body, reason), if_match
    )


def restore(profile_id: UUID | str, if_match: str | int | None, reason: str | None) -> Call[Profile]:
    return _profile_command("POST", f"/v1/profiles/{profile_id}/restore", _with_reason({}, reason), if_match)


def add_vehicle(
    profile_id: UUID | str,
    name: str,
    vehicle_class: str | None,
    race_number: str | None,
    if_match: str | int | None,
    reason: str | None,
) -> Call[Profile]:
    body: dict[str, Any] = {"name": name}
    if vehicle_class is not None:
        body["vehicle_class"] = vehicle_class
    if race_number is not None:
        body["race_number"] = race_number
    return _profile_command(
        "POST", f"/v1/profiles/{profile_id}/vehicles", _with_reason(body, reason), if_match, status=201
    )


def change_vehicle(
    profile_id: UUID | str,
    vehicle_id: UUID | str,
    changes: Mapping[str, Any],
    if_match: str | int | None,
    reason: str | None,
) -> Call[Profile]:
    body = _with_reason({k: v for k, v in changes.items() if v is not UNSET}, reason)
    return _profile_command("PATCH", f"/v1/profiles/{profile_id}/vehicles/{vehicle_id}", body, if_match)


def remove_vehicle(
    profile_id: UUID | str, vehicle_id: UUID | str, if_match: str | int | None, reason: str | None
) -> Call[Profile]:
    call = _profile_command("DELETE", f"/v1/profiles/{profile_id}/vehicles/{vehicle_id}", None, if_match)
    if reason is None:
        return call
    return replace(call, headers={**call.headers, "X-Reason": reason})


def erase(
    profile_id: UUID | str, successor_id: UUID | str | None, if_match: str | int | None, reason: str | None
) -> Call[ErasureReceipt]:
    headers = _command_headers(if_match)
    if reason is not None:
        headers["X-Reason"] = reason
    return Call(
        "DELETE",
        f"/v1/profiles/{profile_id}",
        lambda response: ErasureReceipt.model_validate(response.json()),
        params={"successor_id": str(successor_id)} if successor_id is not None else None,
        headers=headers,
        command=True,
    )


def erase_account(account_id: str, reason: str | None) -> Call[AccountErasure]:
    return Call(
        "DELETE",
        f"/v1/admin/accounts/{account_id}",
        lambda response: AccountErasure.model_validate(response.json()),
        headers={"X-Reason": reason} if reason is not None else {},
        command=True,
    )


def _paged(path: str, params: dict[str, Any], item: Callable[[Any], T], read: bool = False) -> Call[Page[T]]:
    def parse(response: httpx.Response) -> Page[T]:
        data = response.json()
        cursor = data.get("next_cursor")
        following = _paged(path, {**params, "cursor": cursor}, item, read) if cursor else None
        return Page([item(entry) for entry in data["items"]], following)

    return Call("GET", path, parse, params=params, read=read)


def list_profiles(
    include_archived: bool, page_size: int, account_id: str | None = None
) -> Call[Page[Profile]]:
    params: dict[str, Any] = {"include_archived": "true" if include_archived else "false", "limit": page_size}
    if account_id is not None:
        params["account_id"] = account_id
    return _paged("/v1/profiles", params, Profile.model_validate, read=True)


def list_accounts(page_size: int) -> Call[Page[AccountSummary]]:
    return _paged("/v1/accounts", {"limit": page_size}, AccountSummary.model_validate)


def history(profile_id: UUID | str, page_size: int) -> Call[Page[HistoryEntry]]:
    return _paged(f"/v1/profiles/{profile_id}/history", {"limit": page_size}, HistoryEntry.model_validate)


def default_timeline(account_id: str | None, page_size: int) -> Call[Page[DefaultChange]]:
    params: dict[str, Any] = {"limit": page_size}
    if account_id is not None:
        params["account_id"] = account_id
    return _paged("/v1/audit/defaults", params, DefaultChange.model_validate)


def export_events(after: int, page_size: int) -> Call[Page[ExportedEvent]]:
    """The NDJSON export, a page of `page_size` events at a time, resumed after the last one."""

    def parse(response: httpx.Response) -> Page[ExportedEvent]:
        events = [
            ExportedEvent.model_validate(json.loads(line)) for line in response.text.splitlines() if line
        ]
        full = len(events) == page_size
        return Page(events, export_events(events[-1].position, page_size) if full else None)

    return Call("GET", "/v1/audit/events", parse, params={"after": after, "limit": page_size})


def health() -> Call[Health]:
    return Call("GET", "/healthz", lambda r: Health.model_validate(r.json()))


def readiness() -> Call[Readiness]:
    # 503 answers "not ready" with the same shape: an answer, not an error.
    return Call("GET", "/readyz", lambda r: Readiness.model_validate(r.json()), ok=(200, 503))


def metrics() -> Call[str]:
    return Call("GET", "/metrics", lambda r: r.text)


# -- tokens and accounts (their commands take no Idempotency-Key) ----------------


def _tokens(response: httpx.Response) -> list[Token]:
    return [Token.model_validate(item) for item in response.json()["items"]]


def _revoked(response: httpx.Response) -> None:
    return None


def tokens(include_revoked: bool) -> Call[list[Token]]:
    return Call(
        "GET", "/v1/tokens", _tokens, params={"include_revoked": "true" if include_revoked else "false"}
    )


def revoke_token(token_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/tokens/{token_id}", _revoked, ok=(204,))


def create_account(
    name: str, role: str, token_name: str | None, token_expires_at: datetime | None
) -> Call[NewAccount]:
    body: dict[str, Any] = {"name": name, "role": role}
    if token_name is not None:
        body["token_name"] = token_name
    if token_expires_at is not None:
        body["token_expires_at"] = token_expires_at.isoformat()
    return Call(
        "POST", "/v1/admin/accounts", lambda r: NewAccount.model_validate(r.json()), body=body, ok=(201,)
    )


def account_tokens(account_id: UUID | str, include_revoked: bool) -> Call[list[Token]]:
    params = {"include_revoked": "true" if include_revoked else "false"}
    return Call("GET", f"/v1/admin/accounts/{account_id}/tokens", _tokens, params=params)


def issue_token(account_id: UUID | str, name: str, expires_at: datetime | None) -> Call[IssuedToken]:
    body: dict[str, Any] = {"name": name}
    if expires_at is not None:
        body["expires_at"] = expires_at.isoformat()
    return Call(
        "POST",
        f"/v1/admin/accounts/{account_id}/tokens",
        lambda r: IssuedToken.model_validate(r.json()),
        body=body,
        ok=(201,),
    )


def revoke_any_token(token_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/admin/tokens/{token_id}", _revoked, ok=(204,))
