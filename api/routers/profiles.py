"""/v1/profiles: commands and queries of one account's racer profiles."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import (
    CauseDep,
    ContainerDep,
    IfMatchDep,
    MinPositionDep,
    OwnerDep,
    PrincipalDep,
    scope_of,
)
from api.idempotency import idempotent
from api.metrics import counted
from api.problems import Problem
from api.routers.audit import timeline_for
from api.responses import (
    FastJSONResponse,
    etag,
    command_response,
    decode_cursor,
    encode_cursor,
    profile_response,
    public,
    wait_for,
)
from api.schemas import (
    ArchiveRequest,
    DefaultRequest,
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
from infrastructure.container import Container

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/problem+json": {}}}
    for code, text in {
        401: "missing or invalid token",
        404: "no such profile in this account",
        409: "not allowed in the profile's state, or concurrent changes kept winning",
        412: "If-Match does not name the current version",
        422: "invalid input; `errors` lists each field and reason",
        503: "database or read table not available in time; retry after Retry-After",
    }.items()
}


def _because(cause: Cause, body_reason: str | None) -> Cause:
    return replace(cause, reason=body_reason) if body_reason else cause


def _once(
    request: Request,
    container: Container,
    cause: Cause,
    body: BaseModel | None,
    run: Callable[[Cause], Response],
) -> Response:
    """Runs the command at most once per Idempotency-Key (see api/idempotency.py)."""

    def current(profile_id: str) -> Response:
        wait_for(container, container.audit.log.head())
        row = container.queries.get(cause.actor, UUID(profile_id))
        if row is None:
            raise _not_found(UUID(profile_id))
        return profile_response(row)

    return idempotent(request, container, cause, body, counted(request, run), current)


def _not_found(profile_id: UUID) -> Problem:
    return Problem(404, "not-found", "Not found", f"no profile {profile_id} in this account")


@router.post("", status_code=201, response_model=ProfilePublic, responses=_PROBLEMS)
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
        return command_response(container, owner.account_id, outcome, 201, location=True)

    return _once(request, container, cause, body, run)


@router.get("", response_model=ProfilePage, responses=_PROBLEMS)
def list_profiles(
    principal: PrincipalDep,
    container: ContainerDep,
    min_position: MinPositionDep,
    include_archived: bool = False,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JSONResponse:
    wait_for(container, min_position)
    after = decode_cursor(cursor) if cursor else None
    rows = container.queries.page(
        principal.account_id, include_archived=include_archived, after=after, limit=limit + 1
    )
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return FastJSONResponse({"items": [public(r) for r in rows[:limit]], "next_cursor": next_cursor})


@router.get("/default", response_model=ProfilePublic, responses=_PROBLEMS)
def get_default(
    principal: PrincipalDep, container: ContainerDep, min_position: MinPositionDep
) -> JSONResponse:
    wait_for(container, min_position)
    # The roster's version is read before the row, so the ETag is never newer
    # than the state shown: a race can only cause a spurious 412, never a lost update.
    roster_version = container.queries.aggregate_version(roster_id(principal.account_id))
    row = container.queries.default(principal.account_id)
    if row is None:
        raise Problem(404, "no-default", "No default profile", "this account has no active profile")
    response = profile_response(row)
    response.headers["ETag"] = etag(roster_version)
    return response


@router.put("/default", response_model=ProfilePublic, responses=_PROBLEMS)
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
        response = command_response(container, owner.account_id, outcome)
        if outcome.roster_version is not None:
            response.headers["ETag"] = etag(outcome.roster_version)
        return response

    return _once(request, container, cause, body, run)


@router.get("/{profile_id}", response_model=ProfilePublic, responses=_PROBLEMS)
def get_profile(
    profile_id: UUID,
    principal: PrincipalDep,
    container: ContainerDep,
    min_position: MinPositionDep,
    version: Annotated[
        int | None, Query(ge=1, description="the profile as it was at this version (replayed)")
    ] = None,
    as_of: Annotated[
        datetime | None, Query(description="the profile as it was at this RFC 3339 time (replayed)")
    ] = None,
) -> JSONResponse:
    if version is not None or as_of is not None:
        return _as_it_was(container, principal, profile_id, version, as_of)
    wait_for(container, min_position)
    row = container.queries.get(scope_of(principal), profile_id)
    if row is None:
        raise _not_found(profile_id)
    return profile_response(row)


def _as_it_was(
    container: ContainerDep,
    principal: PrincipalDep,
    profile_id: UUID,
    version: int | None,
    as_of: datetime | None,
) -> JSONResponse:
    if version is not None and as_of is not None:
        raise _invalid("as_of", "give either version or as_of, not both")
    if as_of is not None and as_of.tzinfo is None:
        raise _invalid("as_of", "must be an RFC 3339 time with a UTC offset")
    timeline = timeline_for(container, principal, profile_id)
    state = container.audit.as_it_was(timeline, version=version, as_of=as_of)
    if state is None:
        when = f"version {version}" if version is not None else f"{as_of.isoformat()}"  # type: ignore[union-attr]
        raise Problem(404, "not-found", "Not found", f"profile {profile_id} did not exist at {when}")
    return JSONResponse(state, headers={"ETag": f'"{state["version"]}"'})


def _invalid(field: str, reason: str) -> Problem:
    return Problem(
        422, "validation", "Invalid request", f"{field}: {reason}", errors=[{"field": field, "reason": reason}]
    )


@router.patch("/{profile_id}", response_model=ProfilePublic, responses=_PROBLEMS)
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
        return command_response(container, owner.account_id, outcome)

    return _once(request, container, cause, body, run)


@router.post("/{profile_id}/archive", response_model=ProfilePublic, responses=_PROBLEMS)
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
        return command_response(container, owner.account_id, outcome)

    return _once(request, container, cause, body, run)


@router.post("/{profile_id}/restore", response_model=ProfilePublic, responses=_PROBLEMS)
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
        outcome = container.app.restore(
            owner.account_id, profile_id, _because(cause, body.reason), if_match
        )
        return command_response(container, owner.account_id, outcome)

    return _once(request, container, cause, body, run)


@router.post("/{profile_id}/vehicles", status_code=201, response_model=ProfilePublic, responses=_PROBLEMS)
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
        response = command_response(container, owner.account_id, outcome, 201)
        if outcome.vehicle_id:
            response.headers["Location"] = f"/v1/profiles/{profile_id}/vehicles/{outcome.vehicle_id}"
        return response

    return _once(request, container, cause, body, run)


@router.patch("/{profile_id}/vehicles/{vehicle_id}", response_model=ProfilePublic, responses=_PROBLEMS)
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
        return command_response(container, owner.account_id, outcome)

    return _once(request, container, cause, body, run)


@router.delete("/{profile_id}/vehicles/{vehicle_id}", response_model=ProfilePublic, responses=_PROBLEMS)
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
        outcome = container.app.remove_vehicle(
            owner.account_id, profile_id, str(vehicle_id), cause, if_match
        )
        return command_response(container, owner.account_id, outcome)

    return _once(request, container, cause, None, run)
