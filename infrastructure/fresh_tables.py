"""A rebuild's writes: a page of events' row changes into the fresh tables.

The live view runs each row change as its statement (infrastructure/profiles_sql.py),
and each audit index entry reads the profile's version, default flag and account
back from the read table in SQL. A rebuild writes tables no one reads until the
swap, so per page it can do with far fewer statements, which profiles of the
rebuild showed as most of its time (several per event):

* the version, default flag and account the page's entries need are read once
  per page (one query for its profiles, one for its rosters) and kept up to date
  here as the page's row changes are applied;
* the audit index entries are written with COPY, once per page;
* a profile created in the page is kept here as its row (created, then made the
  default: what most new profiles go through) and written with COPY too; any
  other change to it first writes it as it stands, so every such change still
  runs as the live view's own statement.

The tables end up as the live view leaves them, row for row (tests/integration/
test_rebuild_exact.py compares all four). Memory holds one page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.sql import SQL, Composed, Identifier

from infrastructure.profiles_sql import (
    RowWriter,
    account_events_table,
    column_value,
    history_table,
    insert_statement,
    inserted_row,
    rosters_table,
)
from projections.rows import COLUMNS, ChangeDefault, EraseProfile, InsertProfile, ListEvent, RowChange

# The read table's column types, as its DDL declares them (projections/rows.py ProfileRow).
SQL_TYPES = {c.name: c.metadata["sql"].split()[0] for c in COLUMNS}

Page = Sequence[tuple[int, Sequence[RowChange]]]  # (position, the event's row changes)


@dataclass
class _Row:
    """What the audit index reads of a profile's row: as it stands in the page so far."""

    account_id: str
    version: int
    is_default: bool


class FreshTablesWriter:
    """Writes pages of row changes into a fresh read table and its audit tables."""

    def __init__(self, schema: str, table: str) -> None:
        self.writer = RowWriter(schema, table)
        self.table = (schema, table)

        def t(name: str) -> Composed:
            return SQL("{}.{}").format(Identifier(schema), Identifier(name))

        self._profiles = (
            SQL("SELECT id, account_id, version, is_default FROM {} WHERE id = ANY(%s)").format(t(table))
        ).as_string()
        self._rosters = (
            SQL("SELECT roster_id, account_id FROM {} WHERE roster_id = ANY(%s)").format(
                t(rosters_table(table))
            )
        ).as_string()
        # Binary COPY, its columns' types declared: a fifth of the CPU of text COPY per
        # row (measured). The audit tables' types are those of profiles_sql's DDL.
        self._copies = {
            name: (
                SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                    t(table_of(table)), SQL(", ").join(map(Identifier, (c for c, _ in columns)))
                ),
                [sql_type for _, sql_type in columns],
            )
            for name, table_of, columns in (
                ("rosters", rosters_table, (("roster_id", "uuid"), ("account_id", "text"))),
                (
                    "accounts",
                    account_events_table,
                    (("account_id", "text"), ("position", "int8"), ("default_change", "bool")),
                ),
                (
                    "history",
                    history_table,
                    (
                        ("profile_id", "uuid"),
                        ("position", "int8"),
                        ("version", "int4"),
                        ("is_default", "bool"),
                        ("concerns", "text"),
                        ("recorded_at", "timestamptz"),
                    ),
                ),
            )
        }
        self._t = t

    def write(self, curs: Any, page: Page) -> None:
        """Applies the page's changes on curs (not in a pipeline: COPY cannot be)."""
        page_ = _PageState(self, curs, page)
        with curs.connection.pipeline():
            for position, changes in page:
                for change in changes:
                    page_.apply(change, position)
        page_.copy_out()


