"""A reader of GET /v1/profiles/stream on a thread of its own, for the end-to-end tests
of the stream and of token revocation (which ends a token's streams)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

WAIT = 10.0  # seconds a stream may take to show a change (it takes milliseconds)


class Reader:
    """One stream, read by a thread; events are kept as (id, profile)."""

    def __init__(
        self, base_url: str, token: str, last_event_id: str | None = None, via_query: bool = False
    ) -> None:
        self.headers: dict[str, str] = {"Accept": "text/event-stream"}
        self.params: dict[str, str] = {}
        if via_query:
            self.params["access_token"] = token
            if last_event_id is not None:
                self.params["last_event_id"] = last_event_id
        else:
            self.headers["Authorization"] = f"Bearer {token}"
            if last_event_id is not None:
                self.headers["Last-Event-ID"] = last_event_id
        self.url = f"{base_url}/v1/profiles/stream"
        self.events: list[tuple[str | None, dict[str, Any]]] = []
        self.erased: list[tuple[str | None, dict[str, Any]]] = []
        self.comments: list[str] = []
        self.error: BaseException | None = None
        self.ended_cleanly = False
        self._changed = threading.Condition()
        self._ready = threading.Event()
        self._response: httpx.Response | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(WAIT), "the stream did not start"
        assert self.error is None, self.error

    def _run(self) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(WAIT, read=None)) as client,
                client.stream("GET", self.url, headers=self.headers, params=self.params) as response,
            ):
                self._response = response
                assert response.status_code == 200, response.read()
                assert response.headers["content-type"].startswith("text/event-stream")
                block: list[str] = []
                for line in response.iter_lines():
                    if line:
                        block.append(line)
                        continue
                    self._take(block)
                    block = []
            self.ended_cleanly = True
        except BaseException as e:  # reported to the test
            if not self._closing:
                self.error = e
        finally:
            self._ready.set()
            with self._changed:
                self._changed.notify_all()

    def _take(self, block: list[str]) -> None:
        fields: dict[str, str] = {}
        for line in block:
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if "retry" in fields:
            self._ready.set()
        kind = fields.get("event")
        if kind in ("profile", "erased"):
            with self._changed:
                (self.events if kind == "profile" else self.erased).append(
                    (fields.get("id"), json.loads(fields["data"]))
                )
                self._changed.notify_all()

    def latest(self) -> dict[str, dict[str, Any]]:
        with self._changed:
            return {profile["id"]: profile for _, profile in self.events}

    def wait_for(self, check: Callable[[Reader], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        with self._changed:
            while not check(self):
                remaining = deadline - time.monotonic()
                assert remaining > 0 and self._thread.is_alive(), f"stream never showed {what}: {self.events}"
                self._changed.wait(remaining)

    def last_id(self) -> str:
        ids = [event_id for event_id, _ in self.events if event_id is not None]
        return ids[-1]

    def close(self) -> bool:
        """Drops the connection, as a client going away does (a blocked read
        only wakes up when its socket is shut down); whether the reader stopped."""
        self._closing = True
        if self._response is not None:
            stream = self._response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        return self.join(WAIT)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()
