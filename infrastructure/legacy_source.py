"""Reading a legacy dashboard's database for import-legacy: one READ ONLY,
REPEATABLE READ snapshot, each table streamed through a server-side cursor a
few rows at a time, so memory stays flat however large the tables are. Each
row is shrunk as it arrives to the bounded summary the plan needs
(infrastructure/legacy_rows.py). JSON columns arrive as their text (RawJson),
never parsed here: a deeply nested document cannot exhaust the stack before
the row's summary has looked at it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import psycopg
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

from infrastructure.legacy_rows import (
    PROFILE_REQUIRED,
    PROFILES_TABLE,
    VEHICLE_REQUIRED,
    VEHICLES_TABLE,
    LegacyTables,
    LegacyVehicle,
    RawJson,
    profile_shrinker,
    vehicle_shrinker,
)

# Rows per round trip: a handful, since a single legacy row may hold megabytes.
ROWS_PER_FETCH = 4

T = TypeVar("T")


class LegacyReadError(Exception):
    """The legacy database cannot be reached or read, or is not a legacy dashboard's."""


class _RawJsonLoader(Loader):
    def load(self, data: Any) -> RawJson:
        return RawJson(bytes(data).decode())


def read_legacy(url: str) -> LegacyTables:
    """Both tables, each row shrunk as it streams in."""
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
            found = _required(conn, PROFILES_TABLE, PROFILE_REQUIRED)
            if found is None:
                raise LegacyReadError(f"the legacy database has no {PROFILES_TABLE} table")
            schema, profile_columns = found
            profiles = _stream(
                conn,
                SQL("SELECT * FROM {}.{} ORDER BY created_at ASC NULLS LAST, id ASC NULLS LAST").format(
                    Identifier(schema), Identifier(PROFILES_TABLE)
                ),
                profile_shrinker(profile_columns),
            )
            vehicle_columns: list[str] | None = None
            vehicles: list[LegacyVehicle] = []
            found = _required(conn, VEHICLES_TABLE, VEHICLE_REQUIRED)
            if found is not None:
                schema, vehicle_columns = found
                vehicles = _stream(
                    conn,
                    SQL("SELECT * FROM {}.{} ORDER BY id ASC NULLS LAST").format(
                        Identifier(schema), Identifier(VEHICLES_TABLE)
                    ),
                    vehicle_shrinker(vehicle_columns),
                )
            return LegacyTables(profile_columns, profiles, vehicle_columns, vehicles)
    except psycopg.Error as e:
        raise LegacyReadError(f"cannot read the legacy database: {first_line(e)}") from None
    finally:
        conn.close()


def _stream(
    conn: psycopg.Connection[Any], statement: Any, shrink: Callable[[Mapping[str, Any]], T]
) -> list[T]:
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