class _PageState:
    def __init__(self, owner: FreshTablesWriter, curs: Any, page: Page) -> None:
        self.owner, self.curs = owner, curs
        profiles: set[UUID] = set()
        rosters: set[UUID] = set()
        # Rows the page itself makes are not asked for: the store holds one first event
        # per aggregate, so a profile or roster created in the page has no row before it.
        created: set[UUID] = set()
        for _, changes in page:
            for c in changes:
                if isinstance(c, ListEvent):
                    if c.account_of is not None:
                        profiles.add(c.account_of)
                    profiles.update(p for p, _ in c.profiles)
                    if c.roster is not None:
                        (created if c.account_id is not None else rosters).add(c.roster)
                elif isinstance(c, InsertProfile):
                    created.add(c.profile_id)
                elif not isinstance(c, ChangeDefault):
                    profiles.add(c.profile_id)
        profiles -= created
        rosters -= created
        self.rows: dict[UUID, _Row] = {}
        if profiles:
            curs.execute(owner._profiles, (list(profiles),))
            for r in curs.fetchall():
                self.rows[r["id"]] = _Row(r["account_id"], r["version"], r["is_default"])
        self.rosters: dict[UUID, str] = {}
        if rosters:
            curs.execute(owner._rosters, (list(rosters),))
            self.rosters = {r["roster_id"]: r["account_id"] for r in curs.fetchall()}
        # Profiles created in this page and not written yet: their rows, column by name.
        self.new: dict[UUID, dict[str, Any]] = {}
        self.history: list[tuple[UUID, int, int, bool, str | None, datetime]] = []
        self.account_events: list[tuple[str | None, int, bool]] = []
        self.new_rosters: list[tuple[UUID, str]] = []

    def apply(self, c: RowChange, position: int) -> None:
        if isinstance(c, ListEvent):
            self._list(c, position)
        elif isinstance(c, InsertProfile):
            if c.profile_id in self.rows:  # a second Created: its statement fails as the live view's would
                self._execute(c, position)
            else:
                self.new[c.profile_id] = {**inserted_row(c, position), "is_default": False}
                self.rows[c.profile_id] = _Row(c.account_id, c.version, False)
        elif isinstance(c, ChangeDefault):
            # Its two statements one at a time: either row may be a new one.
            if c.previous is not None:
                self._default(c.previous, False, position)
            if c.new is not None:
                self._default(c.new, True, position)
        else:
            self._write_new(c.profile_id)
            self._execute(c, position)
            row = self.rows.get(c.profile_id)
            if row is not None:  # an UPDATE of no row changes nothing
                # Every other change sets the version; erasing also clears the default flag.
                row.version = c.version
                if isinstance(c, EraseProfile):
                    row.is_default = False

    def _default(self, profile_id: UUID, is_default: bool, position: int) -> None:
        new = self.new.get(profile_id)
        if new is not None:
            new.update(is_default=is_default, position=position)
        else:
            self._execute(
                ChangeDefault(None, profile_id) if is_default else ChangeDefault(profile_id, None), position
            )
        row = self.rows.get(profile_id)
        if row is not None:  # an UPDATE of no row changes nothing
            row.is_default = is_default

    def _execute(self, c: RowChange, position: int) -> None:
        self.owner.writer.execute(self.curs, c, position)

    def _write_new(self, profile_id: UUID) -> None:
        """A new profile's row as it stands, before a change made by its statement."""
        values = self.new.pop(profile_id, None)
        if values is not None:
            self.curs.execute(*insert_statement(self.owner.table, values), prepare=True)

    def _list(self, c: ListEvent, position: int) -> None:
        # As profiles_sql's ListEvent statements read it: the event's own account,
        # else that of the row of account_of, else that of the roster.
        account = c.account_id
        if account is None and c.account_of is not None:
            row = self.rows.get(c.account_of)
            account = row.account_id if row is not None else None
        if account is None and c.roster is not None:
            account = self.rosters.get(c.roster)
        if c.roster is not None and c.account_id is not None and c.roster not in self.rosters:
            self.rosters[c.roster] = c.account_id
            self.new_rosters.append((c.roster, c.account_id))
        self.account_events.append((account, position, c.default_change))
        for profile_id, concerns in c.profiles:
            row = self.rows.get(profile_id)
            version, is_default = (row.version, row.is_default) if row is not None else (0, False)
            self.history.append((profile_id, position, version, is_default, concerns, c.recorded_at))

    def copy_out(self) -> None:
        owner, curs = self.owner, self.curs
        if self.new:
            columns = tuple(next(iter(self.new.values())))
            statement = SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                owner._t(owner.table[1]), SQL(", ").join(map(Identifier, columns))
            )
            with curs.copy(statement) as cp:
                cp.set_types([SQL_TYPES[col] for col in columns])
                for values in self.new.values():
                    cp.write_row([column_value(col, values[col]) for col in columns])
        for name, rows in (
            ("rosters", self.new_rosters),
            ("accounts", self.account_events),
            ("history", self.history),
        ):
            if rows:
                statement, types = owner._copies[name]
                with curs.copy(statement) as cp:
                    cp.set_types(types)
                    for r in rows:
                        cp.write_row(r)
