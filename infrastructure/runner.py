"""The projection runner: exactly one per database applies events to the view.

Leadership is a PostgreSQL session advisory lock held on a connection of the
runner's own. Standbys retry the lock and take over when the leader's session
ends (process exit, crash or lost connection). The tracking table still
guards against a double application if two leaders ever overlap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

from infrastructure.event_log import events_table, head_subquery
from infrastructure.profiles_view import TRACKING_TABLE, AlreadyApplied, PostgresProfilesView
from projections.profiles import changes_for

log = logging.getLogger(__name__)

# Arbitrary, fixed: every runner of every process must use the same key.
LEADER_LOCK_KEY = 7_261_504_113


def leader_present(datastore: PostgresDatastore, lock_key: int = LEADER_LOCK_KEY) -> bool:
    """True when some session (any process's runner) holds the leader lock."""
    with datastore.get_connection() as conn:
        row: Any = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s AND objid = %s AND objsubid = 1) AS held",
            # pg_locks shows a bigint advisory key as its high and low 32 bits.
            (lock_key >> 32, lock_key & 0xFFFFFFFF),
            prepare=True,
        ).fetchone()
    return bool(row["held"])


@dataclass(frozen=True)
class RunnerStatus:
    role: str  # starting | standby | leader | failed | stopped
    position: int
    error: str | None = None
    failed_position: int | None = None


class PoisonEvent(Exception):
    """An event the projection cannot apply; the runner stops at it."""

    def __init__(self, position: int, error: BaseException) -> None:
        super().__init__(f"cannot apply event at position {position}: {error!r}")
        self.position = position
        self.error = error


