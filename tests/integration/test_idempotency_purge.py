"""Idempotency keys expire and are purged: under a stream of unique keys the
table holds the keys still within their TTL, plus at most a batch of expired ones."""

from __future__ import annotations

import uuid

import pytest
from psycopg.sql import SQL

from infrastructure.container import Container
from infrastructure.idempotency import PURGE_BATCH, IdempotencyStore

pytestmark = pytest.mark.postgres


def rows(store: IdempotencyStore) -> int:
    with store.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(SQL("SELECT count(*) AS n FROM {}").format(store.table))
        return int(curs.fetchone()["n"])  # type: ignore[index]


def use(store: IdempotencyStore, account: str, key: str) -> None:
    """One command's life: reserve, (commit,) store the response."""
    assert store.reserve(account, key, "fp")
    store.finish(account, key, 201, {"etag": '"1"'}, b"{}")


def test_a_stream_of_unique_keys_keeps_the_table_bounded(container: Container) -> None:
    datastore = container.idempotency.datastore
    remembered = IdempotencyStore(datastore, ttl_seconds=3600)
    # TTL 0: every key has expired by the next transaction, as a day-old key has.
    forgotten = IdempotencyStore(datastore, ttl_seconds=0)
    account = f"acc-{uuid.uuid4().hex[:8]}"
    use(remembered, account, "kept")
    sizes = []
    for i in range(400):
        use(forgotten, account, f"unique-{i}")
        sizes.append(rows(forgotten))
    # Without the purge the table would hold 401 rows.
    assert max(sizes) <= 1 + PURGE_BATCH + 1, max(sizes)
    kept = remembered.get(account, "kept")
    assert kept is not None and kept.state == "done" and kept.body == b"{}"


def test_an_expired_key_whose_request_is_still_running_is_not_purged(container: Container) -> None:
    """Its command may be about to mark the key committed: purging it then would
    turn the command's answer into a 409."""
    datastore = container.idempotency.datastore
    forgotten = IdempotencyStore(datastore, ttl_seconds=0)
    account = f"acc-{uuid.uuid4().hex[:8]}"
    assert forgotten.reserve(account, "running", "fp")  # in flight, lease of 30 s
    for i in range(3 * PURGE_BATCH):
        use(forgotten, account, f"other-{i}")
    running = forgotten.get(account, "running")
    assert running is not None and running.state == "in_flight"
    assert rows(forgotten) <= 1 + PURGE_BATCH + 1
