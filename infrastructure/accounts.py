"""Accounts and their bearer tokens.

A token is `rp_<token id>_<secret>`: the id finds the row, the secret is kept
only as a SHA-256 hash (the secret is 256 random bits, so a slow hash adds
nothing) and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from uuid import UUID, uuid4

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

ROLES = ("owner", "auditor", "admin")


@dataclass(frozen=True)
class Principal:
    account_id: str
    role: str


@dataclass(frozen=True)
class NewAccount:
    account_id: UUID
    name: str
    role: str
    token: str


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class Accounts:
    # Found tokens are remembered briefly so that a request costs no lookup;
    # the secret is still hashed and compared on every request.
    CACHE_SECONDS = 30.0
    CACHE_SIZE = 10_000

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        self._cache: dict[str, tuple[float, bytes, Principal]] = {}
        schema = Identifier(datastore.schema)
        self._accounts = SQL("{}.{}").format(schema, Identifier("accounts"))
        self._tokens = SQL("{}.{}").format(schema, Identifier("api_tokens"))

    def create_tables(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id uuid PRIMARY KEY, name text NOT NULL,"
                    " role text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
                ).format(self._accounts)
            )
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (token_id text PRIMARY KEY,"
                    " account_id uuid NOT NULL REFERENCES {}(id), secret_hash bytea NOT NULL,"
                    " created_at timestamptz NOT NULL DEFAULT now())"
                ).format(self._tokens, self._accounts)
            )

    def create(self, name: str, role: str = "owner") -> NewAccount:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        name = name.strip()
        if not name or len(name) > 80:
            raise ValueError("name must be 1-80 characters")
        account_id = uuid4()
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("INSERT INTO {} (id, name, role) VALUES (%s, %s, %s)").format(self._accounts),
                (account_id, name, role),
            )
            curs.execute(
                SQL("INSERT INTO {} (token_id, account_id, secret_hash) VALUES (%s, %s, %s)").format(
                    self._tokens
                ),
                (token_id, account_id, _hash(secret)),
            )
        return NewAccount(account_id, name, role, f"rp_{token_id}_{secret}")

    def cached(self, token: str) -> Principal | None:
        """The token's principal if it was looked up lately (no I/O); else None."""
        parts = token.split("_", 2)
        if len(parts) != 3:
            return None
        cached = self._cache.get(parts[1])
        if cached is None or cached[0] <= time.monotonic():
            return None
        _, secret_hash, principal = cached
        return principal if hmac.compare_digest(secret_hash, _hash(parts[2])) else None

    def authenticate(self, token: str) -> Principal | None:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "rp" or not parts[1] or not parts[2]:
            return None
        token_id, secret = parts[1], parts[2]
        cached = self._cache.get(token_id)
        if cached is not None and cached[0] > time.monotonic():
            _, secret_hash, principal = cached
            return principal if hmac.compare_digest(secret_hash, _hash(secret)) else None
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT t.secret_hash, a.id, a.role FROM {} t JOIN {} a ON a.id = t.account_id"
                    " WHERE t.token_id = %s"
                ).format(self._tokens, self._accounts),
                (token_id,),
                prepare=True,
            )
            row = curs.fetchone()
        if row is None:
            _hash(secret)  # same work on a miss as on a hit
            return None
        principal = Principal(str(row["id"]), row["role"])
        if len(self._cache) >= self.CACHE_SIZE:
            self._cache.clear()
        self._cache[token_id] = (time.monotonic() + self.CACHE_SECONDS, bytes(row["secret_hash"]), principal)
        if not hmac.compare_digest(bytes(row["secret_hash"]), _hash(secret)):
            return None
        return principal
