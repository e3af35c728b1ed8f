"""Rebuild: replay every event into a fresh table, then swap it in.

The live table keeps serving until the swap. The swap holds the tracking row
(FOR UPDATE), which the runner's next transaction needs first, so no event is
applied to the old table after the catch-up and before the rename."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification
from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

from domain.service import ProfilesService
from infrastructure.fresh_tables import FreshTablesWriter
from infrastructure.keys import KeyRing
from infrastructure.profiles_sql import NEXT_TABLE, TABLE, ddl, index_names, tables
from infrastructure.profiles_view import PostgresProfilesView
from infrastructure.progress import Progress
from projections.profiles import changes_for


class RebuildStopped(Exception):
    """An event that cannot be decoded or applied: nothing is swapped in."""

    def __init__(self, position: int, error: BaseException) -> None:
        super().__init__(
            f"rebuild stopped at position {position}: {type(error).__name__}: {error}. "
            f"Nothing was swapped in: the live table is unchanged. See the event with "
            f"`racer-profiles export --after {position - 1} --out event.ndjson` (its first line)"
        )
        self.position = position


BATCH = 1000


def _pages(
    recorder: ApplicationRecorder, after: int, stop: int | None, keys: KeyRing | None = None
) -> Iterator[Sequence[Notification]]:
    while True:
        page = recorder.select_notifications(after, BATCH, stop, inclusive_of_start=False)
        if not page:
            return
        if keys is not None:
            # Most of a page's sealed events are opened with their own aggregate's key.
            keys.prefetch({n.originator_id for n in page if isinstance(n.originator_id, UUID)})
        yield page
        after = page[-1].id


def _replay(
    recorder: ApplicationRecorder,
    mapper: Mapper[Any],
    curs: Any,
    writer: FreshTablesWriter,
    after: int,
    stop: int | None,
    advance: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Applies events in (after, stop] on curs, a page at a time; returns (count, last position)."""
    count, last = 0, after
    for page in _pages(recorder, after, stop, getattr(mapper, "keys", None)):
        changes = []
        for notification in page:
            try:
                changes.append((notification.id, changes_for(mapper.to_domain_event(notification))))
            except Exception as e:  # any event the projection cannot take, named by position
                raise RebuildStopped(notification.id, e) from e
        writer.write(curs, changes)
        count, last = count + len(page), page[-1].id
        if advance is not None:
            advance(len(page))
    return count, last


def rebuild_read_table(
    app: ProfilesService,
    datastore: PostgresDatastore,
    view: PostgresProfilesView,
    *,
    progress: Progress | None = None,
) -> int:
    """Replays app's events into a fresh table on datastore, then swaps it in
    under the view's tracking row."""
    recorder, mapper = app.recorder, app.mapper
    schema = datastore.schema
    writer = FreshTablesWriter(schema, NEXT_TABLE)
    head = recorder.max_notification_id() or 0
    with datastore.transaction(commit=True) as curs:
        for name in tables(NEXT_TABLE):
            curs.execute(SQL("DROP TABLE IF EXISTS {}.{}").format(Identifier(schema), Identifier(name)))
        for statement in ddl(schema, NEXT_TABLE):
            curs.execute(statement)

    if progress is not None:
        progress.start(head)
    advance = progress.advance if progress is not None else None
    # One transaction per batch keeps memory flat however long the log is.
    replayed, position = 0, 0
    while position < head:
        with datastore.transaction(commit=True) as curs:
            count, position = _replay(
                recorder, mapper, curs, writer, position, min(position + BATCH * 10, head), advance
            )
        replayed += count
        if count == 0:
            break

    app_name = app.name
    with datastore.transaction(commit=True) as curs:
        recorded = view.lock_position(curs, app_name)
        live = recorded or 0
        if live > position:
            count, position = _replay(recorder, mapper, curs, writer, position, live)
            replayed += count
        _swap(curs, schema)
        if recorded is None:
            if position:
                view.record_position(curs, app_name, position)
        elif position > live:
            view.move_position(curs, app_name, position)
    return replayed


def _swap(curs: Any, schema: str) -> None:
    s = Identifier(schema)
    for live, fresh in zip(tables(TABLE), tables(NEXT_TABLE), strict=True):
        curs.execute(SQL("DROP TABLE IF EXISTS {}.{}").format(s, Identifier(live)))
        curs.execute(SQL("ALTER TABLE {}.{} RENAME TO {}").format(s, Identifier(fresh), Identifier(live)))
    for live, fresh in zip(index_names(TABLE), index_names(NEXT_TABLE), strict=True):
        curs.execute(SQL("ALTER INDEX {}.{} RENAME TO {}").format(s, Identifier(fresh), Identifier(live)))
