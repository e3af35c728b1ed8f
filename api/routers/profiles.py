"""/v1/profiles: commands and queries of one account's racer profiles."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import (
    AccountQuery,
    AsyncQueriesDep,
    CauseDep,
    ContainerDep,
    IfMatchDep,
    MinPositionDep,
    OwnerDep,
    PrincipalDep,
    account_to_read,
    scope_of,
    timeline_for,
)
from api.idempotency import idempotent
from api.metrics import counted
from api.openapi import (
    COMMAND_EXTRA,
    PROFILE_LINKS,
    VEHICLE_LINKS,
    command_responses,
    problems,
    profile_ok,
)
from api.path_params import GET_PROFILE_PATH
from api.problems import Problem, invalid, not_found
from api.responses import (
    FastJSONResponse,
    command_response,
    decode_cursor,
    encode_cursor,
    etag,
    profile_response,
    public,
    wait_for,
)
from api.schemas import (
    ArchiveRequest,
    DefaultRequest,
    ErasureReceipt,
    ProfileCreate,
    ProfilePage,
    ProfilePublic,
    ProfileUpdate,
    RestoreRequest,
    VehicleCreate,
    VehicleUpdate,
)
from domain.roster import roster_id
from domain.service import Cause
from domain.values import clean_reason
from infrastructure.async_queries import AsyncProfileQueries
from infrastructure.container import Container

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])
# A uuid5 (a SHA-1 and a UUID made in Python) per GET default: the busiest accounts' are kept.
_roster_of = lru_cache(maxsize=4096)(roster_id)


def _because(cause: Cause, body_reason: str | None) -> Cause:
    """The cause with the body's reason, which wins over X-Reason (checked by the
    rules of names; a blank one leaves X-Reason's)."""
    reason = clean_reason(body_reason, "reason")
    return replace(cause, reason=reason) if reason else cause


def _once(
    request: Request,
    container: Container,
    cause: Cause,
    body: BaseModel | None,
    run: Callable[[Cause], Response],
    status: int = 200,
    location: bool = False,
) -> Response:
    """Runs the command at most once per Idempotency-Key (see api/idempotency.py)."""

    def current(profile_id: str) -> Response:
        # The first request stored its events but died before replying: answer
        # as it would have, from the read table (with the command's own status).
        head = container.audit.log.head()
        wait_for(container.reads, head)
        row = container.queries.get(cause.actor, UUID(profile_id))
        if row is None:
            raise _not_found(UUID(profile_id))
        return profile_response(row, status, position=head, location=location)

    return idempotent(request, container.idempotency, cause, body, counted(request, run), current)


def _not_found(profile_id: UUID) -> Problem:
    return not_found(f"no profile {profile_id} in this account")


@router.post(
    "",
    status_code=201,
    response_model=ProfilePublic,
    summary="Create a profile",
    description=(
        "Creates a profile in the token's account; the account's first active profile becomes its"
        " default. Answers 201 with the profile, `Location`, `ETag` and `X-Position`."
    ),
    responses=command_responses(
        201,
        "The created profile.",
        location="required",
        if_match=False,
        not_found=False,
        links=PROFILE_LINKS,
    ),
    openapi_extra=COMMAND_EXTRA,
)
def create_profile(
    request: Request, body: ProfileCreate, owner: OwnerDep, container: ContainerDep, cause: CauseDep
) -> Response:
    def run(cause: Cause) -> Response:
        outcome = container.app.create_profile(
            owner.account_id,
            body.name,
            [v.model_dump() for v in body.vehicles],
            _because(cause, body.reason),
            details=body.details,
        )
        return command_response(container.reads, owner.account_id, outcome, 201, location=True)

    return _once(request, container, cause, body, run, status=201, location=True)


