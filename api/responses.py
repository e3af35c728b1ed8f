"""Building responses from the read table, after it has caught up."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any
from uuid import UUID

import anyio.to_thread
import orjson
from eventsourcing.persistence import InterfaceError, OperationalError
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from api.problems import Problem, invalid, not_found, unavailable
from api.quotas import Quotas
from api.schemas import Accepted, ProfilePublic
from domain.service import Outcome
from infrastructure.async_queries import AsyncProfileQueries
from infrastructure.read_your_writes import ReadYourWrites
from projections.rows import ProfileRow, public


class FastJSONResponse(JSONResponse):
    """JSON encoded by orjson: the bodies are plain dicts already shaped for the
    wire, so there is no second validation pass."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:
            # orjson holds 64-bit integers; events stored before details were
            # bounded may hold larger ones, and a read must still answer.
            return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


class CommandResponse(FastJSONResponse):
    """A command's answer; `attempts` (1 unless the command retried after a conflict) is counted
    by the metrics (api/metrics.py `counted`)."""

    def __init__(self, content: Any, attempts: int, status_code: int, headers: dict[str, str]) -> None:
        super().__init__(content, status_code=status_code, headers=headers)
        self.attempts = attempts


def etag(version: int) -> str:
    return f'"{version}"'


def _profile_headers(row: ProfileRow, position: int | None, location: bool) -> dict[str, str]:
    headers = {"ETag": etag(row.version)}
    if position is not None:
        headers["X-Position"] = str(position)
    if location:
        headers["Location"] = f"/v1/profiles/{row.id}"
    return headers


def profile_response(
    row: ProfileRow, status: int = 200, position: int | None = None, location: bool = False
) -> JSONResponse:
    return FastJSONResponse(
        public(row), status_code=status, headers=_profile_headers(row, position, location)
    )


def wait_for(reads: ReadYourWrites, position: int | None) -> None:
    """Blocks until the read table has applied position; 503 when it does not in time."""
    if not position:
        return
    try:
        reads.wait(position)
    except TimeoutError:
        raise unavailable(f"the read table has not reached position {position} yet", 1) from None


async def wait_until(
    reads: ReadYourWrites, queries: AsyncProfileQueries, quotas: Quotas, token_id: str, position: int | None
) -> None:
    """X-Min-Position: returns once the read table has applied position, holding no
    thread (awaited on the event loop, woken by the change feed). A position past
    the event log's head is refused at once (422 `position-ahead`); at most
    MAX_WAITS_PER_TOKEN waits per token (429); 503 after WAIT_TIMEOUT."""
    view = reads.view
    if not position or view.has_reached(position):
        return
    with quotas.wait(token_id):
        head = await _head(reads, queries, position)
        if position > head:
            raise Problem.of(
                "position-ahead",
                f"X-Min-Position {position} is past the event log's head ({head}): no write has it yet",
                errors=[{"field": "X-Min-Position", "reason": f"is past the event log's head ({head})"}],
                head=head,
            )
        try:
            await view.wait_async(
                position,
                reads.wait_timeout,
                lambda: queries.tracking_position(view.position_statement, reads.application_name),
            )
        except TimeoutError:
            raise unavailable(f"the read table has not reached position {position} yet", 1) from None


async def _head(reads: ReadYourWrites, queries: AsyncProfileQueries, position: int) -> int:
    head = await queries.head()
    if position > head and reads.primary_head is not None:
        # A replica lags the primary: only the primary's head can refuse a position.
        head = await anyio.to_thread.run_sync(reads.primary_head)
    return head


def command_response(
    reads: ReadYourWrites, account_id: str, outcome: Outcome, status: int = 200, location: bool = False
) -> JSONResponse:
    """Read-your-writes: the body comes from the read table once it shows the command."""
    try:
        # A command projected inline brought its rows back with its commit.
        row = reads.view.fresh_row(outcome.profile_id, outcome.position)
        if row is None or row.account_id != account_id:
            reads.wait(outcome.position)
            row = reads.queries.get(account_id, outcome.profile_id)
    except (TimeoutError, OperationalError, InterfaceError):
        # The change is stored; only the read table lags, or the database went
        # away after the commit. Say so instead of failing: a client that took
        # a 503 for "not done" would send the command again.
        body = Accepted(profile_id=outcome.profile_id, position=outcome.position)
        return JSONResponse(
            jsonable_encoder(body),
            status_code=202,
            headers={"X-Position": str(outcome.position), "Location": f"/v1/profiles/{outcome.profile_id}"},
        )
    if row is None:
        raise not_found(f"no profile {outcome.profile_id}")
    headers = _profile_headers(row, outcome.position, location)
    return CommandResponse(public(row), outcome.attempts, status, headers)


def encode_cursor(row: ProfileRow) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, profile_id = raw.partition("|")
        return datetime.fromisoformat(created), UUID(profile_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid(
            "cursor", "is not one this API returned", "cursor is not one this API returned"
        ) from None


__all__ = ["ProfilePublic", "command_response", "profile_response", "public", "wait_for"]
