"""Idempotency keys: the first request's outcome is kept, retries get it back.

A key is reserved (in flight) before the command runs; the command's event
transaction marks it committed (see recorder.py), so "events written" and
"key used" can never disagree; the full response is stored right after,
sealed under the data key of the profile it shows (or of the account), and
dropped when that profile is erased."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from domain.roster import roster_id
from infrastructure import catalog
from infrastructure.keys import KeyDestroyed, KeyRing
from infrastructure.sealing import open_bytes, seal_bytes

TABLE = "idempotency_keys"
LEASE_SECONDS = 30
# Expired keys each reservation removes besides its own: more than one, so the
# expired rows cannot pile up however many unique keys arrive (see reserve).
PURGE_BATCH = 8


class KeyAlreadyCommitted(Exception):
    """A command's transaction found its idempotency key no longer in flight:
    another request with the key committed (or the key expired); nothing of
    this command was stored."""

    def __init__(self, account_id: str, key: str) -> None:
        super().__init__(f"idempotency key {key!r} of {account_id!r} is not in flight")
        self.account_id = account_id
        self.key = key


@dataclass(frozen=True)
class Stored:
    fingerprint: str
    state: str  # in_flight | committed | done
    lease_expired: bool
    status: int | None
    headers: dict[str, str]
    body: bytes | None
    profile_id: str | None


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"\0".join([method.encode(), path.encode(), body])).hexdigest()


class IdempotencyStore:
    def __init__(self, datastore: PostgresDatastore, ttl_seconds: int, keys: KeyRing | None = None) -> None:
        self.datastore = datastore
        self.keys = keys
        self.ttl = ttl_seconds
        self.table = SQL("{}.{}").format(Identifier(datastore.schema), Identifier(TABLE))

    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " account_id text NOT NULL, key text NOT NULL, fingerprint text NOT NULL,"
                    " state text NOT NULL, lease_until timestamptz NOT NULL,"
                    " expires_at timestamptz NOT NULL, profile_id text, status integer,"
                    " headers jsonb, body bytea, PRIMARY KEY (account_id, key))"
                ).format(self.table)
            )
            # Only what is missing: every process runs this at start (infrastructure/catalog.py).
            found = catalog.present(curs, self.datastore.schema, (TABLE,))
            if (TABLE, f"{TABLE}_expires_at") not in found:
                curs.execute(
                    SQL("CREATE INDEX IF NOT EXISTS {} ON {} (expires_at)").format(
                        Identifier(f"{TABLE}_expires_at"), self.table
                    )
                )
            # Upgrades a table made before bodies were sealed (NULL: a plaintext body).
            if (TABLE, "sealed_by") not in found:
                curs.execute(SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS sealed_by uuid").format(self.table))

    def reserve(self, account_id: str, key: str, fp: str) -> bool:
        """True when this request now owns the key (new, or expired and replaced).

        Each reservation also purges up to PURGE_BATCH expired keys of any account
        whose request is over (done, or its lease ran out): keys expire at the rate
        they are made, and each new one removes several, so under any stream of
        unique keys the table holds about a TTL's worth of them. SKIP LOCKED keeps
        concurrent reservations from queueing on each other's purges."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "WITH own AS (DELETE FROM {t} WHERE account_id = %s AND key = %s AND expires_at < now()),"
                    " purged AS (DELETE FROM {t} WHERE (account_id, key) IN ("
                    "   SELECT account_id, key FROM {t} WHERE expires_at < now()"
                    "   AND (state = 'done' OR lease_until < now())"
                    "   ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED))"
                    " SELECT 1"
                ).format(t=self.table),
                (account_id, key, PURGE_BATCH),
            )
            curs.execute(
                SQL(
                    "INSERT INTO {} (account_id, key, fingerprint, state, lease_until, expires_at)"
                    " VALUES (%s, %s, %s, 'in_flight', now() + make_interval(secs => %s),"
                    " now() + make_interval(secs => %s)) ON CONFLICT DO NOTHING"
                ).format(self.table),
                (account_id, key, fp, LEASE_SECONDS, self.ttl),
            )
            return curs.rowcount == 1

    def get(self, account_id: str, key: str) -> Stored | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT fingerprint, state, lease_until < now() AS expired, status, headers, body,"
                    " profile_id, sealed_by FROM {} WHERE account_id = %s AND key = %s"
                ).format(self.table),
                (account_id, key),
            )
            row: Any = curs.fetchone()
        if row is None:
            return None
        return Stored(
            row["fingerprint"],
            row["state"],
            row["expired"],
            row["status"],
            row["headers"] or {},
            self._open(row["body"], row["sealed_by"]),
            row["profile_id"],
        )

    def _open(self, body: Any, sealed_by: UUID | None) -> bytes | None:
        if body is None or sealed_by is None or self.keys is None:
            return bytes(body) if body is not None else None
        key = self.keys.for_reading(sealed_by)
        return open_bytes(bytes(body), key, sealed_by) if key is not None else None

    def take_over(self, account_id: str, key: str) -> bool:
        """Claims a key whose owner died before committing (its lease ran out)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "UPDATE {} SET lease_until = now() + make_interval(secs => %s)"
                    " WHERE account_id = %s AND key = %s AND state = 'in_flight' AND lease_until < now()"
                ).format(self.table),
                (LEASE_SECONDS, account_id, key),
            )
            return curs.rowcount == 1

    def finish(self, account_id: str, key: str, status: int, headers: dict[str, str], body: bytes) -> None:
        with self.datastore.transaction(commit=True) as curs:
            sealed_by = None
            if self.keys is not None:
                curs.execute(
                    SQL("SELECT profile_id FROM {} WHERE account_id = %s AND key = %s").format(self.table),
                    (account_id, key),
                )
                row: Any = curs.fetchone()
                profile_id = row["profile_id"] if row else None
                sealed_by, secret = self._sealing_key(account_id, profile_id)
                body = seal_bytes(body, secret, sealed_by)
            curs.execute(
                SQL(
                    "UPDATE {} SET state = 'done', status = %s, headers = %s, body = %s, sealed_by = %s"
                    " WHERE account_id = %s AND key = %s"
                ).format(self.table),
                (status, Jsonb(headers), body, sealed_by, account_id, key),
            )

    def _sealing_key(self, account_id: str, profile_id: str | None) -> tuple[UUID, bytes]:
        assert self.keys is not None
        if profile_id:
            try:
                return UUID(profile_id), self.keys.for_writing(UUID(profile_id))
            except KeyDestroyed:
                pass  # the erasure's own receipt: it shows no personal data
        return roster_id(account_id), self.keys.for_writing(roster_id(account_id))

    def forget_profile(self, profile_id: UUID) -> None:
        """An erased profile's stored responses go (their key is destroyed anyway);
        the erasure's own key (committed, not done yet) stays for its receipt."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("DELETE FROM {} WHERE profile_id = %s AND state = 'done'").format(self.table),
                (str(profile_id),),
            )

    def release(self, account_id: str, key: str) -> None:
        """Forgets a reservation whose request failed transiently and wrote nothing."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("DELETE FROM {} WHERE account_id = %s AND key = %s AND state = 'in_flight'").format(
                    self.table
                ),
                (account_id, key),
            )
