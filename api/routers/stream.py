"""GET /v1/profiles/stream: the account's profile changes as Server-Sent Events.

Each changed profile is one event: `id: <position>`, `event: profile`,
`data: <the profile as in the API, plus "position">`, in position order. A
stream delivers the latest state of each changed profile: intermediate states
of one profile may be collapsed, its final state never. Rows changed by one
event (the old and the new default) share a position; only the last of them
carries the `id:`, so a client that resumes never misses one of them.

Resume: `Last-Event-ID: <position>` (the header EventSource sends when it
reconnects, or the `last_event_id` query parameter) first sends every profile
of the account changed after that position, then live changes. Without it the
stream starts with every profile of the account. A `: keep-alive` comment
comes every KEEPALIVE_SECONDS.

Auth: `Authorization: Bearer <token>`, or, for EventSource (which cannot send
headers), `?access_token=<token>` on this route only; a URL may end up in
access logs, so prefer the header where the client allows it.

Streams hold no database connection: one shared listener (the change feed)
fans changes out to them. They end when the server shuts down."""

from __future__ import annotations

import asyncio
import re
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ContainerDep, get_principal
from api.problems import invalid
from api.responses import public
from infrastructure.accounts import Principal
from infrastructure.change_feed import ChangeFeed, Subscription
from projections.rows import ProfileRow

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])

KEEPALIVE_SECONDS = 15.0
RETRY_MILLISECONDS = 1000
_POSITION = re.compile(r"^\s*\d{1,18}\s*$")


async def stream_principal(
    request: Request,
    container: ContainerDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    access_token: Annotated[
        str | None, Query(description="the token, for clients that cannot send headers (EventSource)")
    ] = None,
) -> Principal:
    if not authorization and access_token:
        authorization = f"Bearer {access_token}"
    return await get_principal(request=request, container=container, authorization=authorization)


def _resume_position(header: str | None, query: int | None) -> int:
    if header is None or not header.strip():
        return query or 0
    if not _POSITION.match(header):
        raise invalid(
            "Last-Event-ID", "must be a position (digits)", "Last-Event-ID must be a position (digits)"
        )
    return int(header)


def encode(rows: Sequence[ProfileRow]) -> bytes:
    """SSE events for rows in position order; the id goes on the last row of each position."""
    out = []
    for i, row in enumerate(rows):
        data = orjson.dumps({**public(row), "position": row.position}).decode()
        last_of_position = i + 1 == len(rows) or rows[i + 1].position != row.position
        event_id = f"id: {row.position}\n" if last_of_position else ""
        out.append(f"{event_id}event: profile\ndata: {data}\n\n")
    return "".join(out).encode()


class _EventStream(StreamingResponse):
    """Unsubscribes however the response ends, even if it never started."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


async def _events(subscription: Subscription, backlog: list[ProfileRow], after: int) -> AsyncIterator[bytes]:
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    sent = after
    if backlog:
        yield encode(backlog)
        sent = backlog[-1].position
    while True:
        try:
            batch = await subscription.next(KEEPALIVE_SECONDS)
        except TimeoutError:
            yield b": keep-alive\n\n"
            continue
        if batch is None:  # shutdown, or the client read too slowly: it resumes
            return
        # Rows up to `sent` were in the backlog already, each in a state at least as new.
        fresh = [row for row in batch if row.position > sent]
        if fresh:
            yield encode(fresh)
            sent = fresh[-1].position


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events, one `profile` event per changed profile",
            "content": {"text/event-stream": {}},
        },
        401: {"description": "missing or invalid token", "content": {"application/problem+json": {}}},
        422: {"description": "Last-Event-ID is not a position", "content": {"application/problem+json": {}}},
    },
)
async def profile_stream(
    principal: Annotated[Principal, Depends(stream_principal)],
    container: ContainerDep,
    last_event_id_header: Annotated[
        str | None, Header(alias="last-event-id", description="resume after this position")
    ] = None,
    last_event_id: Annotated[
        int | None, Query(ge=0, description="resume after this position (when no Last-Event-ID header)")
    ] = None,
) -> StreamingResponse:
    """The account's profile changes, live (see the module docstring)."""
    after = _resume_position(last_event_id_header, last_event_id)
    feed = container.feed
    # Subscribe before reading the backlog: nothing committed in between is lost.
    subscription = feed.subscribe(principal.account_id)
    try:
        backlog = await run_in_threadpool(feed.changed_since, principal.account_id, after)
    except BaseException:
        feed.unsubscribe(subscription)
        raise
    return _EventStream(_events(subscription, backlog, after), lambda: feed.unsubscribe(subscription))


@contextmanager
def streams_end_on_signals(feed: ChangeFeed) -> Iterator[None]:
    """While serving: SIGINT/SIGTERM end every stream at once, then reach the
    server's own handler. Uvicorn waits for open responses to finish before it
    runs the lifespan's shutdown, so streams must end before that."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    loop = asyncio.get_running_loop()

    def handler(sig: int, frame: Any) -> None:
        # Not in the handler itself: it may interrupt this thread inside the feed's lock.
        loop.call_soon_threadsafe(feed.end_streams)
        before = previous[sig]
        if callable(before):
            before(sig, frame)
        elif before == signal.SIG_DFL:
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, before in previous.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, before)
