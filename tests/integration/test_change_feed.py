"""The change feed on PostgreSQL: apply() notifies the position, one listener
fans rows out to each account's subscriptions in position order, catches up
after a lost connection, and ends every subscription on stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from uuid import UUID

import psycopg
import pytest

import api.routers.stream as stream_module
import infrastructure.change_feed as feed_module
from api.quotas import BacklogShare
from domain.service import Cause, Outcome
from infrastructure.accounts import Principal
from infrastructure.async_queries import async_queries_for
from infrastructure.change_feed import APPLICATION_NAME, ChangeFeed, Subscription
from infrastructure.container import Container
from infrastructure.profiles_view import CHANGES_CHANNEL
from projections.profiles import changes_for
from projections.rows import ProfileRow

pytestmark = pytest.mark.postgres

CAUSE = Cause("tester", "feed")
WAIT = 10.0
T = TypeVar("T")


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(asyncio.wait_for(main(), 60))


def settle(container: Container, outcome: Outcome) -> int:
    container.view.wait(container.app.name, outcome.position, timeout=WAIT)
    return outcome.position


async def create(container: Container, account: str, name: str) -> UUID:
    outcome = await asyncio.to_thread(container.app.create_profile, account, name, [], CAUSE)
    await asyncio.to_thread(settle, container, outcome)
    return outcome.profile_id


async def collect(subscription: Subscription, done: Callable[[list[ProfileRow]], bool]) -> list[ProfileRow]:
    """Batches until done(rows so far) holds; fails after WAIT seconds."""
    rows: list[ProfileRow] = []
    while not done(rows):
        batch = await subscription.next(WAIT)
        assert batch is not None, "the subscription ended"
        rows.extend(batch)
    return rows


def latest(rows: list[ProfileRow]) -> dict[UUID, ProfileRow]:
    return {row.id: row for row in rows}


def test_apply_notifies_the_last_position_of_each_batch(container: Container) -> None:
    with psycopg.connect(container.settings.database_url or "", autocommit=True) as conn:
        conn.execute(f"LISTEN {CHANGES_CHANNEL}")
        alex = container.app.create_profile("acct", "Alex", [], CAUSE)
        sam = container.app.create_profile("acct", "Sam", [], CAUSE)
        last = container.app.set_default("acct", sam.profile_id, CAUSE)
        settle(container, last)
        notified = [int(n.payload) for n in conn.notifies(timeout=1.0)]
    # The projection applies events in batches and notifies the last position
    # of each batch: every row-changing event is covered.
    app = container.app
    changing = [
        n.id for n in app.recorder.select_notifications(0, 100) if changes_for(app.mapper.to_domain_event(n))
    ]
    assert notified == sorted(set(notified))
    assert all(any(n >= p for n in notified) for p in changing)
    assert notified[-1] == last.position and alex.position <= notified[0]


def test_rows_fan_out_to_their_account_in_position_order(container: Container) -> None:
    feed = container.feed.start()

    async def main() -> None:
        a1, a2 = feed.subscribe("a"), feed.subscribe("a")
        b = feed.subscribe("b")
        alex = await create(container, "a", "Alex")
        sam = await create(container, "a", "Sam")
        kim = await create(container, "b", "Kim")
        outcome = await asyncio.to_thread(container.app.set_default, "a", sam, CAUSE)
        await asyncio.to_thread(settle, container, outcome)

        def has_final(rows: list[ProfileRow]) -> bool:
            seen = latest(rows)
            return sam in seen and seen[sam].is_default and alex in seen and not seen[alex].is_default

        for subscription in (a1, a2):
            rows = await collect(subscription, has_final)
            assert [r.position for r in rows] == sorted(r.position for r in rows)
            assert {r.account_id for r in rows} == {"a"}
        assert latest(await collect(b, lambda rows: kim in latest(rows))).keys() == {kim}
        assert feed.subscriber_count() == 3
        for subscription in (a1, a2, b):
            feed.unsubscribe(subscription)
        assert feed.subscriber_count() == 0

    run(main)


def test_catches_up_on_changes_made_while_not_listening(container: Container) -> None:
    feed = container.feed  # not started yet: nobody listens

    async def main() -> None:
        subscription = feed.subscribe("a")
        alex = await create(container, "a", "Alex")
        feed.start()  # connects, then reads what it missed
        rows = await collect(subscription, lambda rows: alex in latest(rows))
        assert rows[-1].name == "Alex"

    run(main)


def test_reconnects_when_its_connection_is_lost(container: Container) -> None:
    feed = ChangeFeed(container.settings.conninfo(), container.datastore, retry_interval=0.05).start()
    try:
        assert feed.listening.wait(WAIT)

        async def main() -> None:
            subscription = feed.subscribe("a")
            with psycopg.connect(container.settings.database_url or "", autocommit=True) as conn:
                killed = conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = %s AND datname = current_database()",
                    (APPLICATION_NAME,),
                ).fetchone()
            assert killed is not None and killed[0] >= 1
            alex = await create(container, "a", "Alex")
            await collect(subscription, lambda rows: alex in latest(rows))
            sam = await create(container, "a", "Sam")
            await collect(subscription, lambda rows: sam in latest(rows))

        run(main)
    finally:
        feed.stop()


def test_stop_ends_every_subscription_and_later_ones(container: Container) -> None:
    feed = container.feed.start()

    async def main() -> None:
        subscriptions = [feed.subscribe("a") for _ in range(3)]
        await asyncio.to_thread(feed.stop)
        for subscription in subscriptions:
            assert await subscription.next(WAIT) is None
        late = feed.subscribe("a")
        assert await late.next(WAIT) is None

    run(main)


def test_a_subscription_that_falls_behind_is_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its client reads too slowly: it ends, and the client resumes from its Last-Event-ID."""
    monkeypatch.setattr(feed_module, "MAX_QUEUED_BATCHES", 2)

    async def main() -> None:
        slow = Subscription("a", asyncio.get_running_loop())
        for _ in range(4):
            slow._deliver([])
        assert slow.ended
        assert [await slow.next(WAIT) for _ in range(3)] == [[], [], None]
        assert slow.queue.empty()

    run(main)