class ProjectionRunner:
    def __init__(
        self,
        app: Application[Any],
        view: PostgresProfilesView,
        conninfo: dict[str, Any],
        *,
        retry_interval: float = 0.25,
        lock_key: int = LEADER_LOCK_KEY,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        coalesce_interval: float = 0.05,
    ) -> None:
        self.app = app
        self.view = view
        self.conninfo = dict(conninfo)
        self.retry_interval = retry_interval
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.coalesce_interval = coalesce_interval
        schema = view.datastore.schema
        events = events_table(schema, app.recorder.events_table_name)  # type: ignore[attr-defined]
        self._positions_statement = (
            SQL(
                "SELECT coalesce((SELECT notification_id FROM {}.{} WHERE application_name = %s), 0) AS tracked,"
                " coalesce({}, 0) AS head"
            )
            .format(Identifier(schema), Identifier(TRACKING_TABLE), head_subquery(events))
            .as_string()
        )
        self.lock_key = lock_key
        self._stopping = threading.Event()
        self._role = "starting"
        self._error: str | None = None
        self._failed_position: int | None = None
        self._lock_conn: psycopg.Connection[Any] | None = None
        self._thread = threading.Thread(target=self._run, name="projection-runner", daemon=True)
        self.became_leader = threading.Event()
        self.applied = 0  # events this runner applied (a metric)
        self._position = 0  # the last position this runner knows applied
        self.on_stop: Callable[[int, str], None] | None = None

    # --- control --------------------------------------------------------

    def start(self) -> ProjectionRunner:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)
        self._release_lock()
        if self._role != "failed":
            self._role = "stopped"

    def run_forever(self) -> None:
        """Blocks until stopped; raises PoisonEvent if the projection stopped on one."""
        self.start()
        while self._thread.is_alive():
            self._thread.join(0.5)
        if self._role == "failed":
            raise PoisonEvent(self._failed_position or 0, RuntimeError(self._error))

    def status(self) -> RunnerStatus:
        return RunnerStatus(self._role, self._position, self._error, self._failed_position)

    # --- the loop -------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if not self._acquire_lock():
                    self._role = "standby"
                    self._stopping.wait(self.retry_interval)
                    continue
                self._role = "leader"
                self.became_leader.set()
                log.info("projection runner is the leader")
                self._follow()
            except PoisonEvent as poison:
                self._fail(poison)
                return
            except (OperationalError, InterfaceError, psycopg.OperationalError) as e:
                # The database went away: drop leadership, retry until it is back.
                log.warning("projection runner lost the database: %s; retrying", e)
                self._release_lock()
                self._stopping.wait(self.retry_interval)
            except BaseException as e:  # pragma: no cover - last resort, logged
                log.exception("projection runner crashed")
                self._fail(PoisonEvent(self._position + 1, e))
                return
        self._release_lock()

    def _follow(self) -> None:
        """Applies new events in batches until stopped or the leader lock is lost.

        Batches keep exactly-once (one transaction, one tracking record per batch)
        and let a busy log be applied at far more than one commit per event. A
        LISTEN on the event table's channel wakes the loop as soon as a writer commits."""
        recorder: Any = self.app.recorder
        mapper = self.app.mapper
        position = self._position = self.view.max_tracking_id(self.app.name) or 0
        with psycopg.connect(
            **self.conninfo,
            autocommit=True,
            connect_timeout=5,
            application_name="racer-profiles-projector-listen",
        ) as listener:
            listener.execute(SQL("LISTEN {}").format(Identifier(recorder.channel_name)))
            last_lock_check = time.monotonic()
            idle = False
            while not self._stopping.is_set():
                # Commands write their rows inline when the view is caught up
                # (infrastructure/inline_projection.py): one look at both
                # positions, and start after what they applied.
                tracked, head = self._positions()
                position = self._position = max(position, tracked)
                notifications = (
                    recorder.select_notifications(position, self.batch_size, inclusive_of_start=False)
                    if head > position
                    else []
                )
                if notifications:
                    idle = False
                    try:
                        position = self._position = self._apply(notifications, mapper)
                    except AlreadyApplied:
                        # Another runner (or a command, inline) got there first: resume after it.
                        log.debug("position %s already applied; resuming", notifications[-1].id)
                        position = self._position = self.view.max_tracking_id(self.app.name) or 0
                    continue
                if idle:
                    # The last wake-up found everything applied inline: take the
                    # notifications of a short while together rather than one
                    # look per command.
                    self._stopping.wait(self.coalesce_interval)
                idle = True
                # Caught up: sleep until a writer's NOTIFY (or at most poll_interval),
                # then take every notification that arrived with it.
                for _ in listener.notifies(timeout=self.poll_interval, stop_after=1):
                    pass
                for _ in listener.notifies(timeout=0.001):
                    pass
                if time.monotonic() - last_lock_check > 1.0:
                    self._check_lock()
                    last_lock_check = time.monotonic()

    def _apply(self, notifications: list[Any], mapper: Any) -> int:
        try:
            batch = [(n.id, changes_for(mapper.to_domain_event(n))) for n in notifications]
            self.view.apply_batch(self.app.name, batch)
        except (AlreadyApplied, OperationalError, InterfaceError):
            raise
        except Exception as error:
            if len(notifications) == 1:
                raise PoisonEvent(notifications[0].id, error) from None
            # Find the one that cannot be applied: apply the batch one event at a time.
            for notification in notifications:
                self._apply([notification], mapper)
        self.applied += len(notifications)
        return int(notifications[-1].id)

    def _positions(self) -> tuple[int, int]:
        """The view's tracking position and the log's head, in one query."""
        with self.view.datastore.get_connection() as conn:
            row: Any = conn.execute(self._positions_statement, (self.app.name,), prepare=True).fetchone()
        return int(row["tracked"]), int(row["head"])

    def _check_lock(self) -> None:
        try:
            assert self._lock_conn is not None
            self._lock_conn.execute("SELECT 1")
        except Exception as e:
            raise OperationalError(f"leader lock connection was lost: {e}") from e

    # --- leadership -----------------------------------------------------

    def _acquire_lock(self) -> bool:
        if self._lock_conn is None or self._lock_conn.closed:
            self._lock_conn = psycopg.connect(
                **self.conninfo,
                autocommit=True,
                connect_timeout=5,
                application_name="racer-profiles-projector",
            )
        row = self._lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (self.lock_key,)).fetchone()
        return bool(row and row[0])

    def _release_lock(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is not None:
            try:
                conn.close()  # ending the session releases the advisory lock
            except Exception:  # pragma: no cover - closing a dead connection
                pass

    def _fail(self, poison: PoisonEvent) -> None:
        self._role = "failed"
        self._error = repr(poison.error)
        self._failed_position = poison.position
        self._release_lock()
        if self.on_stop is not None:
            try:
                self.on_stop(poison.position, repr(poison.error))
            except Exception:  # the database may be why it stopped; the log still says it
                log.exception("could not record where the projection stopped")
        log.error(
            "projection stopped at position %s: %r. The read table is consistent up to "
            "position %s. Fix the cause and restart the projector, or skip this one event "
            "with `racer-profiles project --skip %s` (recorded).",
            poison.position,
            poison.error,
            poison.position - 1,
            poison.position,
        )
