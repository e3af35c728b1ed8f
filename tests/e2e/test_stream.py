"""GET /v1/profiles/stream against the real server: several streams get every
change in position order; Last-Event-ID resumes without a gap; one shared
database listener; streams end cleanly when the server shuts down."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from e2e_helpers import assert_problem, auth, create, list_all

from tests.support.service import Service, running_service

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

    def close(self) -> None:
        """Drops the connection, as a client going away does (a blocked read
        only wakes up when its socket is shut down)."""
        self._closing = True
        if self._response is not None:
            stream = self._response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        assert self.join(WAIT), "the stream's reader did not stop"

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


@pytest.fixture
def readers(service: Service) -> Iterator[Callable[..., Reader]]:
    opened: list[Reader] = []

    def open_reader(token: str, **kwargs: Any) -> Reader:
        reader = Reader(service.base_url, token, **kwargs)
        opened.append(reader)
        return reader

    yield open_reader
    for reader in opened:
        reader.close()


KEYS = ("name", "is_default", "archived", "version", "vehicle_count")


def matches(latest: dict[str, dict[str, Any]], final: list[dict[str, Any]]) -> bool:
    """The latest state seen of every profile is its final one."""
    return all(p["id"] in latest and all(latest[p["id"]][k] == p[k] for k in KEYS) for p in final)


def shows(final: list[dict[str, Any]]) -> Callable[[Reader], bool]:
    return lambda reader: matches(reader.latest(), final)


def assert_ordered(reader: Reader, after: int = 0) -> None:
    positions = [p["position"] for _, p in reader.events]
    assert positions == sorted(positions), positions
    assert all(p > after for p in positions), (after, positions)
    ids = [int(i) for i, _ in reader.events if i is not None]
    assert ids == sorted(set(ids)), ids
    # The id goes on the last event of each position, so no event is skipped on resume.
    for (event_id, profile), following in zip(
        reader.events, [*reader.events[1:], (None, None)], strict=False
    ):
        last_of_position = following[1] is None or following[1]["position"] != profile["position"]
        assert (event_id == str(profile["position"])) == last_of_position, reader.events


def command(client: httpx.Client, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    response = client.request(method, path, headers=auth(token), **kwargs)
    assert response.status_code in (200, 201), response.text
    return response


def test_several_streams_get_every_change_in_position_order(
    client: httpx.Client, token: str, readers: Callable[..., Reader]
) -> None:
    first_stream = readers(token)
    streams = [readers(token) for _ in range(3)]
    alex = create(client, token, "Alex")
    sam = create(client, token, "Sam", vehicles=[{"name": "Rotax Max"}])
    command(client, token, "PUT", "/v1/profiles/default", json={"profile_id": sam["id"]})
    command(client, token, "PATCH", f"/v1/profiles/{alex['id']}", json={"name": "Alex Jr"})
    command(client, token, "POST", f"/v1/profiles/{alex['id']}/vehicles", json={"name": "Spare"})
    command(client, token, "POST", f"/v1/profiles/{sam['id']}/archive", json={"successor_id": alex["id"]})
    command(client, token, "POST", f"/v1/profiles/{sam['id']}/restore")
    final = list_all(client, token, include_archived=True)

    for stream in [*streams, first_stream]:
        stream.wait_for(shows(final), "the final state")
        assert_ordered(stream)
        assert set(stream.latest()) == {alex["id"], sam["id"]}
    # One fan-out: every stream of the account saw the same events.
    sequences = [[(i, p["id"], p["position"]) for i, p in s.events] for s in streams]
    assert sequences[0] == sequences[1] == sequences[2]


def test_streams_see_an_erased_profile_go_and_new_streams_never_mention_it(
    client: httpx.Client, token: str, readers: Callable[..., Reader]
) -> None:
    live = readers(token)
    alex = create(client, token, "Alex")
    sam = create(client, token, "Sam")
    live.wait_for(lambda r: {alex["id"], sam["id"]} <= set(r.latest()), "both profiles")
    resume_from = live.last_id()
    erased = client.delete(f"/v1/profiles/{sam['id']}", headers=auth(token))
    assert erased.status_code == 200, erased.text
    receipt = erased.json()

    live.wait_for(lambda r: any(e["id"] == sam["id"] for _, e in r.erased), "the erasure")
    [(event_id, gone)] = live.erased
    assert gone == {"id": sam["id"], "erased_at": receipt["erased_at"], "position": gone["position"]}
    assert event_id == str(gone["position"]) and gone["position"] <= receipt["position"]
    assert "Sam" not in json.dumps(live.erased)
    # Alex took over the default, in the same change.
    live.wait_for(lambda r: r.latest()[alex["id"]]["is_default"], "the new default")

    resumed = readers(token, last_event_id=resume_from)
    resumed.wait_for(lambda r: bool(r.erased), "the erasure after resuming")
    fresh = readers(token)
    fresh.wait_for(lambda r: alex["id"] in r.latest(), "the live profile")
    assert fresh.erased == [] and sam["id"] not in fresh.latest()


def test_streams_see_only_their_account(
    client: httpx.Client, new_token: Callable[..., str], readers: Callable[..., Reader]
) -> None:
    mine, theirs = new_token(), new_token()
    my_stream = readers(mine)
    their_stream = readers(theirs)
    their_profile = create(client, theirs, "Theirs")
    my_profile = create(client, mine, "Mine")
    my_stream.wait_for(lambda r: my_profile["id"] in r.latest(), "my profile")
    their_stream.wait_for(lambda r: their_profile["id"] in r.latest(), "their profile")
    assert set(my_stream.latest()) == {my_profile["id"]}
    assert set(their_stream.latest()) == {their_profile["id"]}


def test_reconnecting_with_last_event_id_misses_nothing(
    client: httpx.Client, token: str, readers: Callable[..., Reader]
) -> None:
    first = readers(token)
    alex = create(client, token, "Alex")
    sam = create(client, token, "Sam")
    first.wait_for(shows(list_all(client, token)), "both profiles")
    last_seen = first.last_id()
    before = first.latest()
    first.close()

    # While no stream is open: a new default, a rename, a new profile with a vehicle.
    command(client, token, "PUT", "/v1/profiles/default", json={"profile_id": sam["id"]})
    command(client, token, "PATCH", f"/v1/profiles/{alex['id']}", json={"name": "Alex Jr"})
    kim = create(client, token, "Kim")
    command(client, token, "POST", f"/v1/profiles/{kim['id']}/vehicles", json={"name": "Kart"})
    final = list_all(client, token)

    header = readers(token, last_event_id=last_seen)
    query = readers(token, last_event_id=last_seen, via_query=True)  # EventSource style
    for resumed in (header, query):
        resumed.wait_for(shows(final), "the changes made while disconnected")
        assert_ordered(resumed, after=int(last_seen))
        # What the first stream saw, updated by what the resumed one sent, is the truth.
        assert matches({**before, **resumed.latest()}, final)
    assert [p for _, p in header.events] == [p for _, p in query.events]

    # Live changes follow the backlog on a resumed stream.
    command(client, token, "PATCH", f"/v1/profiles/{kim['id']}", json={"name": "Kim R"})
    header.wait_for(shows(list_all(client, token)), "a live change after the backlog")
    assert_ordered(header, after=int(last_seen))

    # Resuming at the head sends nothing old; no Last-Event-ID sends every profile.
    at_head = readers(token, last_event_id=header.last_id())
    everything = readers(token)
    everything.wait_for(shows(list_all(client, token)), "every profile")
    command(client, token, "PATCH", f"/v1/profiles/{sam['id']}", json={"name": "Sam R"})
    at_head.wait_for(lambda r: any(p["name"] == "Sam R" for _, p in r.events), "the rename")
    assert [p["name"] for _, p in at_head.events] == ["Sam R"]


def test_stream_auth_and_bad_last_event_id(client: httpx.Client, token: str) -> None:
    assert_problem(client.get("/v1/profiles/stream"), 401, "unauthorized")
    assert_problem(client.get("/v1/profiles/stream", params={"access_token": "rp_nope"}), 401, "unauthorized")
    assert_problem(
        client.get("/v1/profiles/stream", headers=auth(token, **{"Last-Event-ID": "abc"})), 422, "validation"
    )


def test_one_shared_listener_whatever_the_number_of_streams(
    service: Service, client: httpx.Client, token: str, readers: Callable[..., Reader]
) -> None:
    def listeners() -> int:
        with psycopg.connect(service.database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'racer-profiles-feed'"
            ).fetchone()
        return int(row[0]) if row else 0

    assert listeners() == 1
    streams = [readers(token) for _ in range(6)]
    assert listeners() == 1
    profile = create(client, token, "Alex")
    for stream in streams:
        stream.wait_for(lambda r: profile["id"] in r.latest(), "the new profile")
    assert listeners() == 1


def test_streams_end_cleanly_on_shutdown(pg_server_url: str, e2e_logs: Path) -> None:
    with running_service(pg_server_url, e2e_logs) as own:
        token = own.new_token()
        streams = [Reader(own.base_url, token) for _ in range(3)]
        own.process.send_signal(signal.SIGTERM)
        for stream in streams:
            assert stream.join(WAIT), "a stream outlived the shutdown"
            assert stream.error is None and stream.ended_cleanly, stream.error
        own.process.wait(timeout=WAIT)
        assert "Waiting for connections to close" not in own.log()