def test_event_stream_ids_keepalive_and_no_repeats(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_module, "KEEPALIVE_SECONDS", 0.05)
    feed = container.feed.start()

    async def main() -> None:
        alex = await create(container, "a", "Alex")
        subscription = feed.subscribe("a")
        queries = async_queries_for(container.settings, container.queries)
        await queries.open()
        next_page = stream_module._pages(
            lambda after, limit: queries.changed_page("a", after, limit), 100, BacklogShare()
        )
        backlog = await next_page((0, stream_module._AFTER_EVERY_ID))
        assert backlog is not None
        pages = stream_module._backlog(backlog, next_page)
        events = stream_module._events(subscription, pages, 0, Principal("a", "owner"))
        assert await anext(events) == b"retry: 1000\n\n"
        assert b'"name":"Alex"' in await anext(events)
        assert await anext(events) == b": keep-alive\n\n"
        sam = await create(container, "a", "Sam")
        outcome = await asyncio.to_thread(container.app.set_default, "a", sam, CAUSE)
        await asyncio.to_thread(settle, container, outcome)
        chunks = []
        while not any(b'"is_default":true' in c and b"Sam" in c for c in chunks):
            chunk = await anext(events)
            if chunk != b": keep-alive\n\n":
                chunks.append(chunk)
        text = b"".join(chunks).decode()
        # The old and the new default share a position: one id, after both.
        blocks = [b for b in text.split("\n\n") if b]
        default_blocks = [b for b in blocks if f'"position":{outcome.position}' in b]
        assert len(default_blocks) == 2
        assert not default_blocks[0].startswith("id:")
        assert default_blocks[1].startswith(f"id: {outcome.position}\n")
        # Nothing the backlog held is sent again.
        assert all(f'"position":{backlog.cursor[0]}}}' not in b for b in blocks)
        await events.aclose()
        feed.unsubscribe(subscription)
        await queries.close()
        assert backlog.cursor[1] == alex

    run(main)


