"""GET /v1/profiles/stream against the real server: several streams get every
change in position order; Last-Event-ID resumes without a gap; one shared
database listener; streams end cleanly when the server shuts down."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from e2e_helpers import assert_problem, auth, create, list_all
from stream_reader import WAIT, Reader

from tests.support.service import Service, running_service


@pytest.fixture
def readers(service: Service) -> Iterator[Callable[..., Reader]]:
    opened: list[Reader] = []

    def open_reader(token: str, **kwargs: Any) -> Reader:
        reader = Reader(service.base_url, token, **kwargs)
        opened.append(reader)
        return reader

    yield open_reader
    for reader in opened:
        reader.close()  # whether it stopped is for a test to assert, not the teardown


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
    assert first.close(), "the stream's reader did not stop"

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
