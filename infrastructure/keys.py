"""Data keys: one AES-256 key per profile (and one per account, for its roster's
text), kept in a key store of their own and never exported with the log.

Destroying a key is what erases: the events keep their ciphertext (and so
their hashes), but nothing can read it any more. A destroyed key leaves a
tombstone, so "destroyed" (the data reads as erased) is told apart from
"missing" (a misconfigured key store: reading fails loudly)."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

KEY_BYTES = 32
TABLE = "data_keys"
KEY_CONSTRAINT = f"{TABLE}_pkey"  # the primary key's name, as PostgreSQL derives it


class KeyDestroyed(Exception):
    """The key was destroyed: nothing may be encrypted under it again."""


class KeyMissing(Exception):
    """No key (and no tombstone) for data that was encrypted: the key store is
    not the one the events were written with."""


class KeyStore(Protocol):
    """What the service needs of a key store; a KMS can stand behind it."""

    def get(self, key_id: UUID) -> bytes | None:
        """The key; None once destroyed; KeyMissing if there never was one."""

    def get_or_create(self, key_id: UUID) -> bytes:
        """The key, made now if there is none; KeyDestroyed if it was destroyed."""

    def destroy(self, key_id: UUID) -> None:
        """Forgets the key for good (idempotent), leaving a tombstone."""

    def live_keys(self, key_ids: list[UUID]) -> list[UUID]:
        """Those of key_ids whose key still exists."""

    def get_many(self, key_ids: list[UUID]) -> dict[UUID, bytes | None]:
        """The keys of key_ids that the store has (None: destroyed); missing ones are left out."""


class PostgresKeyStore:
    """The default key store: a table, in the event store's database or in
    another one (KEYS_DATABASE_URL)."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        self.table = SQL("{}.{}").format(Identifier(datastore.schema), Identifier(TABLE))
        self._get = SQL("SELECT secret FROM {} WHERE key_id = %s").format(self.table).as_string()
        # Every new key of a save in one statement (a group commit's save has many),
        # in binary (psycopg dumps a text array in Python, element by element).
        self._insert = (
            SQL("INSERT INTO {} (key_id, secret) SELECT * FROM unnest(%b::uuid[], %b::bytea[])")
            .format(self.table)
            .as_string()
        )
        # One round trip: insert unless present, then read whichever row won.
        self._get_or_create = (
            SQL(
                "WITH new AS (INSERT INTO {t} (key_id, secret) VALUES (%s, %s)"
                " ON CONFLICT (key_id) DO NOTHING RETURNING secret)"
                " SELECT secret FROM new UNION ALL SELECT secret FROM {t} WHERE key_id = %s"
                " AND NOT EXISTS (SELECT 1 FROM new)"
            )
            .format(t=self.table)
            .as_string()
        )

    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (key_id uuid PRIMARY KEY, secret bytea,"
                    " created_at timestamptz NOT NULL DEFAULT now(), destroyed_at timestamptz,"
                    " CHECK ((secret IS NULL) = (destroyed_at IS NOT NULL)))"
                ).format(self.table)
            )

    def get(self, key_id: UUID) -> bytes | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._get, (key_id,), prepare=True)
            row: Any = curs.fetchone()
        if row is None:
            raise KeyMissing(f"no data key {key_id} in the key store")
        return None if row["secret"] is None else bytes(row["secret"])

    def get_or_create(self, key_id: UUID) -> bytes:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._get_or_create, (key_id, os.urandom(KEY_BYTES), key_id), prepare=True)
            row: Any = curs.fetchone()
        if row is None or row["secret"] is None:
            raise KeyDestroyed(f"data key {key_id} was destroyed")
        return bytes(row["secret"])

    def insert_in(self, curs: Any, secrets: dict[UUID, bytes]) -> None:
        """Stores new keys in the caller's transaction; a row for a key_id that
        exists already fails that transaction (IntegrityError on KEY_CONSTRAINT)."""
        curs.execute(self._insert, (list(secrets), list(secrets.values())), prepare=True)

    def destroy(self, key_id: UUID) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {t} (key_id, secret, destroyed_at) VALUES (%s, NULL, now())"
                    " ON CONFLICT (key_id) DO UPDATE SET secret = NULL,"
                    " destroyed_at = coalesce({t}.destroyed_at, now())"
                ).format(t=self.table),
                (key_id,),
            )

    def get_many(self, key_ids: list[UUID]) -> dict[UUID, bytes | None]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL("SELECT key_id, secret FROM {} WHERE key_id = ANY(%s)").format(self.table), (key_ids,)
            )
            return {
                row["key_id"]: None if row["secret"] is None else bytes(row["secret"])
                for row in curs.fetchall()
            }

    def live_keys(self, key_ids: list[UUID]) -> list[UUID]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL("SELECT key_id FROM {} WHERE key_id = ANY(%s) AND secret IS NOT NULL").format(self.table),
                (key_ids,),
            )
            return [row["key_id"] for row in curs.fetchall()]


