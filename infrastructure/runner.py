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
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.projection import ApplicationSubscription

from infrastructure.profiles_view import AlreadyApplied, PostgresProfilesView
from projections.profiles import changes_for

log = logging.getLogger(__name__)

# Arbitrary, fixed: every runner of every process must use the same key.
LEADER_LOCK_KEY = 7_261_504_113


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
    ) -> None:
        self.app = app
        self.view = view
        self.conninfo = dict(conninfo)
        self.retry_interval = retry_interval
        self.lock_key = lock_key
        self._stopping = threading.Event()
        self._subscription: ApplicationSubscription[Any] | None = None
        self._role = "starting"
        self._error: str | None = None
        self._failed_position: int | None = None
        self._lock_conn: psycopg.Connection[Any] | None = None
        self._thread = threading.Thread(target=self._run, name="projection-runner", daemon=True)
        self.became_leader = threading.Event()
        self.applied = 0  # events this runner applied (a metric)

    # --- control --------------------------------------------------------

    def start(self) -> ProjectionRunner:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        subscription = self._subscription
        if subscription is not None:
            subscription.stop()
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
        return RunnerStatus(self._role, self.view._reached, self._error, self._failed_position)

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
                self._fail(PoisonEvent(self.view._reached + 1, e))
                return
        self._release_lock()

    def _follow(self) -> None:
        start = self.view.max_tracking_id(self.app.name)
        self._subscription = ApplicationSubscription(self.app, gt=start)
        watchdog = threading.Thread(target=self._watch_lock, daemon=True, name="leader-watchdog")
        watchdog.start()
        try:
            with self._subscription as subscription:
                for event, tracking in subscription:
                    if self._stopping.is_set():
                        break
                    try:
                        self.view.apply(changes_for(event), tracking)
                        self.applied += 1
                    except AlreadyApplied:
                        # Someone else applied it: resume from the recorded position.
                        log.warning("position %s already applied; resubscribing", tracking.notification_id)
                        break
                    except (OperationalError, InterfaceError):
                        raise
                    except Exception as e:
                        raise PoisonEvent(tracking.notification_id, e) from e
        finally:
            self._subscription = None
        if self._lock_lost.is_set():
            raise OperationalError("leader lock connection was lost")

    def _watch_lock(self) -> None:
        subscription = self._subscription
        while not self._stopping.wait(1.0) and self._subscription is subscription:
            try:
                assert self._lock_conn is not None
                self._lock_conn.execute("SELECT 1")
            except Exception:
                self._lock_lost.set()
                if subscription is not None:
                    subscription.stop()
                return

    # --- leadership -----------------------------------------------------

    def _acquire_lock(self) -> bool:
        self._lock_lost = threading.Event()
        if self._lock_conn is None or self._lock_conn.closed:
            self._lock_conn = psycopg.connect(
                **self.conninfo, autocommit=True, connect_timeout=5,
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
        log.error(
            "projection stopped at position %s: %r. Fix the cause and restart the projector; "
            "the read table is consistent up to position %s.",
            poison.position, poison.error, poison.position - 1,
        )
