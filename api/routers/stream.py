"""GET /v1/profiles/stream: the account's profile changes as Server-Sent Events.

Each changed profile is one event: `id: <position>`, `event: profile`,
`data: <the profile as in the API, plus "position">`, in position order; an
erased profile is `event: erased`, `data: {"id", "erased_at", "position"}`. A
stream delivers the latest state of each changed profile: intermediate states
of one profile may be collapsed, its final state never. Rows changed by one
event (the old and the new default) share a position; only the last of them
carries the `id:`, so a client that resumes never misses one of them.

Resume: `Last-Event-ID: <position>` (the header EventSource sends when it
reconnects, or the `last_event_id` query parameter) first sends every profile
of the account changed after that position, then live changes. Without it the
stream starts with every profile of the account. The backlog goes out a page
(STREAM_PAGE_SIZE profiles) at a time and is not kept, so a stream's memory
does not grow with the account. A `: keep-alive` comment comes every
KEEPALIVE_SECONDS.

Limits (api/quotas.py): MAX_STREAMS_PER_TOKEN and MAX_STREAMS_PER_ACCOUNT
(429), MAX_STREAMS per process (503), each with Retry-After. A stream ends
within a second of its token's revocation (heard on the change feed) and when
its token expires.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Annotated, Any, NamedTuple
from uuid import UUID

import anyio
import anyio.to_thread
import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import UNAUTHORIZED, AsyncQueriesDep, ContainerDep, get_principal
from api.openapi import problems
from api.problems import Problem, invalid
from api.quotas import BacklogShare, Quotas
from api.responses import public
from infrastructure.accounts import Principal
from infrastructure.change_feed import ChangeFeed, Subscription
from projections.rows import ProfileRow

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])

KEEPALIVE_SECONDS = 15.0
RETRY_MILLISECONDS = 1000
_POSITION = re.compile(r"^\s*\d{1,18}\s*$")
# Keyset cursor id that sorts after every id: a backlog starts past every row of its position.
_AFTER_EVERY_ID = UUID(int=(1 << 128) - 1)


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


def encode(rows: Sequence[ProfileRow], next_position: int | None = None, *, fresh: bool = False) -> bytes:
    """SSE events for rows in position order; the id goes on the last row of each
    position (next_position: the position of the row after these, if one follows).
    An erased profile goes as an `erased` event naming only its id; a fresh stream
    (no resume position) never knew it, so there only its id line is kept."""
    out = []
    for i, row in enumerate(rows):
        following = rows[i + 1].position if i + 1 < len(rows) else next_position
        event_id = f"id: {row.position}\n" if following != row.position else ""
        if row.erased_at is not None:
            if fresh:
                out.append(f"{event_id}\n" if event_id else "")
                continue
            kind = "erased"
            body: dict[str, object] = {"id": str(row.id), "erased_at": row.erased_at.isoformat()}
        else:
            kind, body = "profile", public(row)
        data = orjson.dumps({**body, "position": row.position}).decode()
        out.append(f"{event_id}event: {kind}\ndata: {data}\n\n")
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


class _Page(NamedTuple):
    encoded: bytes
    cursor: tuple[int, UUID]  # (position, id) of its last row: the next page starts after it
    more: bool  # whether rows follow


async def _read_page(
    read: Callable[[tuple[int, UUID], int], Awaitable[list[ProfileRow]]],
    after: tuple[int, UUID],
    page_size: int,
    share: BacklogShare,
    fresh: bool,
) -> _Page | None:
    """One page of the backlog, read and encoded in one step of the backlog's share
    (api/quotas.py), so no stream holds decoded rows while it waits for its turn.
    The row after the page is read too, so rows sharing a position are never split
    by an `id:` line. Encoding runs in the share's thread, off the event loop."""
    async with share.step():
        rows = await read(after, page_size + 1)
        if not rows:
            return None
        page = rows[:page_size]
        following = rows[page_size].position if len(rows) > page_size else None
        encoded = await anyio.to_thread.run_sync(
            partial(encode, page, following, fresh=fresh), limiter=share.encoder
        )
        return _Page(encoded, (page[-1].position, page[-1].id), len(rows) > page_size)


