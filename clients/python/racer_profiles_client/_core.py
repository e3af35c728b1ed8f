"""What Client and AsyncClient share: the headers of a request, the highest
X-Position seen, and what to do with an answer (a value, a wait and a retry,
a follow-up read, or a typed error)."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from racer_profiles_client._calls import Call
from racer_profiles_client._version import __version__
from racer_profiles_client.errors import ProblemError, error_for, unreachable
from racer_profiles_client.models import Accepted, Change, Profile, ProfileErased
from racer_profiles_client.sse import EventDecoder

T = TypeVar("T")

USER_AGENT = f"racer-profiles-client/{__version__} python-httpx/{httpx.__version__}"
STREAM_PATH = "/v1/profiles/stream"
# The stream sends a keep-alive every 15 s: this much silence means the connection is dead.
STREAM_READ_TIMEOUT = 45.0


@dataclass(frozen=True)
class Options:
    base_url: str
    token: str | None
    timeout: float = 10.0
    retries: int = 3
    backoff: float = 0.25
    max_backoff: float = 10.0
    # Waits longer than this (a Retry-After of minutes) are not waited for: the error is raised.
    max_retry_after: float = 30.0
    read_your_writes: bool = True
    user_agent: str = USER_AGENT

    def client_kwargs(self) -> dict[str, Any]:
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return {"base_url": self.base_url, "headers": headers, "timeout": self.timeout}


class Positions:
    """The highest X-Position this client has seen; reads ask the service to
    have applied it (X-Min-Position), so a read never misses a write seen before."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.highest = 0

    def saw(self, response: httpx.Response) -> None:
        value = response.headers.get("X-Position", "")
        if value.isdigit():
            self.raise_to(int(value))

    def raise_to(self, position: int) -> None:
        with self._lock:
            self.highest = max(self.highest, position)


@dataclass(frozen=True)
class Value(Generic[T]):
    value: T


@dataclass(frozen=True)
class Retry:
    delay: float


@dataclass(frozen=True)
class FollowUp(Generic[T]):
    call: Call[T]


class Core:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.positions = Positions()

    def request(self, call: Call[Any]) -> dict[str, Any]:
        headers = dict(call.headers)
        if call.command:
            headers["Idempotency-Key"] = call.idempotency_key
        min_position = call.min_position
        if call.read and self.options.read_your_writes:
            min_position = max(min_position or 0, self.positions.highest) or None
        if min_position:
            headers["X-Min-Position"] = str(min_position)
        kwargs: dict[str, Any] = {"method": call.method, "url": call.path, "headers": headers}
        if call.params:
            kwargs["params"] = call.params
        if call.body is not None:
            kwargs["json"] = call.body
        return kwargs

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After when the service gave one, else exponential backoff with jitter."""
        if retry_after is not None:
            return retry_after
        ceiling: float = min(self.options.max_backoff, self.options.backoff * 2.0**attempt)
        return ceiling * (0.5 + random.random() / 2)

    def may_retry(self, attempt: int, retry_after: float | None = None) -> bool:
        return attempt < self.options.retries and (retry_after or 0) <= self.options.max_retry_after

    def outcome(
        self, call: Call[T], response: httpx.Response, attempt: int
    ) -> Value[T] | Retry | FollowUp[T]:
        self.positions.saw(response)
        status = response.status_code
        if status in call.ok:
            return Value(call.parse(response))
        if status == 202 and call.accepted is not None:
            return FollowUp(call.accepted(Accepted.model_validate(response.json())))
        error = error_for(
            status, response.content, response.headers.get("Content-Type", ""), retry_after(response)
        )
        if status == 404 and call.missing is not None:
            return Value(call.missing())
        if _transient(error) and self.may_retry(attempt, error.retry_after):
            return Retry(self.delay(attempt, error.retry_after))
        raise error


class StreamCursor:
    """Where a live stream is: the last event id to resume after, the wait
    before reconnecting (the server's `retry:`), the failures in a row."""

    def __init__(self, core: Core, last_event_id: int | None) -> None:
        self._core = core
        self.last = last_event_id
        self.wait = 1.0
        self._failures = 0
        self._decoder = EventDecoder()
        self._refusal: Call[None] = Call("GET", STREAM_PATH, lambda response: None)

    def request(self) -> dict[str, Any]:
        headers = {"Accept": "text/event-stream"}
        if self.last is not None:
            headers["Last-Event-ID"] = str(self.last)
        timeout = httpx.Timeout(self._core.options.timeout, read=STREAM_READ_TIMEOUT)
        return {"method": "GET", "url": STREAM_PATH, "headers": headers, "timeout": timeout}

    def connected(self) -> None:
        self._failures = 0
        self._decoder = EventDecoder()

    def refused(self, response: httpx.Response) -> float:
        """A non-200 answer (read): the wait before trying again; raises unless transient."""
        step = self._core.outcome(self._refusal, response, self._failures)
        self._failures += 1
        return step.delay if isinstance(step, Retry) else 0.0

    def dropped(self, error: httpx.TransportError) -> None:
        if not self._core.may_retry(self._failures):
            raise unreachable(self._core.options.base_url, error) from error
        self._failures += 1

    def feed(self, line: str) -> Change | None:
        event = self._decoder.feed(line)
        if event is None:
            return None
        if event.retry is not None:
            self.wait = event.retry / 1000
        if event.id and event.id.isdigit():
            self.last = int(event.id)  # the stream's ids are positions
        if event.event == "profile":
            return Profile.model_validate_json(event.data)
        if event.event == "erased":
            return ProfileErased.model_validate_json(event.data)
        return None  # an event kind newer than this client


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: rare; fall back to backoff


def _transient(error: ProblemError) -> bool:
    # 409 idempotency-in-flight: the same command (same key) is still running; ask again.
    return error.status in (429, 503) or (error.status == 409 and error.kind == "idempotency-in-flight")
