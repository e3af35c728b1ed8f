"""Read-your-writes lag, measured exactly from PostgreSQL's own signals.

What is measured: for every command committed during a load round, the time
from its events' commit to the commit of the read table's tracking position
reaching the command's last event (what the service waits for before it
answers, and what `X-Min-Position` readers wait for).

How, without sampling:

* Commit of a command. The event store's insert transaction runs
  `NOTIFY racerprofiles_events` (the library's channel); PostgreSQL delivers a
  notification to listeners only when, and as soon as, that transaction
  commits. Writers hold `LOCK TABLE ... IN EXCLUSIVE MODE` until commit, so
  transactions commit in the order of their positions and their notifications
  arrive in that order. After the round the benchmark reads the new events'
  positions and `xmin` (the inserting transaction's id): grouping consecutive
  positions by xmin gives the transactions in commit order, so the k-th
  notification timestamps the k-th transaction, whose last position is known.
  (A transaction that rolls back sends nothing and leaves no rows.)
* Read table reaching a position. A row trigger the benchmark adds to
  racer_profiles_tracking (in its own database only) sends
  `pg_notify('rp_bench_tracking', notification_id)` from the projection's
  transaction, delivered when that transaction commits. The read table shows
  position L at the arrival of the first tracking notification >= L.
* Also recorded: the view's own `racer_profiles_changed` notifications (sent
  only by transactions that change rows): "row visible" lag, an extra figure.

Both arrival times are taken by one listening connection in one thread of
this process (time.perf_counter on receipt), so the delivery delay of the two
notifications is the same path and largely cancels; the remaining error is the
listener's scheduling jitter (sub-millisecond on an idle core, more when the
2 cores are saturated). The trigger adds one NOTIFY to projection transactions
that had none; run.py reports the figures measured with it installed.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

TRACK_CHANNEL = "rp_bench_tracking"
FUNCTION = "rp_bench_tracking_notify"
TRIGGER = "rp_bench_tracking_notify"


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


@dataclass
class CommitClock:
    conninfo: dict[str, Any]
    schema: str
    events_table: str
    events_channel: str
    tracking_table: str
    changes_channel: str
    _records: list[tuple[float, str, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _conn: psycopg.Connection[Any] | None = None
    _head: int = 0

    def _table(self, name: str) -> sql.Composable:
        if self.schema:
            return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(name))
        return sql.Identifier(name)

    def install(self) -> None:
        with psycopg.connect(**self.conninfo, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$"
                    " BEGIN PERFORM pg_notify({}, NEW.notification_id::text); RETURN NULL; END $$"
                ).format(sql.Identifier(FUNCTION), sql.Literal(TRACK_CHANNEL))
            )
            conn.execute(
                sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                    sql.Identifier(TRIGGER), self._table(self.tracking_table)
                )
            )
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER {} AFTER INSERT OR UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()"
                ).format(sql.Identifier(TRIGGER), self._table(self.tracking_table), sql.Identifier(FUNCTION))
            )

    def uninstall(self) -> None:
        with psycopg.connect(**self.conninfo, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                    sql.Identifier(TRIGGER), self._table(self.tracking_table)
                )
            )

    def head(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(self._table(self.events_table))
        ).fetchone()
        return int(row[0]) if row else 0

    def start(self) -> None:
        """Listens first, then reads the head: every later commit is notified."""
        self._records = []
        self._stop.clear()
        conn = psycopg.connect(**self.conninfo, autocommit=True)
        for channel in (self.events_channel, TRACK_CHANNEL, self.changes_channel):
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self._head = self.head(conn)
        self._conn = conn
        self._thread = threading.Thread(target=self._listen, name="commit-clock", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        assert self._conn is not None
        records = self._records
        clock = time.perf_counter
        while not self._stop.is_set():
            for n in self._conn.notifies(timeout=0.2):
                records.append((clock(), n.channel, n.payload))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._conn is not None:
            self._conn.close()
        self._thread, self._conn = None, None

    def analyse(self) -> dict[str, Any]:
        """Lags (ms) of the commands committed since start(); call after stop()."""
        with psycopg.connect(**self.conninfo, autocommit=True) as conn:
            rows = conn.execute(
                sql.SQL(
                    "SELECT notification_id, xmin::text FROM {} WHERE notification_id > %s"
                    " ORDER BY notification_id"
                ).format(self._table(self.events_table)),
                (self._head,),
            ).fetchall()
        last_positions: list[int] = []
        previous_xid = None
        for position, xid in rows:
            if xid != previous_xid:
                last_positions.append(position)
                previous_xid = xid
            else:
                last_positions[-1] = position
        commits = [t for t, ch, _ in self._records if ch == self.events_channel]
        tracked = [(int(p), t) for t, ch, p in self._records if ch == TRACK_CHANNEL]
        changed = [(int(p), t) for t, ch, p in self._records if ch == self.changes_channel]
        result: dict[str, Any] = {
            "transactions": len(last_positions),
            "commit_notifications": len(commits),
            "tracking_notifications": len(tracked),
        }
        if len(commits) != len(last_positions):
            result["error"] = (
                f"{len(commits)} commit notifications for {len(last_positions)} transactions:"
                " cannot pair them"
            )
            return result
        lags = _lags(commits, last_positions, tracked)
        visible = _lags(commits, last_positions, changed, last_changed=True, rows=rows)
        result.update(
            commands=len(lags),
            unmatched=len(last_positions) - len(lags),
            lag_ms=lags,
            p50_ms=percentile(lags, 50),
            p99_ms=percentile(lags, 99),
            max_ms=max(lags) if lags else None,
            row_visible_p50_ms=percentile(visible, 50),
            row_visible_p99_ms=percentile(visible, 99),
        )
        return result


def _lags(
    commits: list[float],
    last_positions: list[int],
    reached: list[tuple[int, float]],
    *,
    last_changed: bool = False,
    rows: list[tuple[int, str]] | None = None,
) -> list[float]:
    """For each transaction k: time of the first `reached` position >= its
    target minus its commit time. With last_changed, the target is the
    transaction's last position that changed a row (a `changes` notification
    exists for it), else its last position."""
    reached = sorted(reached)
    positions = [p for p, _ in reached]
    # The earliest arrival at or after each index (positions arrive in order,
    # but sort defensively and take the running minimum from the right).
    earliest: list[float] = [0.0] * len(reached)
    best = float("inf")
    for i in range(len(reached) - 1, -1, -1):
        best = min(best, reached[i][1])
        earliest[i] = best
    changed_set = set(positions) if last_changed else set()
    first_positions: list[int] = []
    if last_changed and rows is not None:
        # The first position of each transaction, to bound the search below.
        prev = None
        for position, xid in rows:
            if xid != prev:
                first_positions.append(position)
                prev = xid
    lags: list[float] = []
    for k, (t_commit, last) in enumerate(zip(commits, last_positions, strict=True)):
        target = last
        if last_changed:
            lo = first_positions[k] if first_positions else last
            candidates = [p for p in range(lo, last + 1) if p in changed_set]
            if not candidates:
                continue
            target = candidates[-1]
        i = bisect.bisect_left(positions, target)
        if i == len(positions):
            continue
        lags.append((earliest[i] - t_commit) * 1000)
    return lags