def test_a_wait_without_a_runner_here_is_woken_by_the_feed_not_by_polling(
    settings: Any, container: Container
) -> None:
    """An API process (no runner of its own: the projector is another process)
    hears the projector's commits through its feed: a command's wait returns
    on the notification, without asking the database for the position."""
    from infrastructure.container import build

    api = build(settings)  # like serve's API process: the runner is `container`'s
    try:
        api.feed.start()
        assert api.feed.listening.wait(WAIT)
        asked: list[int] = []
        position = api.view.position

        def counted(name: str) -> int:
            asked.append(1)
            return position(name)

        api.view.position = counted  # type: ignore[method-assign]
        for name in ("Alex", "Sam", "Kim"):
            outcome = api.app.create_profile("woken", name, [], CAUSE)
            api.view.wait(api.app.name, outcome.position, timeout=WAIT)
            assert api.queries.get("woken", outcome.profile_id) is not None
        assert asked == [], "the wait polled the database although the feed listens"
    finally:
        api.close()


@pytest.mark.parametrize("page_size", [1, 2, 100])
def test_the_backlog_goes_out_in_pages_without_splitting_a_position(
    container: Container, page_size: int
) -> None:
    """Pages of any size give the same events; rows sharing a position (the old and
    the new default) are never split by an `id:` line, so a resume misses none."""
    account = f"pages-{page_size}"

    async def main() -> bytes:
        ids = [await create(container, account, f"P{i}") for i in range(4)]
        outcome = await asyncio.to_thread(container.app.set_default, account, ids[2], CAUSE)
        await asyncio.to_thread(settle, container, outcome)
        queries = async_queries_for(container.settings, container.queries)
        await queries.open()
        try:
            next_page = stream_module._pages(
                lambda after, limit: queries.changed_page(account, after, limit), page_size, BacklogShare()
            )
            first = await next_page((0, stream_module._AFTER_EVERY_ID))
            pages = [page async for page, _ in stream_module._backlog(first, next_page)]
        finally:
            await queries.close()
        assert len(pages) == -(-4 // page_size)  # 4 rows: ids[0] and ids[2] share the last position
        return b"".join(pages)

    blocks = [b for b in run(main).decode().split("\n\n") if b]
    assert len(blocks) == 4
    positions = [int(b.split('"position":')[1].rstrip("}")) for b in blocks]
    assert positions == sorted(positions) and positions[-1] == positions[-2]
    with_ids = [b.startswith("id:") for b in blocks]
    assert with_ids == [True, True, False, True], blocks


def test_an_async_wait_is_woken_by_a_commit_and_times_out(container: Container) -> None:
    view = container.view
    asks: list[int] = []

    async def readers_position() -> int:
        asks.append(1)
        return await asyncio.to_thread(view.position, container.app.name)

    async def main() -> None:
        container.feed.start()
        assert await asyncio.to_thread(container.feed.listening.wait, WAIT)
        outcome = await asyncio.to_thread(container.app.create_profile, "w", "Wes", [], CAUSE)
        # The runner (a thread here) applies it; its commit wakes the parked wait.
        await view.wait_async(outcome.position, WAIT, readers_position)
        assert view.has_reached(outcome.position)
        with pytest.raises(TimeoutError):
            await view.wait_async(outcome.position + 10, 0.3, readers_position)

    run(main)
    assert len(asks) <= 5, "a wait the feed wakes asks the database only every 100 ms"


def test_a_revocation_reaches_the_feed_and_ends_that_tokens_streams(container: Container) -> None:
    heard: list[str | None] = []
    feed = container.feed
    feed.on_token_revoked = heard.append
    account = container.accounts.create("Rev")

    async def main() -> None:
        feed.start()
        assert await asyncio.to_thread(feed.listening.wait, WAIT)
        doomed = feed.subscribe(str(account.account_id), account.token_id)
        other = feed.subscribe(str(account.account_id), "another")
        assert await asyncio.to_thread(container.accounts.revoke, account.token_id)
        assert await doomed.next(WAIT) is None  # ended
        with pytest.raises(TimeoutError):
            await other.next(0.2)
        feed.unsubscribe(doomed)
        feed.unsubscribe(other)

    run(main)
    assert heard == [None, account.token_id]  # None: the (first) connect
