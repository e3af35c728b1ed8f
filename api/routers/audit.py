"""Audit: a profile's history and past states, the default timeline, the export."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from api.deps import (
    AccountQuery,
    ContainerDep,
    MinPositionDep,
    PrincipalDep,
    account_to_read,
    scope_of,
    timeline_for,
)
from api.openapi import problems
from api.problems import invalid
from api.schemas import DefaultTimeline, HistoryPage
from infrastructure.account_directory import AccountDirectory
from infrastructure.audit import export_entry
from infrastructure.container import Container

history_router = APIRouter(prefix="/v1/profiles", tags=["audit"])
router = APIRouter(prefix="/v1/audit", tags=["audit"])


_CURSOR = re.compile(r"^after:(\d{1,18})$")

CursorQuery = Annotated[str | None, Query(description="the `next_cursor` of the previous page (opaque)")]
LimitQuery = Annotated[int, Query(ge=1, le=200, description="entries per page")]


def encode_cursor(position: int) -> str:
    """An opaque cursor: the position of the last entry of a page (entries are in position order)."""
    return base64.urlsafe_b64encode(f"after:{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        match = _CURSOR.match(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        match = None
    if match is None:
        raise invalid("cursor", "is not one this API returned", "cursor is not one this API returned")
    return int(match.group(1))


def page_of(entries: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """A page from up to limit + 1 entries in position order (keyset paging: stable
    while new entries are appended); the extra one only says there is more."""
    page = entries[:limit]
    more = len(entries) > limit
    return {"items": page, "next_cursor": encode_cursor(page[-1]["position"]) if more else None}


def _named(container: Container, page: dict[str, Any]) -> dict[str, Any]:
    """The page with each entry's actor_name (the account's name) beside its actor id."""
    return {**page, "items": AccountDirectory(container.datastore).with_actor_names(page["items"])}


@history_router.get(
    "/{profile_id}/history",
    response_model=HistoryPage,
    summary="A profile's history",
    description=(
        "The profile's events and its roster's events about it (joined or left the active profiles,"
        " became or stopped being the default), in position order, with who, why and which request."
        " Pass `next_cursor` back as `cursor` until it is null."
    ),
    responses=problems(401, 404, 422, 503),
)
def profile_history(
    profile_id: UUID,
    principal: PrincipalDep,
    container: ContainerDep,
    min_position: MinPositionDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> JSONResponse:
    """The profile's events and its roster's events about it, in order."""
    after = decode_cursor(cursor)
    # min_position: waited for on the event loop by its dependency (api/deps.py).
    ref = timeline_for(container.audit, principal, profile_id)
    return JSONResponse(_named(container, page_of(container.audit.history(ref, after, limit + 1), limit)))


@router.get(
    "/defaults",
    response_model=DefaultTimeline,
    summary="The default timeline",
    description=(
        "Every change of the account's default profile: when, from, to, who, why. Owners read their"
        " own account; auditors name one with `account_id`. Pass `next_cursor` back as `cursor`"
        " until it is null."
    ),
    responses=problems(
        401, 404, 422, 503, s404="`account_id` names another account than the token's (owners)."
    ),
)
def default_timeline(
    principal: PrincipalDep,
    container: ContainerDep,
    min_position: MinPositionDep,
    account_id: AccountQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> JSONResponse:
    account = account_to_read(principal, account_id)
    after = decode_cursor(cursor)
    # min_position: waited for on the event loop by its dependency (api/deps.py).
    return JSONResponse(
        _named(container, page_of(container.audit.defaults(account, after, limit + 1), limit))
    )


@router.get(
    "/events",
    response_class=StreamingResponse,
    summary="Export the event log",
    description=(
        "NDJSON (`application/x-ndjson`), one event per line in position order: the token's account's"
        " events, or every account's for an auditor. Each line is a history entry plus `topic` and"
        " `stored_state` (base64), enough to replay the log elsewhere. Resume with `after` set to the"
        " last position received."
    ),
    responses={
        200: {
            "description": "One JSON object per line (an `ExportedEvent`), each line ending in a newline.",
            "content": {
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": "newline-delimited ExportedEvent objects"},
                    "itemSchema": {"$ref": "#/components/schemas/ExportedEvent"},
                    "example": (
                        '{"position":1,"aggregate_id":"6f1c2a4e-8d2b-4c3f-9a57-0b8e4f1d2c3a",'
                        '"aggregate_type":"RacerProfile","version":1,"type":"Created",'
                        '"recorded_at":"2026-03-01T09:30:00.123456+00:00","actor":"acc_1","reason":null,'
                        '"request_id":"checkout-7f3a","data":{"name":"Alex"},'
                        '"topic":"domain.profile:RacerProfile.Created","stored_state":"eyJ..."}\n'
                    ),
                }
            },
        },
        **problems(401, 422, 503),
    },
)
def export_events(
    principal: PrincipalDep,
    container: ContainerDep,
    min_position: MinPositionDep,
    after: Annotated[int, Query(ge=0, description="resume after this position")] = 0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> StreamingResponse:
    """NDJSON, one event per line, in position order (the account's, or all for an auditor)."""
    scope = scope_of(principal)
    # min_position: waited for on the event loop by its dependency (api/deps.py).
    log = container.audit.log
    # An owner's events through the audit index; an auditor's are the whole log.
    events = log.iterate(after) if scope is None else container.audit.account_events(scope, after)

    def lines() -> Iterator[bytes]:
        for sent, logged in enumerate(events):
            if sent == limit:
                return
            yield orjson.dumps(export_entry(log, logged)) + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


__all__: list[Any] = ["history_router", "router"]