@router.get(
    "",
    response_model=ProfilePage,
    summary="List the account's profiles",
    description=(
        "The account's profiles in creation order, a page at a time: pass `next_cursor` back as"
        " `cursor` until it is null. Pages are keyset-based, so no profile is skipped or repeated"
        " while others create or archive profiles. Auditors and admins name the account with"
        " `account_id` (422 without it)."
    ),
    responses=problems(
        401, 404, 422, 503, s404="`account_id` names another account than the token's (owners)."
    ),
)
async def list_profiles(
    principal: PrincipalDep,
    container: ContainerDep,
    queries: AsyncQueriesDep,
    min_position: MinPositionDep,
    include_archived: Annotated[bool, Query(description="list archived profiles too")] = False,
    cursor: Annotated[
        str | None, Query(description="the `next_cursor` of the previous page (opaque)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="profiles per page")] = 50,
    account_id: AccountQuery = None,
) -> JSONResponse:
    account = account_to_read(principal, account_id)
    after = decode_cursor(cursor) if cursor else None
    return await profile_page(queries, account, include_archived, after, limit)


async def profile_page(
    queries: AsyncProfileQueries,
    account: str,
    include_archived: bool = False,
    after: tuple[datetime, UUID] | None = None,
    limit: int = 50,
) -> JSONResponse:
    """A page of the account's profiles (also answered by api/fast_reads.py)."""
    rows = await queries.page(account, include_archived=include_archived, after=after, limit=limit + 1)
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return FastJSONResponse({"items": [public(r) for r in rows[:limit]], "next_cursor": next_cursor})


@router.get(
    "/default",
    response_model=ProfilePublic,
    summary="The default profile",
    description=(
        "The account's default profile. Its `ETag` is the version of the account's roster (not of"
        " the profile): send it as `If-Match` on `PUT /v1/profiles/default` to refuse overriding a"
        " default chosen elsewhere in the meantime. Auditors and admins name the account with"
        " `account_id` (422 without it)."
    ),
    responses={
        200: profile_ok("The default profile; ETag is the roster's version.", etag="RosterETag"),
        **problems(
            401,
            404,
            422,
            503,
            s404="The account has no active profile (type `no-default`), or `account_id` names another"
            " account than the token's (owners).",
        ),
    },
)
async def get_default(
    principal: PrincipalDep,
    container: ContainerDep,
    queries: AsyncQueriesDep,
    min_position: MinPositionDep,
    account_id: AccountQuery = None,
) -> JSONResponse:
    return await default_profile(queries, account_to_read(principal, account_id))


async def default_profile(queries: AsyncProfileQueries, account: str) -> JSONResponse:
    """The account's default profile (also answered by api/fast_reads.py)."""
    # The roster's version and the row come from one snapshot: the ETag always
    # names the roster version of the default shown.
    row, roster_version = await queries.default_and_roster_version(account, _roster_of(account))
    if row is None:
        raise Problem.of("no-default", "this account has no active profile")
    response = profile_response(row)
    response.headers["ETag"] = etag(roster_version)
    return response


@router.put(
    "/default",
    response_model=ProfilePublic,
    summary="Set the default profile",
    description=(
        "Makes an active profile the account's default. `If-Match` names the roster's version (the"
        " ETag of `GET /v1/profiles/default`); the answer's ETag is the roster's new version."
    ),
    responses=command_responses(
        200, "The new default profile; ETag is the roster's version.", etag="RosterETag"
    ),
    openapi_extra=COMMAND_EXTRA,
)
def set_default(
    request: Request,
    body: DefaultRequest,
    owner: OwnerDep,
    container: ContainerDep,
    cause: CauseDep,
    if_match: IfMatchDep,
) -> Response:
    """If-Match names the roster's version (the ETag of GET /v1/profiles/default)."""

    def run(cause: Cause) -> Response:
        outcome = container.app.set_default(
            owner.account_id, body.profile_id, _because(cause, body.reason), if_match
        )
        response = command_response(container.reads, owner.account_id, outcome)
        if outcome.roster_version is not None:
            response.headers["ETag"] = etag(outcome.roster_version)
        return response

    return _once(request, container, cause, body, run)


@router.get(
    GET_PROFILE_PATH,
    response_model=ProfilePublic,
    summary="One profile",
    description=(
        "The profile now, or as it was at a `version` or an `as_of` time (replayed from its events)."
    ),
    responses={
        200: profile_ok("The profile."),
        **problems(401, 404, 410, 422, 503, s410="The profile was erased (`erased`); its history remains."),
    },
)
async def get_profile(
    profile_id: UUID,
    principal: PrincipalDep,
    container: ContainerDep,
    queries: AsyncQueriesDep,
    min_position: MinPositionDep,
    version: Annotated[
        int | None, Query(ge=1, description="the profile as it was at this version (replayed)")
    ] = None,
    as_of: Annotated[
        datetime | None, Query(description="the profile as it was at this RFC 3339 time (replayed)")
    ] = None,
) -> JSONResponse:
    # min_position: waited for on the event loop by its dependency (api/deps.py).
    if version is not None or as_of is not None:
        # Replays events: blocking work, in a request thread.
        return await run_in_threadpool(_as_it_was, container, principal, profile_id, version, as_of)
    row = await queries.get(scope_of(principal), profile_id)
    if row is None:
        raise _not_found(profile_id)
    if row.erased_at is not None:
        raise _gone(row.id, row.erased_at)
    return profile_response(row)


def _gone(profile_id: UUID, erased_at: datetime) -> Problem:
    return Problem(
        410, "erased", "Profile erased", f"profile {profile_id} was erased", erased_at=erased_at.isoformat()
    )


def _as_it_was(
    container: ContainerDep,
    principal: PrincipalDep,
    profile_id: UUID,
    version: int | None,
    as_of: datetime | None,
) -> JSONResponse:
    if version is not None and as_of is not None:
        raise invalid("as_of", "give either version or as_of, not both")
    if as_of is not None and as_of.tzinfo is None:
        raise invalid("as_of", "must be an RFC 3339 time with a UTC offset")
    timeline = timeline_for(container.audit, principal, profile_id)
    state = container.audit.as_it_was(timeline, version=version, as_of=as_of)
    if state is None:
        when = f"version {version}" if version is not None else f"{as_of.isoformat()}"  # type: ignore[union-attr]
        raise not_found(f"profile {profile_id} did not exist at {when}")
    return JSONResponse(state, headers={"ETag": f'"{state["version"]}"'})


@router.patch(
    "/{profile_id}",
    response_model=ProfilePublic,
    summary="Rename a profile",
    description="Renames an active profile (409 when archived). Honours `If-Match`.",
    responses=command_responses(200, "The renamed profile."),
    openapi_extra=COMMAND_EXTRA,
)
def rename_profile(
    request: Request,
    profile_id: UUID,
    body: ProfileUpdate,
    owner: OwnerDep,
    container: ContainerDep,
    if_match: IfMatchDep,
    cause: CauseDep,
) -> Response:
    def run(cause: Cause) -> Response:
        outcome = container.app.rename(
            owner.account_id, profile_id, body.name, _because(cause, body.reason), if_match
        )
        return command_response(container.reads, owner.account_id, outcome)

    return _once(request, container, cause, body, run)


@router.post(
    "/{profile_id}/archive",
    response_model=ProfilePublic,
    summary="Archive a profile",
    description=(
        "Archives a profile. If it was the default, the default passes to `successor_id`, else to the"
        " earliest-created active profile. Honours `If-Match`; the body is optional."
    ),
    responses=command_responses(200, "The archived profile."),
    openapi_extra=COMMAND_EXTRA,
)
def archive_profile(
    request: Request,
    profile_id: UUID,
    owner: OwnerDep,
    container: ContainerDep,
    if_match: IfMatchDep,
    cause: CauseDep,
    body: ArchiveRequest | None = None,
) -> Response:
    body = body or ArchiveRequest()

    def run(cause: Cause) -> Response:
        outcome = container.app.archive(
            owner.account_id, profile_id, _because(cause, body.reason), body.successor_id, if_match
        )
        return command_response(container.reads, owner.account_id, outcome)

    return _once(request, container, cause, body, run)


@router.post(
    "/{profile_id}/restore",
    response_model=ProfilePublic,
    summary="Restore an archived profile",
    description=(
        "Restores an archived profile; into an account with no active profile it becomes the"
        " default. Honours `If-Match`; the body is optional."
    ),
    responses=command_responses(200, "The restored profile."),
    openapi_extra=COMMAND_EXTRA,
)
def restore_profile(
    request: Request,
    profile_id: UUID,
    owner: OwnerDep,
    container: ContainerDep,
    if_match: IfMatchDep,
    cause: CauseDep,
    body: RestoreRequest | None = None,
) -> Response:
    body = body or RestoreRequest()

    def run(cause: Cause) -> Response:
        outcome = container.app.restore(owner.account_id, profile_id, _because(cause, body.reason), if_match)
        return command_response(container.reads, owner.account_id, outcome)

    return _once(request, container, cause, body, run)


@router.post(
    "/{profile_id}/vehicles",
    status_code=201,
    response_model=ProfilePublic,
    summary="Add a vehicle",
    description=(
        "Adds a vehicle to an active profile; answers with the whole profile and the new vehicle's"
        " `Location`. Honours `If-Match`."
    ),
    responses=command_responses(201, "The profile with the new vehicle.", location=True, links=VEHICLE_LINKS),
    openapi_extra=COMMAND_EXTRA,
)
def add_vehicle(
    request: Request,
    profile_id: UUID,
    body: VehicleCreate,
    owner: OwnerDep,
    container: ContainerDep,
    if_match: IfMatchDep,
    cause: CauseDep,
) -> Response:
    def run(cause: Cause) -> Response:
        outcome = container.app.add_vehicle(
            owner.account_id,
            profile_id,
            body.model_dump(exclude={"reason"}),
            _because(cause, body.reason),
            if_match,
        )
        response = command_response(container.reads, owner.account_id, outcome, 201)
        if outcome.vehicle_id:
            response.headers["Location"] = f"/v1/profiles/{profile_id}/vehicles/{outcome.vehicle_id}"
        return response

    return _once(request, container, cause, body, run, status=201)


@router.patch(
    "/{profile_id}/vehicles/{vehicle_id}",
    response_model=ProfilePublic,
    summary="Change a vehicle",
    description="Changes the given fields of a vehicle (null clears an optional one). Honours `If-Match`.",
    responses=command_responses(200, "The profile with the changed vehicle."),
    openapi_extra=COMMAND_EXTRA,
)
def change_vehicle(
    request: Request,
    profile_id: UUID,
    vehicle_id: UUID,
    body: VehicleUpdate,
    owner: OwnerDep,
    container: ContainerDep,
    if_match: IfMatchDep,
    cause: CauseDep,
) -> Response:
    def run(cause: Cause) -> Response:
        outcome = container.app.change_vehicle(
            owner.account_id,
            profile_id,
            str(vehicle_id),
            body.model_dump(exclude_unset=True, exclude={"reason"}),
            _because(cause, body.reason),
            if_match,
        )
        return command_response(container.reads, owner.account_id, outcome)

    return _once(request, container, cause, body, run)


@router.delete(
    "/{profile_id}/vehicles/{vehicle_id}",
    response_model=ProfilePublic,
    summary="Remove a vehicle",
    description="Removes a vehicle; answers with the profile. Honours `If-Match`.",
    responses=command_responses(200, "The profile without the vehicle."),
    openapi_extra=COMMAND_EXTRA,
)
def remove_vehicle(
    request: Request,
    profile_id: UUID,
    vehicle_id: UUID,
    owner: OwnerDep,
    container: ContainerDep,
    if_match: IfMatchDep,
    cause: CauseDep,
) -> Response:
    def run(cause: Cause) -> Response:
        outcome = container.app.remove_vehicle(owner.account_id, profile_id, str(vehicle_id), cause, if_match)
        return command_response(container.reads, owner.account_id, outcome)

    return _once(request, container, cause, None, run)


@router.delete(
    "/{profile_id}",
    response_model=ErasureReceipt,
    summary="Erase a profile",
    description=(
        "Erases the profile for good: archives it first if it is active (the default passes to"
        " `successor_id`, else to the earliest-created active profile), records an `Erased` event and"
        " destroys the profile's data key, so its names, vehicles, details and reasons can never be"
        " read again (history keeps every event, its personal fields shown as `[erased]`). Answers"
        " with a receipt; afterwards the profile answers 410 Gone. Honours `If-Match`; the reason"
        " goes in `X-Reason`."
    ),
    responses=command_responses(200, "The erasure receipt; X-Position is the erasure's last event."),
    openapi_extra=COMMAND_EXTRA,
)
def erase_profile(
    request: Request,
    profile_id: UUID,
    owner: OwnerDep,
    container: ContainerDep,
    if_match: IfMatchDep,
    cause: CauseDep,
    successor_id: Annotated[
        UUID | None, Query(description="the profile that becomes default if this one is the default")
    ] = None,
) -> Response:
    def receipt(position: int) -> Response:
        wait_for(container.reads, position)
        row = container.queries.get(owner.account_id, profile_id)
        if row is None or row.erased_at is None:
            raise Problem(500, "internal", "Internal server error", "the erasure is not in the read table")
        body = {"profile_id": str(profile_id), "erased_at": row.erased_at.isoformat(), "position": position}
        return FastJSONResponse(body, headers={"X-Position": str(position), "ETag": etag(row.version)})

    def run(cause: Cause) -> Response:
        outcome = container.app.erase(owner.account_id, profile_id, cause, successor_id, if_match)
        return receipt(outcome.position)

    # A retry whose first request stored the erasure but died before replying
    # gets the receipt (at the log's head), not the profile a command shows.
    return idempotent(
        request,
        container.idempotency,
        cause,
        None,
        counted(request, run),
        lambda _: receipt(container.audit.log.head()),
    )
