"""Dependencies shared by the routers, as Annotated aliases."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import unquote
from uuid import UUID

import anyio.to_thread
from fastapi import Depends, Header, Query, Request

from api.problems import Problem, invalid, not_found
from api.responses import wait_until
from domain.errors import InvalidValue
from domain.service import Cause
from domain.values import clean_reason
from infrastructure.accounts import Principal
from infrastructure.async_queries import AsyncProfileQueries
from infrastructure.audit import Audit, ProfileRef
from infrastructure.container import Container

# Dependencies that do no I/O are `async def`: FastAPI runs a sync dependency
# in the thread pool, one hop per dependency per request.


async def get_container(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_async_queries(request: Request) -> AsyncProfileQueries:
    return request.app.state.async_queries  # type: ignore[no-any-return]


AsyncQueriesDep = Annotated[AsyncProfileQueries, Depends(get_async_queries)]

UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="racer-profiles"'}


async def get_principal(
    request: Request,
    container: ContainerDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    if not authorization:
        raise Problem.of("unauthorized", "missing bearer token", UNAUTHORIZED)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem.of("unauthorized", "expected 'Bearer <token>'", UNAUTHORIZED)
    principal = container.accounts.cached(token.strip())
    if principal is None:  # not cached: the lookup blocks, so it runs in a thread
        principal = await anyio.to_thread.run_sync(container.accounts.authenticate, token.strip())
    if principal is None:
        raise Problem.of("unauthorized", "invalid token", UNAUTHORIZED)
    request.state.account_id = principal.account_id  # for the access log
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def a_role(role: str) -> str:
    """ "an auditor", "an admin", "an owner": the role with its article."""
    return f"{'an' if role[:1] in 'aeiou' else 'a'} {role}"


async def get_owner(principal: PrincipalDep) -> Principal:
    if principal.role != "owner":
        raise Problem.of("forbidden", f"{a_role(principal.role)} token cannot change profiles")
    return principal


OwnerDep = Annotated[Principal, Depends(get_owner)]

READ_ALL_ROLES = ("auditor", "admin")


def scope_of(principal: Principal) -> str | None:
    """The account whose data the principal reads; None: every account (auditors)."""
    return None if principal.role in READ_ALL_ROLES else principal.account_id


AccountQuery = Annotated[
    str | None,
    Query(
        description="auditors and admins: the account to read (ids from `GET /v1/accounts`);"
        " owners: their own account or nothing"
    ),
]


def account_to_read(principal: Principal, account_id: str | None) -> str:
    """The one account a query reads: an owner's own (another one: 404); the one an
    auditor or admin names (required: 422)."""
    scope = scope_of(principal)
    if scope is None:
        if not account_id:
            raise invalid(
                "account_id",
                f"is required for {a_role(principal.role)}",
                f"account_id is required for {a_role(principal.role)} (list accounts with GET /v1/accounts)",
            )
        return account_id
    if account_id not in (None, scope):
        raise not_found("no such account")
    return scope


_ETAG = re.compile(r'^\s*(?:W/)?"(\d{1,9})"\s*$')


async def parse_if_match(
    if_match: Annotated[str | None, Header(description='the ETag ("<version>") the change expects')] = None,
) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    match = _ETAG.match(if_match)
    if not match:
        raise invalid("If-Match", 'must be an ETag like "3"', 'If-Match must be an ETag like "3"')
    return int(match.group(1))


IfMatchDep = Annotated[int | None, Depends(parse_if_match)]


async def wait_for_min_position(
    request: Request,
    principal: PrincipalDep,
    container: ContainerDep,
    queries: AsyncQueriesDep,
    x_min_position: Annotated[
        int | None, Header(ge=0, description="wait until the read table reaches this position")
    ] = None,
) -> int | None:
    """Waits (on the event loop) until the read table shows x_min_position; see wait_until."""
    await wait_until(container.reads, queries, request.app.state.quotas, principal.token_id, x_min_position)
    return x_min_position


MinPositionDep = Annotated[int | None, Depends(wait_for_min_position)]


async def parse_reason(
    x_reason: Annotated[
        str | None,
        Header(
            description=(
                "why (recorded on the events): up to 500 characters, percent-encoded UTF-8"
                " (`%C3%A9` is é; a literal `%` is `%25`), no control, bidi or line-break characters"
            )
        ),
    ] = None,
) -> str | None:
    """HTTP header values are bytes that servers read as latin-1, so UTF-8 sent raw
    turns into mojibake: the header is ASCII, percent-encoded UTF-8 beyond it."""
    if x_reason is None:
        return None
    if not x_reason.isascii():
        # Refused like any other invalid header (422 naming it), not guessed at.
        raise InvalidValue("X-Reason", "must be ASCII: send other characters as percent-encoded UTF-8")
    try:
        decoded = unquote(x_reason, errors="strict")
    except UnicodeDecodeError:
        raise InvalidValue("X-Reason", "its percent-escapes are not UTF-8") from None
    return clean_reason(decoded, "X-Reason")


ReasonHeaderDep = Annotated[str | None, Depends(parse_reason)]


async def get_cause(request: Request, owner: OwnerDep, reason: ReasonHeaderDep) -> Cause:
    """Who (the token's account), why (X-Reason; a body's reason overrides it), which request."""
    return Cause(actor=owner.account_id, reason=reason, request_id=request.state.request_id)


CauseDep = Annotated[Cause, Depends(get_cause)]


def timeline_for(audit: Audit, principal: Principal, profile_id: UUID) -> ProfileRef:
    """The profile if the principal may read it; 404 otherwise."""
    ref = audit.timeline(profile_id)
    scope = scope_of(principal)
    if ref is None or (scope is not None and ref.account_id != scope):
        raise not_found(f"no profile {profile_id} in this account")
    return ref
