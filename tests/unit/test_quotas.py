"""The bulkheads' counting: caps per token, per account and per process, and
nothing counted for a refused request; the streams' backlog share."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from api.problems import Problem
from api.quotas import STREAM_PATH, BacklogShare, ForegroundRequests, Quotas
from infrastructure.settings import Settings


def quotas(**limits: int) -> Quotas:
    return Quotas(Settings(database_url="postgresql://x@127.0.0.1/x", **limits))


def test_waits_per_token_are_capped_and_given_back() -> None:
    q = quotas(max_waits_per_token=2)
    with q.wait("t1"), q.wait("t1"):
        with pytest.raises(Problem) as refused, q.wait("t1"):
            pass
        assert refused.value.status == 429
        assert refused.value.headers["Retry-After"] == "1"
        with q.wait("t2"):  # another token is not affected
            pass
    with q.wait("t1"), q.wait("t1"):  # both given back, even the refused one took nothing
        pass
    assert not q.waits.held


def test_a_wait_that_fails_gives_its_slot_back() -> None:
    q = quotas(max_waits_per_token=1)
    with pytest.raises(TimeoutError), q.wait("t"):
        raise TimeoutError
    with q.wait("t"):
        pass


@pytest.mark.parametrize(
    ("opened", "token", "account", "status"),
    [
        ([("t1", "a")] * 2, "t1", "a", 429),  # the token's cap
        ([("t1", "a"), ("t2", "a"), ("t3", "a")], "t4", "a", 429),  # the account's cap
        ([("t1", "a"), ("t2", "b"), ("t3", "c"), ("t4", "d")], "t5", "e", 503),  # the process's cap
    ],
)
def test_stream_caps(opened: list[tuple[str, str]], token: str, account: str, status: int) -> None:
    q = quotas(max_streams_per_token=2, max_streams_per_account=3, max_streams=4)
    for t, a in opened:
        q.open_stream(t, a)
    with pytest.raises(Problem) as refused:
        q.open_stream(token, account)
    assert refused.value.status == status
    assert int(refused.value.headers["Retry-After"]) >= 1
    # A refused stream counted nothing; closing one makes room again.
    q.close_stream(*opened[-1])
    q.open_stream(token, account)
    q.close_stream(token, account)
    for t, a in opened[:-1]:
        q.close_stream(t, a)
    assert not (q.streams.held or q.token_streams.held or q.account_streams.held)


# --- the streams' backlog share ----------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def share_with_fake_time() -> tuple[BacklogShare, FakeTime]:
    fake = FakeTime()
    return BacklogShare(pace=3.0, clock=fake.clock, sleep=fake.sleep), fake


def test_a_backlog_step_runs_at_full_speed_when_no_request_is_in_flight() -> None:
    share, fake = share_with_fake_time()

    async def run() -> None:
        async with share.step():
            fake.now += 0.01

    asyncio.run(run())
    assert fake.slept == []


@pytest.mark.parametrize("finished_during_the_step", [False, True])
def test_a_backlog_step_yields_pace_times_its_duration_to_requests(finished_during_the_step: bool) -> None:
    share, fake = share_with_fake_time()

    async def run() -> None:
        async with share.step():
            fake.now += 0.01
            share.in_flight += 1
            share.started += 1
            if finished_during_the_step:  # a short request, answered before the step ended
                share.in_flight -= 1

    asyncio.run(run())
    assert fake.slept == [pytest.approx(0.03)]


def test_backlog_steps_take_turns_pause_included() -> None:
    share, fake = share_with_fake_time()
    order: list[str] = []
    share.in_flight = 1  # a request in flight all along: every step pauses

    async def step(name: str) -> None:
        async with share.step():
            order.append(f"{name} in")
            await asyncio.sleep(0)  # the other step gets the loop, not the turn
            fake.now += 0.01
            order.append(f"{name} out")

    async def run() -> None:
        await asyncio.gather(step("a"), step("b"))

    asyncio.run(run())
    assert order == ["a in", "a out", "b in", "b out"]
    assert len(fake.slept) == 2


def test_requests_are_counted_while_in_flight_streams_and_failures_included() -> None:
    share, _ = share_with_fake_time()
    seen: list[tuple[str, int]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append((scope.get("path", scope["type"]), share.in_flight))
        if scope.get("path") == "/boom":
            raise RuntimeError("boom")

    counting = ForegroundRequests(app, share)

    async def run() -> None:
        for path in ("/healthz", STREAM_PATH, "/boom"):
            with contextlib.suppress(RuntimeError):
                await counting({"type": "http", "path": path}, None, None)
        await counting({"type": "lifespan"}, None, None)

    asyncio.run(run())
    # A stream is not counted (it lasts; its backlog is what yields); a failed request was.
    assert seen == [("/healthz", 1), (STREAM_PATH, 0), ("/boom", 1), ("lifespan", 0)]
    assert (share.in_flight, share.started) == (0, 2)


def test_the_stream_route_is_the_one_not_counted() -> None:
    from api.app import offline_document

    assert "get" in offline_document()["paths"][STREAM_PATH]
