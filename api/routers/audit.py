"""Audit: a profile's history and past states, the default timeline, the export."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from api.deps import ContainerDep, PrincipalDep, scope_of
from api.problems import Problem
from infrastructure.audit import ProfileTimeline, export_record
from infrastructure.container import Container
from infrastructure.accounts import Principal

history_router = APIRouter(prefix="/v1/profiles", tags=["audit"])
router = APIRouter(prefix="/v1/audit", tags=["audit"])


def timeline_for(container: Container, principal: Principal, profile_id: UUID) -> ProfileTimeline:
    """The profile's timeline if the principal may read it; 404 otherwise."""
    timeline = container.audit.timeline(profile_id)
    scope = scope_of(principal)
    if timeline is None or (scope is not None and timeline.account_id != scope):
        raise Problem(404, "not-found", "Not found", f"no profile {profile_id} in this account")
    return timeline


@history_router.get("/{profile_id}/history")
def profile_history(
    profile_id: UUID,
    principal: PrincipalDep,
    container: ContainerDep,
    after: Annotated[int, Query(ge=0, description="position of the last entry already seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JSONResponse:
    """The profile's events and its roster's events about it, in order."""
    timeline = timeline_for(container, principal, profile_id)
    entries = [e for e in container.audit.history(timeline, profile_id) if e["position"] > after]
    page = entries[:limit]
    next_after = page[-1]["position"] if len(entries) > limit else None
    return JSONResponse({"items": page, "next_after": next_after})


@router.get("/defaults")
def default_timeline(
    principal: PrincipalDep,
    container: ContainerDep,
    account_id: Annotated[str | None, Query(description="auditors: the account to read")] = None,
) -> JSONResponse:
    scope = scope_of(principal)
    if scope is None and not account_id:
        raise Problem(
            422, "validation", "Invalid request", "account_id is required for an auditor",
            errors=[{"field": "account_id", "reason": "is required for an auditor"}],
        )
    if scope is not None and account_id not in (None, scope):
        raise Problem(404, "not-found", "Not found", "no such account")
    return JSONResponse({"items": container.audit.defaults(account_id or scope or "")})


@router.get("/events", response_class=StreamingResponse)
def export_events(
    principal: PrincipalDep,
    container: ContainerDep,
    after: Annotated[int, Query(ge=0, description="resume after this position")] = 0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> StreamingResponse:
    """NDJSON, one event per line, in position order (the account's, or all for an auditor)."""
    scope = scope_of(principal)
    ids = None if scope is None else container.audit.account_aggregates(scope)
    log = container.audit.log

    def lines() -> Iterator[bytes]:
        sent = 0
        for logged in log.iterate(after, ids):
            if sent == limit:
                return
            yield orjson.dumps(export_record(logged, log.decode(logged))) + b"\n"
            sent += 1

    return StreamingResponse(lines(), media_type="application/x-ndjson")


__all__: list[Any] = ["history_router", "router", "timeline_for"]
