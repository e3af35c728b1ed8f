"""The account tables at start: every process (each server worker, each CLI
command) runs Accounts.create_tables while others serve, so it must upgrade an
older deployment's tables and otherwise touch no table lock that a request
would wait on (an ALTER on api_tokens at start deadlocked a CLI's `accounts
create` against a starting server)."""

from __future__ import annotations

import threading

import psycopg

from infrastructure.accounts import FIRST_TOKEN_NAME
from infrastructure.container import Container, build
from infrastructure.settings import Settings


def test_starting_takes_no_lock_that_writers_wait_on(container: Container) -> None:
    # Another transaction is writing both tables (as `accounts create` does) and
    # has not committed: starting again must not wait for it, nor it for us.
    done = threading.Event()
    with psycopg.connect(container.settings.database_url) as writer:
        writer.execute("LOCK TABLE accounts, api_tokens IN ROW EXCLUSIVE MODE")
        starting = threading.Thread(target=lambda: (container.accounts.create_tables(), done.set()))
        starting.start()
        finished = done.wait(10)
        writer.rollback()  # a start that waited goes on now
    starting.join(30)
    assert finished, "starting waited for another transaction's writes to the account tables"


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
