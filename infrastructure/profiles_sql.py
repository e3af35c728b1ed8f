"""SQL for the racer_profiles table: its DDL and the statement of each row change.

Every statement is parameterised on the table, so the rebuild can fill a fresh
table with the same code the live view uses."""

from __future__ import annotations

from dataclasses import fields
from functools import lru_cache, singledispatch
from typing import Any

from psycopg import Cursor
from psycopg.sql import SQL, Composed, Identifier

from infrastructure.catalog import Present
from infrastructure.jsonb_values import jsonb
from projections.rows import (
    COLUMNS,
    JSONB,
    UPDATABLE,
    AddVehicle,
    ChangeDefault,
    ChangeVehicle,
    EraseProfile,
    InsertProfile,
    ListEvent,
    RemoveVehicle,
    UpdateProfile,
)

TABLE = "racer_profiles"
# The table a rebuild fills, then swaps in for TABLE (infrastructure/rebuild.py).
NEXT_TABLE = f"{TABLE}_next"


def history_table(table: str) -> str:
    """A profile's history entries (projections/history.py), kept beside its read table."""
    return f"{table}_history"


def account_events_table(table: str) -> str:
    """Every event of an account by position (the export; default changes flagged)."""
    return f"{table}_account_events"


def rosters_table(table: str) -> str:
    """Each roster's account, as its first event named it."""
    return f"{table}_rosters"


def tables(table: str) -> tuple[str, ...]:
    """The read table and the audit index tables kept beside it (rebuilt together)."""
    return table, history_table(table), account_events_table(table), rosters_table(table)


# Index names, by what they hold (a rebuilt table's indexes are renamed with it).
INDEXES = ("one_default", "account_order")
# PostgreSQL's name for the read table's primary key (its id column's PRIMARY KEY).
PRIMARY_KEY = "pkey"


def index_name(table: str, index: str) -> str:
    return f"{table}_{index}"


def index_names(table: str) -> tuple[str, ...]:
    """Every index of the table and its audit tables, in the same order for any table."""
    return tuple(index_name(table, i) for i in (*INDEXES, PRIMARY_KEY, *AUDIT_INDEXES))


def ddl(schema: str, table: str, present: Present = frozenset()) -> list[Composed]:
    """The table from ProfileRow's columns and its audit tables; columns added since
    a table was made are added to it. present: the columns and indexes that exist
    already (infrastructure/catalog.py): the statements that would add them are left out."""
    return [statement for adds, statement in _ddl(schema, table) if adds not in present]


# What a statement adds that may exist already, (table, column or index); None: a
# CREATE TABLE IF NOT EXISTS, which takes no lock on an existing table.
_Adds = tuple[str, str] | None


def _ddl(schema: str, table: str) -> list[tuple[_Adds, Composed]]:
    t = SQL("{}.{}").format(Identifier(schema), Identifier(table))
    definitions = SQL(", ").join(
        SQL("{} ").format(Identifier(c.name)) + SQL(c.metadata["sql"]) for c in COLUMNS
    )
    upgrades = [
        (
            (table, c.name),
            SQL("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {c} ").format(t=t, c=Identifier(c.name))
            + SQL(c.metadata["sql"]),
        )
        for c in COLUMNS
        # Only a column with a default or nullable can be added to a table that has rows.
        if "DEFAULT" in c.metadata["sql"] or "NOT NULL" not in c.metadata["sql"]
    ]
    one_default, account_order = (index_name(table, i) for i in INDEXES)
    return [
        (None, SQL("CREATE TABLE IF NOT EXISTS {t} (").format(t=t) + definitions + SQL(")")),
        *upgrades,
        # The read table can never hold two defaults for one account.
        (
            (table, one_default),
            SQL("CREATE UNIQUE INDEX IF NOT EXISTS {i} ON {t} (account_id) WHERE is_default").format(
                i=Identifier(one_default), t=t
            ),
        ),
        (
            (table, account_order),
            SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (account_id, created_at, id)").format(
                i=Identifier(account_order), t=t
            ),
        ),
        *_audit_index_ddl(schema, table),
    ]


# Index names of the audit tables, by suffix (rebuild renames them on its swap).
AUDIT_INDEXES = ("history_pkey", "history_at", "account_events_pkey", "account_defaults", "rosters_pkey")