_DESTROYED = b""


class KeyRing:
    """A key store behind a bounded in-memory cache. Live keys are kept for
    ttl seconds, so that a key destroyed by another process stops being used
    here within that time; a destroyed key stays destroyed, so that is kept."""

    def __init__(
        self,
        store: KeyStore,
        max_size: int = 10_000,
        ttl: float = 5.0,
        with_events: PostgresKeyStore | None = None,
    ) -> None:
        self.store = store
        # The store when its table is in the event store's database: a new
        # aggregate's key is then made here and stored in the transaction of
        # the aggregate's first events (NewKeys), not committed on its own first.
        self.with_events = with_events
        self.max_size = max_size
        self.ttl = ttl
        self._cache: OrderedDict[UUID, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def _cached(self, key_id: UUID) -> bytes | None:
        with self._lock:
            entry = self._cache.get(key_id)
            if entry is None:
                return None
            if entry[1] is not _DESTROYED and entry[0] <= time.monotonic():
                del self._cache[key_id]
                return None
            self._cache.move_to_end(key_id)
            return entry[1]

    def _keep(self, key_id: UUID, secret: bytes) -> None:
        if self.max_size <= 0:
            return
        with self._lock:
            self._cache[key_id] = (time.monotonic() + self.ttl, secret)
            self._cache.move_to_end(key_id)
            while len(self._cache) > self.max_size:
                self._cache.popitem(last=False)

    def for_reading(self, key_id: UUID) -> bytes | None:
        """The key, or None when it was destroyed (the data reads as erased)."""
        secret = self._cached(key_id)
        if secret is None:
            found = self.store.get(key_id)
            secret = _DESTROYED if found is None else found
            self._keep(key_id, secret)
        return None if secret is _DESTROYED else secret

    def prefetch(self, key_ids: set[UUID]) -> None:
        """Keeps the keys of key_ids that are not kept yet, read in one query: a
        replay (rebuild) opens the events of thousands of profiles in a row, and
        one query per profile showed as most of its time."""
        wanted = [key_id for key_id in key_ids if self._cached(key_id) is None]
        if not wanted:
            return
        for key_id, secret in self.store.get_many(wanted).items():
            self._keep(key_id, _DESTROYED if secret is None else secret)

    def for_writing(self, key_id: UUID) -> bytes:
        secret = self._cached(key_id)
        if secret is _DESTROYED:
            raise KeyDestroyed(f"data key {key_id} was destroyed")
        if secret is None:
            secret = self.store.get_or_create(key_id)
            self._keep(key_id, secret)
        return secret

    def new_key(self, key_id: UUID) -> bytes | None:
        """A key for an aggregate whose first events are being stored, to go
        into their transaction (NewKeys); None when it cannot (the keys live
        in another database, or the key is known here): for_writing then."""
        if self.with_events is None or self._cached(key_id) is not None:
            return None
        return os.urandom(KEY_BYTES)

    def new_keys(self) -> NewKeys | None:
        """What one save's new keys go into; None when they cannot go with the events."""
        return None if self.with_events is None else NewKeys(self.with_events)

    def stored(self, new: NewKeys) -> None:
        """The keys of new_keys, once their transaction committed."""
        for key_id, secret in new.secrets.items():
            self._keep(key_id, secret)

    def destroy(self, key_id: UUID) -> None:
        self.store.destroy(key_id)
        self._keep(key_id, _DESTROYED)


class NewKeys:
    """The keys made for one save's new aggregates (KeyRing.new_key): the
    recorder inserts them in the events' transaction, and the ring keeps them
    once it commits."""

    def __init__(self, store: PostgresKeyStore) -> None:
        self.store = store
        self.secrets: dict[UUID, bytes] = {}

    def insert(self, curs: Any) -> None:
        if self.secrets:
            self.store.insert_in(curs, self.secrets)
