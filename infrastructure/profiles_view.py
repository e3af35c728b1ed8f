"""The racer_profiles view: the projection's writes, tracked exactly once,
and a wait() that wakes as soon as the view reaches a position."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Tracking, WaitInterruptedError
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.sql import SQL, Identifier

from infrastructure import catalog
from infrastructure.db_retry import retry_dead_connections
from infrastructure.profiles_sql import TABLE, RowWriter, ddl, tables
from projections.rows import ProfileRow, RowChange
from projections.view import ProfilesView

TRACKING_TABLE = "racer_profiles_tracking"
# NOTIFY channel: payload is the position whose row changes just committed
# (listened to by infrastructure/change_feed.py), sent by every batch.
CHANGES_CHANNEL = "racer_profiles_changed"
# Rows kept for the answers of the commands that wrote them (remember_rows).
FRESH_ROWS = 4096
FEED_FALLBACK_POLL = 0.1  # seconds between database checks of a wait the feed wakes


class AlreadyApplied(IntegrityError):
    """The tracking table already holds this position: another runner applied it."""


class PostgresProfilesView(PostgresTrackingRecorder, ProfilesView):
    insert_tracking = retry_dead_connections(PostgresTrackingRecorder.insert_tracking)
    max_tracking_id = retry_dead_connections(PostgresTrackingRecorder.max_tracking_id)
    has_tracking_id = retry_dead_connections(PostgresTrackingRecorder.has_tracking_id)

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        application_name: str,
        table: str = TABLE,
        reader: PostgresDatastore | None = None,
    ) -> None:
        """application_name: the upstream application whose positions the change
        feed reports (reached_position) and has_reached asks about by default."""
        super().__init__(datastore, tracking_table_name=TRACKING_TABLE)
        # Where queries read: a replica shows a commit only once it has replayed
        # it, so there waits must see the replica's own tracking position.
        self.reader = reader or datastore
        self._commits_visible_to_readers = self.reader is datastore
        self.table = table
        self._ddl_from = len(self.sql_create_statements)  # ours follow the tracking table's
        self.sql_create_statements.extend(ddl(datastore.schema, table))
        self.writer = RowWriter(datastore.schema, table)
        self.application_name = application_name
        # The last position known applied, per upstream application (tracking is per name).
        self._reached: dict[str, int] = {}
        # profile id -> (the positions of the save that wrote it, its row then): see remember_rows
        self._fresh: dict[UUID, tuple[range, ProfileRow]] = {}
        self._fresh_lock = threading.Lock()
        self._reached_changed = threading.Condition()
        # Waits of async endpoints on application_name's positions:
        # (position, loop, future), woken from any thread.
        self._async_waiters: set[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        # Set while a change feed of this process listens for the view's commits
        # (infrastructure/change_feed.py calls reached_position).
        self.feed_listening = threading.Event()
        self._head_statement = SQL("SELECT notification_id FROM {}.{} WHERE application_name = %s").format(
            Identifier(datastore.schema), Identifier(TRACKING_TABLE)
        )
        # The same, as text for the async pool (infrastructure/async_queries.py).
        self.position_statement = self._head_statement.as_string()

    def create_table(self) -> None:
        """The library's DDL run, with ours limited to what is missing: every
        process runs this at start while others serve (infrastructure/catalog.py)."""
        with self.datastore.transaction(commit=False) as curs:
            found = catalog.present(curs, self.datastore.schema, tables(self.table))
        self.sql_create_statements[self._ddl_from :] = ddl(self.datastore.schema, self.table, found)
        super().create_table()

    def record_position(self, curs: Any, application_name: str, position: int) -> None:
        """Records position as applied in curs's transaction (the library's tracking insert):
        for a skip, or for a rebuilt table that has no tracking row yet."""
        self._insert_tracking(curs, Tracking(application_name, position))

    def lock_position(self, curs: Any, application_name: str) -> int | None:
        """The applied position, its tracking row locked until curs's transaction ends: the
        runner's next transaction waits (None when there is no row)."""
        curs.execute(SQL("{} FOR UPDATE").format(self._head_statement), (application_name,))
        row = curs.fetchone()
        return int(row["notification_id"]) if row else None

    def move_position(self, curs: Any, application_name: str, position: int) -> None:
        """Sets the applied position in curs's transaction (a rebuild that got further)."""
        curs.execute(
            SQL("UPDATE {}.{} SET notification_id = %s WHERE application_name = %s").format(
                Identifier(self.datastore.schema), Identifier(TRACKING_TABLE)
            ),
            (position, application_name),
        )

    def apply(self, changes: Sequence[RowChange], tracking: Tracking) -> None:
        self.apply_batch(tracking.application_name, [(tracking.notification_id, changes)])

    def apply_batch(self, application_name: str, batch: Sequence[tuple[int, Sequence[RowChange]]]) -> None:
        """Applies several events' row changes in ONE transaction with ONE tracking
        record (the last position): all of the batch is applied, or none of it."""
        if not batch:
            return
        last = batch[-1][0]
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            # The read table is derived: waiting for its fsync buys nothing. A crash
            # loses these rows and their tracking record together; they are re-applied.
            curs.execute("SET LOCAL synchronous_commit = off", prepare=True)
            # Tracking first: a position already applied fails here, before any row changes.
            try:
                self._insert_tracking(curs, Tracking(application_name, last))
            except IntegrityError as e:
                raise AlreadyApplied(str(e)) from e
            with conn.pipeline():
                self.write_changes(curs, batch)
        if self._commits_visible_to_readers:
            self._reached_position(application_name, last)

    def write_changes(
        self, curs: Any, batch: Sequence[tuple[int, Sequence[RowChange]]], notify: bool = True
    ) -> None:
        """The statements of a batch's row changes, and (if notify) the notice of
        its last position, on curs (in the caller's transaction: the runner's
        batch or a command's own, infrastructure/inline_projection.py, which
        sends the notice with its tracking record)."""
        for position, changes in batch:
            for change in changes:
                self.writer.execute(curs, change, position)
        if not notify:
            return
        # Delivered to listeners only once the transaction commits; also when
        # no row changed, since it wakes the waits for these positions.
        curs.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, str(batch[-1][0])), prepare=True)

    def remember_rows(self, positions: range, rows: Sequence[ProfileRow]) -> None:
        """The rows a save changed, as its transaction (which stored the events
        at positions) left them: the answers of its commands need no read-back.
        Shared by the threads: with a group commit one thread saves the commands
        of several requests' threads (infrastructure/group_commit.py); a save
        holds one command per account, so a row there is its command's. The
        latest FRESH_ROWS rows are kept: an answer reads its rows right after
        its save. Not with a replica: the answer must wait until the replica
        shows the command."""
        if not self._commits_visible_to_readers:
            return
        with self._fresh_lock:
            for row in rows:
                self._fresh.pop(row.id, None)  # to the end: the oldest go first
                self._fresh[row.id] = (positions, row)
            while len(self._fresh) > FRESH_ROWS:
                del self._fresh[next(iter(self._fresh))]

    def fresh_row(self, profile_id: UUID, position: int) -> ProfileRow | None:
        """The row as the save of the command at position left it, if that save
        changed it and was the last to (a later save's row is not this command's answer)."""
        fresh = self._fresh.get(profile_id)
        return fresh[1] if fresh is not None and position in fresh[0] else None

    def reached_position(self, position: int) -> None:
        """Told by the change feed: the projector committed up to position."""
        if self._commits_visible_to_readers:
            self._reached_position(self.application_name, position)

    def _reached_position(self, application_name: str, position: int) -> None:
        woken: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        with self._reached_changed:
            if position > self._reached.get(application_name, 0):
                self._reached[application_name] = position
                self._reached_changed.notify_all()
                if application_name == self.application_name:
                    woken = [w for w in self._async_waiters if w[0] <= position]
                    self._async_waiters.difference_update(woken)
        for _, loop, future in woken:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # its loop is closed: the request is gone
                pass

    def has_reached(self, position: int, application_name: str | None = None) -> bool:
        """True when this process knows the readers see position (no I/O)."""
        return self._known(application_name or self.application_name) >= position

    def _known(self, application_name: str) -> int:
        return self._reached.get(application_name, 0)

    def position(self, application_name: str) -> int:
        """The last applied position, as the readers (the replica, if any) see it."""
        with self.reader.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._head_statement, (application_name,), prepare=True)
            row: Any = curs.fetchone()
        position = int(row["notification_id"]) if row and row["notification_id"] else 0
        self._reached_position(application_name, position)
        return position

    def wait(
        self,
        application_name: str,
        notification_id: int | None,
        timeout: float = 1.0,
        interrupt: threading.Event | None = None,
    ) -> None:
        """Returns once the view has applied notification_id; TimeoutError after
        timeout. Waiters are woken by commits: those of a runner in this process,
        and those the change feed hears (its LISTEN gets the position of every
        batch the projector commits, whichever process runs it). While nothing
        wakes them the database is polled from 1 ms up to 25 ms (the library
        starts at 100 ms); while the feed listens, only every 100 ms, in case a
        notification was missed. A set interrupt ends the wait with
        WaitInterruptedError (checked before each pause, as the library does)."""
        if not notification_id or self._known(application_name) >= notification_id:
            return
        deadline = time.monotonic() + timeout
        interval = 0.001
        ask = not self._woken_by_feed()
        while True:
            if ask and self.position(application_name) >= notification_id:
                return
            if interrupt is not None and interrupt.is_set():
                raise WaitInterruptedError
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"read table has not reached position {notification_id} in {timeout}s")
            pause = FEED_FALLBACK_POLL if self._woken_by_feed() else interval
            with self._reached_changed:
                self._reached_changed.wait_for(
                    lambda: self._known(application_name) >= notification_id, timeout=min(pause, remaining)
                )
            if self._known(application_name) >= notification_id:
                return
            ask = True
            interval = min(interval * 2, 0.025)

    async def wait_async(
        self, notification_id: int, timeout: float, readers_position: Callable[[], Awaitable[int]]
    ) -> None:
        """wait() for the event loop, on application_name's positions: holds no
        thread while it waits. The same wake-ups (this process's commits, the
        change feed) resolve a future; readers_position asks the readers'
        tracking position without a thread."""
        if self._known(self.application_name) >= notification_id:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        interval = 0.001
        ask = not self._woken_by_feed()
        while True:
            if ask:
                position = await readers_position()
                self._reached_position(self.application_name, position)
                if position >= notification_id:
                    return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"read table has not reached position {notification_id} in {timeout}s")
            pause = FEED_FALLBACK_POLL if self._woken_by_feed() else interval
            waiter = (notification_id, loop, loop.create_future())
            with self._reached_changed:
                if self._known(self.application_name) >= notification_id:
                    return
                self._async_waiters.add(waiter)
            try:
                await asyncio.wait_for(waiter[2], min(pause, remaining))
            except TimeoutError:
                pass
            finally:
                with self._reached_changed:
                    self._async_waiters.discard(waiter)
            if self._known(self.application_name) >= notification_id:
                return
            ask = True
            interval = min(interval * 2, 0.025)

    def _woken_by_feed(self) -> bool:
        # A replica shows a commit only after replaying it: the primary's
        # notification may come first, so there the database is asked.
        return self._commits_visible_to_readers and self.feed_listening.is_set()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
