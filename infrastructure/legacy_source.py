"""Reading a legacy dashboard's database for import-legacy: one READ ONLY,
REPEATABLE READ snapshot, each table streamed through a server-side cursor a
few rows at a time, so memory stays flat however large the tables are. The
caller shrinks each row as it arrives (legacy_import keeps a bounded summary).
JSON columns arrive as their text (RawJson), never parsed here: a deeply
nested document cannot exhaust the stack before the caller has looked at it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

# Rows per round trip: a handful, since a single legacy row may hold megabytes.
ROWS_PER_FETCH = 4

Row = dict[str, Any]
Shrink = Callable[[Row], Row]


class LegacyReadError(Exception):
    """The legacy database cannot be reached or read, or is not a legacy dashboard's."""


class RawJson(str):
    """A json or jsonb value as the server sent it, unparsed."""


class _RawJsonLoader(Loader):
    def load(self, data: Any) -> RawJson:
        return RawJson(bytes(data).decode())


@dataclass
class LegacyTables:
    profile_columns: list[str]
    profiles: list[Row]  # shrunk, ordered by created_at, then id
    vehicle_columns: list[str] | None  # None: no vehicles table
    vehicles: list[Row]  # shrunk, ordered by id


def read_legacy(
    url: str,
    profiles_table: str,
    profile_required: tuple[str, ...],
    vehicles_table: str,
    vehicle_required: tuple[str, ...],
    shrink_profile: Callable[[list[str]], Shrink],
    shrink_vehicle: Callable[[list[str]], Shrink],
) -> LegacyTables:
    """Both tables, each row shrunk as it streams in (the shrinkers are made from the columns)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as e:
        raise LegacyReadError(f"--from is not a PostgreSQL URL: {e}") from None
    extra = {} if "connect_timeout" in params else {"connect_timeout": "10"}
    try:
        conn = psycopg.connect(make_conninfo(url, **extra), row_factory=dict_row)
    except psycopg.Error as e:
        raise LegacyReadError(f"cannot connect to the legacy database: {first_line(e)}") from None
    try:
        for name in ("json", "jsonb"):
            conn.adapters.register_loader(name, _RawJsonLoader)
        # Every statement runs in one READ ONLY transaction over one snapshot.
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction(force_rollback=True):
            for own in ("racer_profiles_tracking", "racerprofiles_events"):
                if _table(conn, own) is not None:
                    raise LegacyReadError(
                        f"the --from database is a racer-profiles store (it has {own}); "
                        "name the legacy dashboard's database"
                    )
            found = _required(conn, profiles_table, profile_required)
            if found is None:
                raise LegacyReadError(f"the legacy database has no {profiles_table} table")
            schema, profile_columns = found
            profiles = _stream(
                conn,
                SQL("SELECT * FROM {}.{} ORDER BY created_at ASC NULLS LAST, id ASC NULLS LAST").format(
                    Identifier(schema), Identifier(profiles_table)
                ),
                shrink_profile(profile_columns),
            )
            vehicle_columns: list[str] | None = None
            vehicles: list[Row] = []
            found = _required(conn, vehicles_table, vehicle_required)
            if found is not None:
                schema, vehicle_columns = found
                vehicles = _stream(
                    conn,
                    SQL("SELECT * FROM {}.{} ORDER BY id ASC NULLS LAST").format(
                        Identifier(schema), Identifier(vehicles_table)
                    ),
                    shrink_vehicle(vehicle_columns),
                )
            return LegacyTables(profile_columns, profiles, vehicle_columns, vehicles)
    except psycopg.Error as e:
        raise LegacyReadError(f"cannot read the legacy database: {first_line(e)}") from None
    finally:
        conn.close()


def _stream(conn: psycopg.Connection[Any], statement: Any, shrink: Shrink) -> list[Row]:
    with conn.cursor(name="legacy_rows", row_factory=dict_row) as curs:
        curs.itersize = ROWS_PER_FETCH
        curs.execute(statement)
        return [shrink(row) for row in curs]


def _required(
    conn: psycopg.Connection[Any], name: str, required: tuple[str, ...]
) -> tuple[str, list[str]] | None:
    found = _table(conn, name)
    if found is not None:
        missing = [c for c in required if c not in found[1]]
        if missing:
            raise LegacyReadError(f"legacy {name} lacks column(s) {', '.join(missing)}")
    return found


def _table(conn: psycopg.Connection[Any], name: str) -> tuple[str, list[str]] | None:
    """(schema, columns in table order) of the table `name` resolves to on the search path."""
    row = conn.execute(
        "SELECT n.nspname AS schema, c.oid AS oid FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
        (name,),
    ).fetchone()
    if row is None:
        return None
    columns = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum",
        (row["oid"],),
    ).fetchall()
    return row["schema"], [c["attname"] for c in columns]


def first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
