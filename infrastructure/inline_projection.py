"""The inline projection: a command's read-table rows and the view's tracking
record, written in the command's own transaction.

Every insert of events takes the events table's EXCLUSIVE lock, so while a
command's transaction holds it no other events can commit. Right after the
lock, in the same pipelined round trip as the insert, the transaction reads
the view's tracking position (locking its row) and the log's head. When they
are equal, the view lacks exactly this transaction's events: their row
changes (the same pure `changes_for` the runner applies, through the view's
own statements) and the tracking record go out with the COMMIT. The read table
then shows the command when its answer is built: no wait, no wake-up, no
second transaction, and the runner finds nothing left to apply. The rows the
command changed are read back in the same round trip as the COMMIT, and its
answer is built from them (PostgresProfilesView.fresh_row). When they
differ (events written elsewhere, a stopped runner, a rebuild about to swap
its table in) the events commit alone and the runner applies them, as it
always did; so it does when the changes cannot be computed or applied (the
runner then stops at that event, as before).

Exactly once: the tracking row stays locked from the check to the commit and
advances with the rows in one transaction; a runner that tries the same
positions finds them applied (AlreadyApplied) and resumes after them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg.sql import SQL, Identifier

from infrastructure.event_log import events_table, head_subquery
from infrastructure.profile_queries import Statements, _row
from infrastructure.profiles_view import CHANGES_CHANNEL, TRACKING_TABLE, PostgresProfilesView
from projections.profiles import changes_for
from projections.rows import (
    AddVehicle,
    ChangeDefault,
    ChangeVehicle,
    EraseProfile,
    InsertProfile,
    RemoveVehicle,
    RowChange,
    UpdateProfile,
)

log = logging.getLogger(__name__)


@dataclass
class InlineWrite:
    """One save's row changes (one list per event, in the events' order) and
    what became of them in the transaction."""

    changes: list[list[RowChange]]
    check: Any = None  # the cursor whose row says whether the view lacks only these events
    positions: range = range(0)  # the positions it projects, once sent (empty: not projected)
    rows: Any = None  # the cursor of the changed rows, read before the commit


class InlineProjection:
    def __init__(
        self, view: PostgresProfilesView, application_name: str, events: str, statements: Statements
    ) -> None:
        self.view = view
        self.rows_statement = statements.by_ids
        self.application_name = application_name
        schema = view.datastore.schema
        self.check_statement = (
            SQL(
                "SELECT coalesce((SELECT notification_id FROM {}.{} WHERE application_name = %s"
                " FOR NO KEY UPDATE), 0) AS tracked, coalesce({}, 0) AS head"
            )
            .format(
                Identifier(schema), Identifier(TRACKING_TABLE), head_subquery(events_table(schema, events))
            )
            .as_string()
        )
        # The tracking record and the notice of its position in one statement.
        self.tracking_statement = (
            SQL("WITH tracked AS ({}) SELECT pg_notify(%(channel)s, %(position)s)")
            .format(view.insert_tracking_statement)
            .as_string()
        )

    def prepare(self, domain_events: Sequence[Any]) -> InlineWrite | None:
        """The events' row changes, computed before the transaction starts; None
        when they cannot be (the runner will meet the same error and stop)."""
        try:
            return InlineWrite([changes_for(event) for event in domain_events])
        except Exception:
            log.exception("inline projection: cannot compute the row changes; the projector applies them")
            return None

    def check(self, conn: Any, write: InlineWrite) -> None:
        """Sent under the events table's lock, before the insert (pipelined)."""
        write.check, write.positions, write.rows = conn.cursor(), range(0), None
        write.check.execute(self.check_statement, (self.application_name,), prepare=True)

    def apply(self, curs: Any, write: InlineWrite, positions: Sequence[int]) -> None:
        """Sends the row changes and the tracking record (they commit with the
        events), if the view lacks exactly these events."""
        row = write.check.fetchone()
        write.check.close()
        if row is None or row["tracked"] != row["head"] or len(positions) != len(write.changes):
            return
        batch = list(zip(positions, write.changes, strict=True))
        self.view.write_changes(curs, batch, notify=False)
        last = positions[-1]
        curs.execute(
            self.tracking_statement,
            {
                "application_name": self.application_name,
                "notification_id": last,
                "channel": CHANGES_CHANNEL,
                "position": str(last),
            },
            prepare=True,
        )
        write.rows = curs.connection.cursor()
        write.rows.execute(self.rows_statement, (_changed_ids(write.changes),), prepare=True)
        write.positions = range(positions[0], last + 1)

    def committed(self, write: InlineWrite) -> None:
        if write.positions:
            self.view.reached_position(write.positions[-1])
            self.view.remember_rows(write.positions, [_row(r) for r in write.rows.fetchall()])
            write.rows.close()


# The changes of one profile's row (the audit index's entries are not rows).
ROW_CHANGES = (InsertProfile, UpdateProfile, AddVehicle, ChangeVehicle, RemoveVehicle, EraseProfile)


def _changed_ids(changes: list[list[RowChange]]) -> list[UUID]:
    ids: set[UUID] = set()
    for event_changes in changes:
        for change in event_changes:
            if isinstance(change, ChangeDefault):
                ids.update(i for i in (change.previous, change.new) if i is not None)
            elif isinstance(change, ROW_CHANGES):
                ids.add(change.profile_id)
    return sorted(ids)
