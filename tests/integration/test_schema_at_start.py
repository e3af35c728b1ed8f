"""The schema at start: every process (each server worker, each CLI command)
runs the DDL while others serve, so it must upgrade an older deployment's
tables and otherwise take no table lock that a request would wait on (an ALTER
on api_tokens at start deadlocked a CLI's `accounts create` against a starting
server; infrastructure/catalog.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
from psycopg.rows import dict_row

from infrastructure import catalog
from infrastructure.accounts import FIRST_TOKEN_NAME
from infrastructure.container import Container, build
from infrastructure.profiles_sql import TABLE, account_events_table, index_name, tables
from infrastructure.settings import Settings


def _starts_beside_a_writer(container: Container, tables: str, create: Callable[[], None]) -> bool:
    """Whether create() finished while another transaction was writing the
    tables (as `accounts create` or a command does) and had not committed."""
    done = threading.Event()
    with psycopg.connect(container.settings.database_url) as writer:
        writer.execute(f"LOCK TABLE {tables} IN ROW EXCLUSIVE MODE")
        starting = threading.Thread(target=lambda: (create(), done.set()))
        starting.start()
        finished = done.wait(10)
        writer.rollback()  # a start that waited goes on now
    starting.join(30)
    return finished


def test_starting_takes_no_lock_that_writers_wait_on(container: Container) -> None:
    assert _starts_beside_a_writer(container, "accounts, api_tokens", container.accounts.create_tables)
    read_tables = ", ".join(tables(TABLE))
    assert _starts_beside_a_writer(container, read_tables, container.view.create_table)
    assert _starts_beside_a_writer(container, "idempotency_keys", container.idempotency.create_table)


def test_the_read_table_gets_what_it_lacks(container: Container) -> None:
    """An older read table (a column and an index missing) is upgraded at start."""
    with psycopg.connect(container.settings.database_url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {TABLE} DROP COLUMN details")
        conn.execute(f"DROP INDEX {index_name(TABLE, 'account_order')}")
        conn.execute(f"DROP INDEX {index_name(TABLE, 'account_defaults')}")
    container.view.create_table()
    with psycopg.connect(container.settings.database_url) as conn:
        found = catalog.present(conn.cursor(row_factory=dict_row), "public", tables(TABLE))
    assert (TABLE, "details") in found
    assert (TABLE, index_name(TABLE, "account_order")) in found
    assert (account_events_table(TABLE), index_name(TABLE, "account_defaults")) in found


def test_an_older_deployments_tables_are_upgraded(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE accounts (id uuid PRIMARY KEY, name text NOT NULL,"
            " role text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            "CREATE TABLE api_tokens (token_id text PRIMARY KEY, account_id uuid NOT NULL REFERENCES"
            " accounts(id), secret_hash bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("INSERT INTO accounts (id, name, role) VALUES (gen_random_uuid(), 'old', 'owner')")
        conn.execute("INSERT INTO api_tokens SELECT 'tok', id, '\\x00' FROM accounts")
    container = build(Settings(database_url=database_url))
    try:
        with psycopg.connect(database_url) as conn:
            columns = {
                (t, c)
                for t, c in conn.execute(
                    "SELECT table_name, column_name FROM information_schema.columns"
                    " WHERE table_name IN ('accounts', 'api_tokens')"
                )
            }
            assert {
                ("accounts", "erased_at"),
                ("api_tokens", "name"),
                ("api_tokens", "expires_at"),
                ("api_tokens", "revoked_at"),
                ("api_tokens", "last_used_at"),
            } <= columns
            assert conn.execute("SELECT name FROM api_tokens").fetchone() == (FIRST_TOKEN_NAME,)
            assert conn.execute(
                "SELECT 1 FROM pg_indexes WHERE indexname = 'api_tokens_live_name'"
            ).fetchone()
        # The upgraded tables take the life cycle's writes.
        issued = container.accounts.create("new")
        assert container.accounts.authenticate(issued.token).account_id == str(issued.account_id)
    finally:
        container.close()
