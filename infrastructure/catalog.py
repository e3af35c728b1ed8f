"""What exists already, read from PostgreSQL's catalog.

Every process runs the schema's DDL when it starts, while others serve. DDL
that would change nothing still locks its table: `ALTER TABLE … ADD COLUMN IF
NOT EXISTS` takes ACCESS EXCLUSIVE, `CREATE INDEX IF NOT EXISTS` SHARE, both
before they look, so a start queued behind any open transaction on the table
and every request queued behind the start (and two tables taken in the other
order than a writer's deadlocked). Reading the catalog takes no lock on the
tables it names, so start-up code asks here first and runs only what is missing."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from typing import Any

# (table, column) and (table, index) pairs.
Present = AbstractSet[tuple[str, str]]


def present(curs: Any, schema: str, tables: Iterable[str]) -> Present:
    """The columns and indexes of the schema's tables, as (table, name) pairs."""
    curs.execute(
        "SELECT c.relname AS relation, a.attname AS name FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %(schema)s AND c.relname = ANY(%(tables)s) AND a.attnum > 0"
        " AND NOT a.attisdropped"
        " UNION ALL SELECT tablename, indexname FROM pg_indexes"
        " WHERE schemaname = %(schema)s AND tablename = ANY(%(tables)s)",
        {"schema": schema, "tables": list(tables)},
    )
    return {(row["relation"], row["name"]) for row in curs.fetchall()}
