"""The change feed: ONE database listener that fans profile changes out to
every open stream (GET /v1/profiles/stream).

The view sends `NOTIFY racer_profiles_changed, '<position>'` in each of the
projector's transactions (the position of its last event: every position up
to it is then committed); the feed also tells the view, whose waits it wakes. One thread holds one dedicated connection that
LISTENs; on a notification it reads, with ONE query through the shared pool,
every row of the subscribed accounts whose position is past the last one it
dispatched, and hands each account's rows (in position order) to that
account's subscriptions, on their event loop (call_soon_threadsafe). Streams
therefore hold no database connection; they borrow a pooled one only for each
page of their initial backlog.

The same connection LISTENs for token revocations
(infrastructure/accounts.py): each is handed to `on_token_revoked`, and the
revoked token's subscriptions end. After a reconnect `on_token_revoked(None)`
says that revocations may have been missed.

A row's position is the position of the last event applied to it, so a batch
carries the latest state of each changed profile: intermediate states of one
profile may be collapsed, never its final one. The rows of one position
(e.g. the old and the new default) always arrive in the same batch.

If the LISTEN connection drops, the thread reconnects and catches up from its
last position, so nothing committed meanwhile is lost."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

from infrastructure.accounts import REVOCATIONS_CHANNEL
from infrastructure.profile_queries import COLUMNS
from infrastructure.profiles_sql import TABLE
from infrastructure.profiles_view import CHANGES_CHANNEL
from projections.rows import ProfileRow

log = logging.getLogger(__name__)

APPLICATION_NAME = "racer-profiles-feed"
# A subscription whose client reads slower than this many batches is ended;
# the client resumes from its Last-Event-ID without losing anything.
MAX_QUEUED_BATCHES = 1000


class _End:
    """Put on a subscription's queue when it must end (shutdown, overflow)."""


END = _End()


@dataclass(eq=False)
class Subscription:
    """One stream's view of the feed: batches of its account's changed rows."""

    account_id: str
    loop: asyncio.AbstractEventLoop
    token_id: str = ""
    queue: asyncio.Queue[list[ProfileRow] | _End] = field(default_factory=asyncio.Queue)
    ended: bool = False

    def _deliver(self, item: list[ProfileRow] | _End) -> None:
        """Runs on the subscription's loop."""
        if self.ended:
            return
        if isinstance(item, _End) or self.queue.qsize() >= MAX_QUEUED_BATCHES:
            self.ended = True
            item = END
        self.queue.put_nowait(item)

    async def next(self, timeout: float) -> list[ProfileRow] | None:
        """The next batch; None once the subscription has ended; TimeoutError
        when nothing came within timeout seconds."""
        item = await asyncio.wait_for(self.queue.get(), timeout)
        return None if isinstance(item, _End) else item