def _pages(
    read: Callable[[tuple[int, UUID], int], Awaitable[list[ProfileRow]]],
    page_size: int,
    share: BacklogShare,
    fresh: bool = False,
) -> Callable[[tuple[int, UUID]], Awaitable[_Page | None]]:
    """The backlog's pages: the page after a (position, id) cursor, or None past the last row."""
    return partial(_read_page, read, page_size=page_size, share=share, fresh=fresh)


async def _backlog(
    page: _Page | None, next_page: Callable[[tuple[int, UUID]], Awaitable[_Page | None]]
) -> AsyncIterator[tuple[bytes, int]]:
    """The account's changed rows a page at a time, from the first page:
    (encoded page, last position sent). Only the page being sent is held."""
    while page is not None:
        yield page.encoded, page.cursor[0]
        if not page.more:
            return
        cursor = page.cursor
        del page
        page = await next_page(cursor)


async def _events(
    subscription: Subscription,
    backlog: AsyncIterator[tuple[bytes, int]],
    after: int,
    principal: Principal,
) -> AsyncIterator[bytes]:
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    sent = after
    async for page, last in backlog:
        if subscription.ended:  # the token was revoked (or the server stops) during the backlog
            return
        yield page
        sent = max(sent, last)
    while True:
        left = principal.seconds_left()
        if left is not None and left <= 0:
            return  # the token expired: the client needs another one
        try:
            batch = await subscription.next(
                KEEPALIVE_SECONDS if left is None else min(KEEPALIVE_SECONDS, left)
            )
        except TimeoutError:
            yield b": keep-alive\n\n"
            continue
        if batch is None:  # shutdown, the token revoked, or the client read too slowly
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
        **problems(
            429,
            503,
            s429="The token (MAX_STREAMS_PER_TOKEN) or the account (MAX_STREAMS_PER_ACCOUNT) has as many"
            " streams open as allowed; retry after Retry-After seconds.",
            s503="The server serves as many streams as it may (MAX_STREAMS), or the database is out of"
            " reach; retry after Retry-After seconds.",
        ),
    },
)
async def profile_stream(
    request: Request,
    principal: Annotated[Principal, Depends(stream_principal)],
    container: ContainerDep,
    queries: AsyncQueriesDep,
    last_event_id_header: Annotated[
        str | None, Header(alias="last-event-id", description="resume after this position")
    ] = None,
    last_event_id: Annotated[
        int | None, Query(ge=0, description="resume after this position (when no Last-Event-ID header)")
    ] = None,
) -> StreamingResponse:
    """The account's profile changes, live (see the module docstring)."""
    after = _resume_position(last_event_id_header, last_event_id)
    quotas: Quotas = request.app.state.quotas
    quotas.open_stream(principal.token_id, principal.account_id)
    feed = container.feed
    # Subscribe before reading the backlog: nothing committed in between is lost.
    subscription = feed.subscribe(principal.account_id, principal.token_id)

    def close() -> None:
        feed.unsubscribe(subscription)
        quotas.close_stream(principal.token_id, principal.account_id)

    def read(after: tuple[int, UUID], limit: int) -> Awaitable[list[ProfileRow]]:
        return queries.changed_page(principal.account_id, after, limit)

    next_page = _pages(read, container.settings.stream_page_size, quotas.backlog, fresh=not after)
    try:
        # Revoked after this request authenticated, before it subscribed: the
        # feed ended the token's streams without this one.
        if container.accounts.revocation_heard(principal.token_id):
            raise Problem.of("unauthorized", "invalid token", UNAUTHORIZED)
        # The first page before answering: a database outage is a 503, not a broken stream.
        first = await next_page((after, _AFTER_EVERY_ID))
    except BaseException:
        close()
        raise
    backlog = _backlog(first, next_page)
    return _EventStream(_events(subscription, backlog, after, principal), close)


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
