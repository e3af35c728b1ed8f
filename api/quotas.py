"""Bulkheads: how many waits and streams one token, one account and the
process may hold at once. Past a limit the request is refused at once (429,
or 503 for the process-wide stream cap) with Retry-After, as a problem
document, instead of queueing behind the others.

Every count lives on the app's event loop (waits and streams are async
endpoints), so no lock is needed."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio

from api.problems import Problem, unavailable
from infrastructure.settings import Settings

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
        # A backlog page is read and decoded on the event loop: milliseconds of
        # CPU for large profiles. One page at a time in the whole process, so the
        # loop's queue never holds more than one such step, and every other
        # request (health checks, other accounts' commands) waits for at most
        # one, not one per open stream; a burst of new streams queues here
        # instead of taking the async read pool from the hot queries.
        self.backlog_turn = asyncio.Semaphore(1)
        # Encoding a page (twice the decoding's CPU) runs in a thread of its own,
        # not the request threads: the GIL's switch interval (api/workers.py)
        # hands the loop its turn within a millisecond, where a step of the loop
        # would hold it for the whole page.
        self.backlog_encoder = anyio.CapacityLimiter(1)

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