class ChangeFeed:
    def __init__(
        self,
        conninfo: dict[str, Any],
        datastore: PostgresDatastore,
        *,
        table: str = TABLE,
        poll_interval: float = 0.25,
        retry_interval: float = 0.5,
        on_position: Callable[[int], None] | None = None,
        on_token_revoked: Callable[[str | None], None] | None = None,
        listening: threading.Event | None = None,
    ) -> None:
        self.conninfo = dict(conninfo)
        # Told every committed position as it is heard (the view wakes its waits).
        self.on_position = on_position
        # Told each revoked token's id as it is heard (None: after a reconnect).
        self.on_token_revoked = on_token_revoked
        self.datastore = datastore
        self.poll_interval = poll_interval
        self.retry_interval = retry_interval
        t = SQL("{}.{}").format(Identifier(datastore.schema), Identifier(table))
        self._changed_for = SQL(
            "SELECT {c} FROM {t} WHERE position > %s AND account_id = ANY(%s) ORDER BY position, id"
        ).format(c=COLUMNS, t=t)
        self._lock = threading.Lock()
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._last = 0  # rows up to this position were dispatched
        self._target = 0  # the highest position notified
        self._pending = False  # a notified change is not dispatched yet
        self._closing = False
        self._stopping = threading.Event()
        self.listening = listening or threading.Event()  # set while the LISTEN connection is up
        self._thread: threading.Thread | None = None

    # --- control --------------------------------------------------------

    def start(self) -> ChangeFeed:
        with self._lock:
            if self._thread is None:
                self._stopping.clear()
                self._closing = False
                self._thread = threading.Thread(target=self._run, name="change-feed", daemon=True)
                self._thread.start()
        return self

    def end_streams(self) -> None:
        """Ends every subscription, and every later one at once (shutdown)."""
        with self._lock:
            self._closing = True
            subscriptions = [s for subs in self._subscriptions.values() for s in subs]
        for subscription in subscriptions:
            _call(subscription, END)

    def stop(self, timeout: float = 5.0) -> None:
        self.end_streams()
        self._stopping.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # --- subscriptions (called on the stream's event loop) ---------------

    def subscribe(self, account_id: str, token_id: str = "") -> Subscription:
        subscription = Subscription(account_id, asyncio.get_running_loop(), token_id)
        with self._lock:
            if self._closing:
                subscription._deliver(END)
            else:
                self._subscriptions.setdefault(account_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            subs = self._subscriptions.get(subscription.account_id)
            if subs is not None:
                subs.discard(subscription)
                if not subs:
                    del self._subscriptions[subscription.account_id]

    def subscriber_count(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subscriptions.values())

    def token_ids(self) -> list[str]:
        """The tokens of the open subscriptions."""
        with self._lock:
            return sorted({s.token_id for subs in self._subscriptions.values() for s in subs if s.token_id})

    def end_token_streams(self, token_id: str) -> None:
        """Ends the subscriptions opened with token_id (it was revoked)."""
        with self._lock:
            ending = [s for subs in self._subscriptions.values() for s in subs if s.token_id == token_id]
        for subscription in ending:
            _call(subscription, END)

    # --- the listener thread ----------------------------------------------

    def _fetch(self, statement: Any, params: Sequence[Any]) -> list[ProfileRow]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            return [ProfileRow(**r) for r in curs.fetchall()]

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(
                    **self.conninfo,
                    autocommit=True,
                    connect_timeout=5,
                    application_name=APPLICATION_NAME,
                ) as conn:
                    conn.execute(SQL("LISTEN {}").format(Identifier(CHANGES_CHANNEL)))
                    conn.execute(SQL("LISTEN {}").format(Identifier(REVOCATIONS_CHANNEL)))
                    # Whatever was committed or revoked while nobody listened.
                    self._pending = True
                    if self.on_token_revoked is not None:
                        self.on_token_revoked(None)
                    self.listening.set()
                    self._listen(conn)
            except Exception as e:  # the database went away: retry until it is back
                if not self._stopping.is_set():
                    log.warning("change feed lost the database: %s; reconnecting", e)
            finally:
                self.listening.clear()
            self._stopping.wait(self.retry_interval)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stopping.is_set():
            if self._pending:
                try:
                    self._dispatch()
                except Exception as e:  # e.g. the pool is busy: keep it pending, retry
                    log.warning("change feed could not read changes: %s; retrying", e)
                    self._stopping.wait(self.retry_interval)
            for notify in conn.notifies(timeout=self.poll_interval, stop_after=1):
                if notify.channel == REVOCATIONS_CHANNEL:
                    self._revoked(notify.payload)
                    continue
                try:
                    position = int(notify.payload)
                except ValueError:
                    continue
                if self.on_position is not None:
                    self.on_position(position)
                if position > self._last:
                    self._target = max(self._target, position)
                    self._pending = True

    def _revoked(self, token_id: str) -> None:
        if self.on_token_revoked is not None:
            self.on_token_revoked(token_id)
        self.end_token_streams(token_id)

    def _dispatch(self) -> None:
        # Every position up to target is committed (the view applies events in
        # order) and visible to a query started after its notification arrived.
        target = self._target
        with self._lock:
            accounts = list(self._subscriptions)
        rows = self._fetch(self._changed_for, (self._last, accounts)) if accounts else []
        self._pending = False
        self._last = max(self._last, target, rows[-1].position if rows else 0)
        by_account: dict[str, list[ProfileRow]] = {}
        for row in rows:
            by_account.setdefault(row.account_id, []).append(row)
        with self._lock:
            targets = [(s, batch) for a, batch in by_account.items() for s in self._subscriptions.get(a, ())]
        for subscription, batch in targets:
            _call(subscription, batch)


def _call(subscription: Subscription, item: list[ProfileRow] | _End) -> None:
    try:
        subscription.loop.call_soon_threadsafe(subscription._deliver, item)
    except RuntimeError:  # its loop is closed: the stream is gone already
        pass
