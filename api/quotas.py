"""Bulkheads: how many waits and streams one token, one account and the
process may hold at once. Past a limit the request is refused at once (429,
or 503 for the process-wide stream cap) with Retry-After, as a problem
document, instead of queueing behind the others. Streams' backlogs get a
lower share of the process than requests while requests are in flight
(BacklogShare).

Every count lives on the app's event loop (waits and streams are async
endpoints, the requests in flight are counted by an ASGI middleware), so no
lock is needed."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from api.problems import Problem, unavailable
from infrastructure.settings import Settings

STREAM_PATH = "/v1/profiles/stream"
# While other requests are in flight, each backlog step is followed by this many
# times its own duration with the backlog turn held idle: the backlogs then take
# at most a quarter of the process. tests/reliability/test_floods.py (long form,
# 2-core machine, busy; runs alternated), another account's command p99 loaded
# over unloaded: 3.03x, 3.12x, 2.95x without the pause; 2.01x, 1.65x, 1.94x with
# it. With the 50 streams alone, a pause of 1x gave 3.3x, of 3x 1.8x.
BACKLOG_PACE = 3.0
WAIT_RETRY_AFTER = 1  # seconds: a wait lasts at most WAIT_TIMEOUT
STREAM_RETRY_AFTER = 5  # seconds: streams last long; a client should not hammer


def too_many(detail: str, retry_after: int, **extra: object) -> Problem:
    return Problem.of("too-many-requests", detail, {"Retry-After": str(retry_after)}, **extra)


@dataclass
class Slots:
    """At most `limit` held at once per key."""

    limit: int
    held: Counter[str] = field(default_factory=Counter)

    def take(self, key: str) -> bool:
        if self.held[key] >= self.limit:
            return False
        self.held[key] += 1
        return True

    def give_back(self, key: str) -> None:
        self.held[key] -= 1
        if self.held[key] <= 0:
            del self.held[key]


class Quotas:
    def __init__(self, settings: Settings) -> None:
        self.waits = Slots(settings.max_waits_per_token)
        self.token_streams = Slots(settings.max_streams_per_token)
        self.account_streams = Slots(settings.max_streams_per_account)
        self.streams = Slots(settings.max_streams)
        self.backlog = BacklogShare()

    @contextmanager
    def wait(self, token_id: str) -> Iterator[None]:
        """One X-Min-Position wait of the token, for the duration of the block."""
        if not self.waits.take(token_id):
            raise too_many(
                f"this token already has {self.waits.limit} requests waiting for a position"
                " (MAX_WAITS_PER_TOKEN)",
                WAIT_RETRY_AFTER,
            )
        try:
            yield
        finally:
            self.waits.give_back(token_id)

    def open_stream(self, token_id: str, account_id: str) -> None:
        """Counts a stream in; raises (and counts nothing) past a cap."""
        if not self.streams.take(""):
            raise unavailable(
                f"this server already serves {self.streams.limit} streams (MAX_STREAMS)", STREAM_RETRY_AFTER
            )
        if not self.token_streams.take(token_id):
            self.streams.give_back("")
            raise too_many(
                f"this token already has {self.token_streams.limit} streams open (MAX_STREAMS_PER_TOKEN)",
                STREAM_RETRY_AFTER,
            )
        if not self.account_streams.take(account_id):
            self.streams.give_back("")
            self.token_streams.give_back(token_id)
            raise too_many(
                f"this account already has {self.account_streams.limit} streams open"
                " (MAX_STREAMS_PER_ACCOUNT)",
                STREAM_RETRY_AFTER,
            )

    def close_stream(self, token_id: str, account_id: str) -> None:
        self.streams.give_back("")
        self.token_streams.give_back(token_id)
        self.account_streams.give_back(account_id)


class BacklogShare:
    """Streams' backlogs are bulk work; commands, queries and health checks are
    not. A backlog page costs milliseconds of the process's CPU (read, decoded,
    re-shaped and encoded: GIL-bound Python) and of the database's, and 25
    streams reading a large account's backlog at once tripled another
    account's command latency: its request thread waited for the GIL after
    every database round trip.

    So each backlog step (reading a page, encoding one) holds the process's one
    backlog turn: at most one step at a time, and a burst of new streams queues
    here instead of taking the async read pool from the hot queries. When other
    requests were in flight during the step (ForegroundRequests counts them),
    the turn stays held, idle, for BACKLOG_PACE times the step's duration
    before the next step. An otherwise idle process sends backlogs at full speed."""

    def __init__(
        self,
        pace: float = BACKLOG_PACE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.pace = pace
        self._clock, self._sleep = clock, sleep
        self.in_flight = 0  # requests other than streams, now
        self.started = 0  # requests other than streams, ever
        self._turn = asyncio.Semaphore(1)
        # Encoding runs in a thread of its own, not a request thread: the GIL's
        # switch interval (api/workers.py) hands the loop its turn within a
        # millisecond, where a step of the loop would hold it for the whole page.
        self.encoder = anyio.CapacityLimiter(1)

    @asynccontextmanager
    async def step(self) -> AsyncIterator[None]:
        async with self._turn:
            started, begun = self.started, self._clock()
            yield
            if self.in_flight or self.started != started:
                await self._sleep(self.pace * (self._clock() - begun))


class ForegroundRequests:
    """ASGI middleware: counts the requests in flight, streams aside, for the backlog's share."""

    def __init__(self, app: Any, share: BacklogShare) -> None:
        self.app = app
        self.share = share

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == STREAM_PATH:
            await self.app(scope, receive, send)
            return
        self.share.in_flight += 1
        self.share.started += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.share.in_flight -= 1
