"""Where the projection stopped, kept in the database so that every process
(an API worker, another projector) can see it, and the record of skips."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

from infrastructure.profiles_view import PostgresProfilesView

STATUS_TABLE = "racer_profiles_stops"
SKIPS_TABLE = "racer_profiles_skips"


@dataclass(frozen=True)
class Stop:
    position: int
    error: str


class CannotSkip(Exception):
    """--skip names a position that is not the one the projection stopped before."""


class ProjectionStatus:
    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        schema = Identifier(datastore.schema)
        self.stops = SQL("{}.{}").format(schema, Identifier(STATUS_TABLE))
        self.skips = SQL("{}.{}").format(schema, Identifier(SKIPS_TABLE))

    def create_tables(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, position bigint NOT NULL,"
                    " error text NOT NULL, stopped_at timestamptz NOT NULL DEFAULT now())"
                ).format(self.stops)
            )
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, error text,"
                    " skipped_by text NOT NULL, skipped_at timestamptz NOT NULL DEFAULT now())"
                ).format(self.skips)
            )

    def record_stop(self, position: int, error: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {} (name, position, error) VALUES ('racer_profiles', %s, %s)"
                    " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position,"
                    " error = EXCLUDED.error, stopped_at = now()"
                ).format(self.stops),
                (position, error),
            )

    def stop(self, applied: int) -> Stop | None:
        """The recorded stop, unless the projection has moved past it since."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL("SELECT position, error FROM {} WHERE name = 'racer_profiles' AND position > %s").format(
                    self.stops
                ),
                (applied,),
                prepare=True,
            )
            row: Any = curs.fetchone()
        return Stop(row["position"], row["error"]) if row else None

    def skipped(self, upto: int) -> int:
        """How many events up to a position were skipped (`project --skip`): never
        applied, so neither in the read table nor in the audit index."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL("SELECT count(*) AS n FROM {} WHERE position <= %s").format(self.skips), (upto,))
            row: Any = curs.fetchone()
        return int(row["n"])

    def skip(self, view: PostgresProfilesView, app_name: str, position: int, who: str) -> None:
        """Marks one event as applied without applying it: explicit, and recorded."""
        applied = view.max_tracking_id(app_name) or 0
        stop = self.stop(applied)
        if stop is None or stop.position != position:
            raise CannotSkip(
                f"the projection has not stopped at position {position}"
                + (f" (it stopped at {stop.position})" if stop else f" (it has applied up to {applied})")
            )
        with self.datastore.transaction(commit=True) as curs:
            view.record_position(curs, app_name, position)
            curs.execute(
                SQL("INSERT INTO {} (position, error, skipped_by) VALUES (%s, %s, %s)").format(self.skips),
                (position, stop.error, who),
            )
            curs.execute(SQL("DELETE FROM {} WHERE name = 'racer_profiles'").format(self.stops))
