"""The client without a server: its coverage of openapi.json, and the answers
the real service rarely gives on cue (429, 202, a Retry-After), from a fake
transport."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from racer_profiles_client import (
    OPERATIONS,
    AsyncClient,
    Client,
    Profile,
    ProfileErased,
    RateLimited,
    Unavailable,
)
from racer_profiles_client.sse import EventDecoder

OPENAPI = Path(__file__).resolve().parents[2] / "openapi.json"
PROFILE = {
    "id": "de1d7d41-3874-4b4a-8823-6037f8eb19f9",
    "name": "Alex",
    "details": None,
    "is_default": True,
    "archived": False,
    "vehicles": [],
    "vehicle_count": 0,
    "version": 1,
    "created_at": "2026-11-24T00:07:46.629161+00:00",
    "updated_at": "2026-11-24T00:07:46.629161+00:00",
}


def test_the_client_has_a_method_for_every_operation_of_openapi_json() -> None:
    spec = json.loads(OPENAPI.read_text())
    served = {
        op["operationId"]: (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method, op in operations.items()
    }
    missing = sorted(set(served) - set(OPERATIONS))
    assert not missing, f"openapi.json has operations the Python client lacks: {missing}"
    for operation_id, (name, method, path) in OPERATIONS.items():
        assert served.get(operation_id) == (method, path), operation_id
        assert callable(getattr(Client, name, None)), f"Client.{name}"
        assert callable(getattr(AsyncClient, name, None)), f"AsyncClient.{name}"
        sync_params = list(inspect.signature(getattr(Client, name)).parameters)
        async_params = list(inspect.signature(getattr(AsyncClient, name)).parameters)
        assert sync_params == async_params, name


def fake(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return Client("http://service", "rp_t", backoff=0.001, transport=httpx.MockTransport(record)), seen


def problem(status: int, kind: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/problem+json"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    body = {"type": f"https://racer-profiles.dev/problems/{kind}", "title": kind, "status": status}
    return httpx.Response(status, json=body, headers=headers)


def test_429_is_retried_as_retry_after_says_then_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("racer_profiles_client.client.time.sleep", waits.append)
    answers = iter([problem(429, "too-many-requests", "2"), httpx.Response(200, json=PROFILE)])
    client, seen = fake(lambda request: next(answers))
    assert client.get_profile(PROFILE["id"]).name == "Alex"
    assert waits == [2.0] and len(seen) == 2

    client, seen = fake(lambda request: problem(429, "too-many-requests", "0"))
    with pytest.raises(RateLimited) as limited:
        client.get_default()
    assert len(seen) == 4 and limited.value.retry_after == 0.0  # the first try and 3 retries


def test_503_is_retried_then_raised_as_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("racer_profiles_client.client.time.sleep", waits.append)
    client, seen = fake(lambda request: problem(503, "unavailable", "1"))
    with pytest.raises(Unavailable) as unavailable:
        client.list_profiles().__next__()
    assert len(seen) == 4 and waits == [1.0, 1.0, 1.0] and unavailable.value.retry_after == 1.0
    # Without Retry-After: exponential backoff, with jitter, from `backoff`.
    waits.clear()
    client, seen = fake(lambda request: httpx.Response(503, text="<html>proxy error</html>"))
    with pytest.raises(Unavailable) as unavailable:
        client.get_default()
    assert unavailable.value.problem.detail == "<html>proxy error</html>"
    assert len(waits) == 3 and all(0.5 * 0.001 * 2**i <= w <= 0.001 * 2**i for i, w in enumerate(waits))


def test_a_retry_after_beyond_the_bound_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("racer_profiles_client.client.time.sleep", lambda s: pytest.fail(f"waited {s}s"))
    client, seen = fake(lambda request: problem(429, "too-many-requests", "3600"))
    with pytest.raises(RateLimited):
        client.get_default()
    assert len(seen) == 1


def test_a_202_is_followed_by_a_read_at_the_commands_position() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            accepted = {"profile_id": PROFILE["id"], "position": 41}
            return httpx.Response(202, json=accepted, headers={"X-Position": "41"})
        return httpx.Response(200, json=PROFILE, headers={"ETag": '"1"'})

    client, seen = fake(handler)
    alex = client.create_profile("Alex")
    assert str(alex.id) == PROFILE["id"] and alex.position == 41
    assert [r.method for r in seen] == ["POST", "GET"]
    assert seen[1].headers["X-Min-Position"] == "41"
    assert seen[0].headers["Idempotency-Key"].startswith("rpc-")


def test_each_command_gets_its_own_idempotency_key() -> None:
    client, seen = fake(lambda request: httpx.Response(201, json=PROFILE))
    client.create_profile("Alex")
    client.create_profile("Alex")
    assert seen[0].headers["Idempotency-Key"] != seen[1].headers["Idempotency-Key"]


def test_the_event_decoder_reads_the_streams_format() -> None:
    decoder = EventDecoder()
    lines = ["retry: 1000", "", ": keep-alive", "event: profile", 'data: {"a":', "data: 1}", "", "id: 7"]
    lines += ["event: profile", "data: {}", ""]
    events = [e for e in map(decoder.feed, lines) if e is not None]
    assert [(e.event, e.data, e.id, e.retry) for e in events] == [
        ("message", "", None, 1000),
        ("profile", '{"a":\n1}', None, None),
        ("profile", "{}", "7", None),
    ]


def test_the_stream_yields_erasures_as_well_as_profiles() -> None:
    erased = {"id": PROFILE["id"], "erased_at": "2026-11-24T00:09:00+00:00", "position": 9}
    body = (
        f"retry: 1000\n\nid: 7\nevent: profile\ndata: {json.dumps({**PROFILE, 'position': 7})}\n\n"
        f"id: 9\nevent: erased\ndata: {json.dumps(erased)}\n\n"
        "id: 10\nevent: newer-kind\ndata: {}\n\n"  # a kind this client does not know: passed over
        f"id: 11\nevent: profile\ndata: {json.dumps({**PROFILE, 'name': 'Sam', 'position': 11})}\n\n"
    )
    client, _ = fake(
        lambda request: httpx.Response(200, text=body, headers={"Content-Type": "text/event-stream"})
    )
    changes = client.changes()
    first, second, third = next(changes), next(changes), next(changes)
    changes.close()
    assert isinstance(first, Profile) and (first.name, first.position) == ("Alex", 7)
    assert isinstance(second, ProfileErased)
    assert (str(second.id), second.erased_at.isoformat(), second.position) == (
        PROFILE["id"],
        "2026-11-24T00:09:00+00:00",
        9,
    )
    assert isinstance(third, Profile) and (third.name, third.position) == ("Sam", 11)