def _audit_index_ddl(schema: str, table: str) -> list[tuple[_Adds, Composed]]:
    h = SQL("{}.{}").format(Identifier(schema), Identifier(history_table(table)))
    a = SQL("{}.{}").format(Identifier(schema), Identifier(account_events_table(table)))
    history_pkey, history_at, account_events_pkey, account_defaults, rosters_pkey = (
        index_name(table, i) for i in AUDIT_INDEXES
    )
    return [
        (
            None,
            SQL(
                "CREATE TABLE IF NOT EXISTS {h} ("
                " profile_id uuid NOT NULL, position bigint NOT NULL, version integer NOT NULL,"
                " is_default boolean NOT NULL, concerns text, recorded_at timestamptz NOT NULL,"
                " CONSTRAINT {pk} PRIMARY KEY (profile_id, position))"
            ).format(h=h, pk=Identifier(history_pkey)),
        ),
        # as_of: the first entry after a moment.
        (
            (history_table(table), history_at),
            SQL("CREATE INDEX IF NOT EXISTS {i} ON {h} (profile_id, recorded_at)").format(
                i=Identifier(history_at), h=h
            ),
        ),
        (
            None,
            SQL(
                "CREATE TABLE IF NOT EXISTS {a} ("
                " account_id text NOT NULL, position bigint NOT NULL, default_change boolean NOT NULL,"
                " CONSTRAINT {pk} PRIMARY KEY (account_id, position))"
            ).format(a=a, pk=Identifier(account_events_pkey)),
        ),
        # The default timeline: an account's default changes without its other events.
        (
            (account_events_table(table), account_defaults),
            SQL("CREATE INDEX IF NOT EXISTS {i} ON {a} (account_id, position) WHERE default_change").format(
                i=Identifier(account_defaults), a=a
            ),
        ),
        (
            None,
            SQL(
                "CREATE TABLE IF NOT EXISTS {r} (roster_id uuid NOT NULL, account_id text NOT NULL,"
                " CONSTRAINT {pk} PRIMARY KEY (roster_id))"
            ).format(
                r=SQL("{}.{}").format(Identifier(schema), Identifier(rosters_table(table))),
                pk=Identifier(rosters_pkey),
            ),
        ),
    ]


class RowWriter:
    """Executes row changes against one table on a given cursor."""

    def __init__(self, schema: str, table: str = TABLE) -> None:
        self.table = (schema, table)

    def execute(self, curs: Cursor[Any], change: object, position: int) -> None:
        statement, params = _statement(change, self.table, position)
        for part, args in zip(statement, params, strict=True):
            curs.execute(part, args, prepare=True)


Table = tuple[str, str]  # schema, table


@lru_cache(maxsize=256)
def _text(table: Table, template: str, columns: tuple[str, ...] = ()) -> str:
    """A statement as text, rendered once per table and template: psycopg renders
    a Composed on every execute, which showed in profiles of the rebuild."""
    sets = SQL("").join(SQL("{} = %s, ").format(Identifier(col)) for col in columns)
    schema, name = table
    return (
        SQL(template)
        .format(
            t=SQL("{}.{}").format(Identifier(schema), Identifier(name)),
            h=SQL("{}.{}").format(Identifier(schema), Identifier(history_table(name))),
            a=SQL("{}.{}").format(Identifier(schema), Identifier(account_events_table(name))),
            r=SQL("{}.{}").format(Identifier(schema), Identifier(rosters_table(name))),
            sets=sets,
            columns=SQL(", ").join(map(Identifier, columns)),
        )
        .as_string()
    )


@singledispatch
def _statement(change: object, table: Table, position: int) -> tuple[list[str], list[Any]]:
    raise TypeError(f"unknown row change {change!r}")


def column_value(column: str, value: Any) -> Any:
    """A column's value as a statement parameter (or a COPY field)."""
    return jsonb(value) if column in JSONB else value


def inserted_row(c: InsertProfile, position: int) -> dict[str, Any]:
    """The columns InsertProfile sets, by name: every field of InsertProfile is the column of
    its name (profile_id is id); archived, is_default and erased_at start at their defaults."""
    values = {("id" if f.name == "profile_id" else f.name): getattr(c, f.name) for f in fields(c)}
    values.update(vehicle_count=len(c.vehicles), updated_at=c.created_at, position=position)
    return values


def insert_statement(table: Table, values: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """INSERT of a row with these columns (the others at their defaults)."""
    columns = tuple(values)
    sql = _text(
        table,
        "INSERT INTO {t} ({columns}) VALUES (" + ", ".join(["%s"] * len(columns)) + ")",
        columns,
    )
    return sql, tuple(column_value(col, values[col]) for col in columns)


@_statement.register
def _(c: InsertProfile, table: Table, position: int) -> tuple[list[str], list[Any]]:
    sql, args = insert_statement(table, inserted_row(c, position))
    return [sql], [args]


@_statement.register
def _(c: UpdateProfile, table: Table, position: int) -> tuple[list[str], list[Any]]:
    columns = sorted(c.columns)
    if not set(columns) <= UPDATABLE:
        raise ValueError(f"cannot update columns {columns}")
    sql = _text(
        table,
        "UPDATE {t} SET {sets}version = %s, updated_at = %s, position = %s WHERE id = %s",
        tuple(columns),
    )
    args = (
        *[column_value(col, c.columns[col]) for col in columns],
        c.version,
        c.updated_at,
        position,
        c.profile_id,
    )
    return [sql], [args]


@_statement.register
def _(c: AddVehicle, table: Table, position: int) -> tuple[list[str], list[Any]]:
    sql = _text(
        table,
        "UPDATE {t} SET vehicles = vehicles || jsonb_build_array(%s::jsonb),"
        " vehicle_count = vehicle_count + 1,"
        " version = %s, updated_at = %s, position = %s WHERE id = %s",
    )
    return [sql], [(jsonb(c.vehicle), c.version, c.updated_at, position, c.profile_id)]


@_statement.register
def _(c: ChangeVehicle, table: Table, position: int) -> tuple[list[str], list[Any]]:
    sql = _text(
        table,
        "UPDATE {t} SET vehicles = (SELECT coalesce(jsonb_agg("
        "   CASE WHEN v->>'id' = %s THEN v || %s::jsonb ELSE v END ORDER BY n), '[]'::jsonb)"
        "   FROM jsonb_array_elements(vehicles) WITH ORDINALITY AS e(v, n)),"
        " version = %s, updated_at = %s, position = %s WHERE id = %s",
    )
    return [sql], [(c.vehicle_id, jsonb(c.changes), c.version, c.updated_at, position, c.profile_id)]


@_statement.register
def _(c: RemoveVehicle, table: Table, position: int) -> tuple[list[str], list[Any]]:
    sql = _text(
        table,
        "UPDATE {t} SET vehicles = (SELECT coalesce(jsonb_agg(v ORDER BY n), '[]'::jsonb)"
        "   FROM jsonb_array_elements(vehicles) WITH ORDINALITY AS e(v, n) WHERE v->>'id' <> %s),"
        " vehicle_count = vehicle_count - 1,"
        " version = %s, updated_at = %s, position = %s WHERE id = %s",
    )
    return [sql], [(c.vehicle_id, c.version, c.updated_at, position, c.profile_id)]


@_statement.register
def _(c: EraseProfile, table: Table, position: int) -> tuple[list[str], list[Any]]:
    sql = _text(
        table,
        "UPDATE {t} SET name = '', details = '{{}}'::jsonb, vehicles = '[]'::jsonb, vehicle_count = 0,"
        " archived = true, is_default = false, erased_at = %s,"
        " version = %s, updated_at = %s, position = %s WHERE id = %s",
    )
    return [sql], [(c.erased_at, c.version, c.erased_at, position, c.profile_id)]


@_statement.register
def _(c: ChangeDefault, table: Table, position: int) -> tuple[list[str], list[Any]]:
    # Clear first: the unique index is checked row by row, not at commit.
    clear = _text(table, "UPDATE {t} SET is_default = false, position = %s WHERE id = %s")
    mark = _text(table, "UPDATE {t} SET is_default = true, position = %s WHERE id = %s")
    parts, args = [], []
    if c.previous is not None:
        parts.append(clear)
        args.append((position, c.previous))
    if c.new is not None:
        parts.append(mark)
        args.append((position, c.new))
    return parts, args


@_statement.register
def _(c: ListEvent, table: Table, position: int) -> tuple[list[str], list[Any]]:
    # The account and the profile's version and default flag come from the read
    # table's rows, which this event's own row changes have just brought up to date.
    # A profile not there yet (its first event later in the log) is at version 0.
    account = _text(
        table,
        "INSERT INTO {a} (account_id, position, default_change) VALUES (coalesce(%s,"
        " (SELECT account_id FROM {t} WHERE id = %s), (SELECT account_id FROM {r} WHERE roster_id = %s)),"
        " %s, %s)",
    )
    entry = _text(
        table,
        "INSERT INTO {h} (profile_id, position, version, is_default, concerns, recorded_at)"
        " VALUES (%s, %s, coalesce((SELECT version FROM {t} WHERE id = %s), 0),"
        " coalesce((SELECT is_default FROM {t} WHERE id = %s), false), %s, %s)",
    )
    parts: list[str] = []
    args: list[tuple[Any, ...]] = []
    if c.roster is not None and c.account_id is not None:
        parts.append(
            _text(table, "INSERT INTO {r} (roster_id, account_id) VALUES (%s, %s) ON CONFLICT DO NOTHING")
        )
        args.append((c.roster, c.account_id))
    parts.append(account)
    args.append((c.account_id, c.account_of, c.roster, position, c.default_change))
    for profile_id, concerns in c.profiles:
        parts.append(entry)
        args.append((profile_id, position, profile_id, profile_id, concerns, c.recorded_at))
    return parts, args
