"""Accounts and their bearer tokens.

A token is `rp_<token id>_<secret>`: the id finds the row, the secret is kept
only as a SHA-256 hash (the secret is 256 random bits, so a slow hash adds
nothing) and compared in constant time.

An account holds several named tokens (one per device or app), each with an
optional expiry. Revoking one marks its row and sends `NOTIFY
racer_tokens_revoked, '<token id>'` in the same transaction: every API
process hears it on its change feed's connection and forgets the token at once
(and ends its streams). `last used` is remembered in memory and written in
one statement every TOKEN_LAST_USED_FLUSH_SECONDS, not once per request."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.postgres import PostgresDatastore
from psycopg.errors import UniqueViolation
from psycopg.sql import SQL, Identifier

from infrastructure import catalog

ROLES = ("owner", "auditor", "admin")
REVOCATIONS_CHANNEL = "racer_tokens_revoked"
FIRST_TOKEN_NAME = "initial"
NAME_MAX = 80


@dataclass(frozen=True)
class Principal:
    account_id: str
    role: str
    token_id: str = ""
    expires_at: datetime | None = None

    def seconds_left(self) -> float | None:
        """Seconds until the token expires; None: it does not."""
        if self.expires_at is None:
            return None
        return (self.expires_at - datetime.now(UTC)).total_seconds()


@dataclass(frozen=True)
class NewAccount:
    account_id: UUID
    name: str
    role: str
    token: str
    token_id: str


@dataclass(frozen=True)
class NewToken:
    token_id: str
    account_id: UUID
    name: str
    expires_at: datetime | None
    token: str  # shown once, never stored


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown of a token: never its secret."""

    token_id: str
    account_id: UUID
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenError(ValueError):
    """A token or account request that cannot be done (unknown account, name taken...)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def token_id_of(token_or_id: str) -> str:
    """The id part of a whole token (`rp_<id>_<secret>`), or the id itself."""
    parts = token_or_id.strip().split("_", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "rp" else token_or_id.strip()


def _check_name(name: str, field: str = "name") -> str:
    name = name.strip()
    if not name or len(name) > NAME_MAX or not name.isprintable():
        raise TokenError(field, f"must be 1-{NAME_MAX} printable characters")
    return name


def _check_expiry(expires_at: datetime | None) -> datetime | None:
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        raise TokenError("expires_at", "must be a time with a UTC offset")
    if expires_at <= datetime.now(UTC):
        raise TokenError("expires_at", "must be in the future")
    return expires_at


LIVE_NAME_INDEX = "api_tokens_live_name"


class Accounts:
    # Found tokens are remembered so that a request costs no lookup; the secret
    # is still hashed and compared on every request. While revocations are
    # heard (the change feed listens), a revocation removes its entry at once;
    # while they are not, entries are trusted only briefly.
    CACHE_SECONDS = 30.0
    UNHEARD_CACHE_SECONDS = 0.5
    CACHE_SIZE = 10_000

    def __init__(
        self, datastore: PostgresDatastore, revocations_heard: threading.Event | None = None
    ) -> None:
        self.datastore = datastore
        self.revocations_heard = revocations_heard or threading.Event()
        # token id -> (monotonic time found, secret hash, principal)
        self._cache: dict[str, tuple[float, bytes, Principal]] = {}
        self._generation = 0  # counts revocations heard: a lookup racing one is not cached
        self._revoked_heard: dict[str, None] = {}  # the latest revocations heard, oldest first
        self._used: dict[str, float] = {}  # token id -> time.time() of its last use, not yet written
        schema = Identifier(datastore.schema)
        self._accounts = SQL("{}.{}").format(schema, Identifier("accounts"))
        self._tokens = SQL("{}.{}").format(schema, Identifier("api_tokens"))
        self._info = SQL(
            "SELECT t.token_id, t.account_id, t.name, a.role, t.created_at, t.last_used_at, t.expires_at,"
            " t.revoked_at FROM {} t JOIN {} a ON a.id = t.account_id"
        ).format(self._tokens, self._accounts)

    def create_tables(self) -> None:
        """Creates the tables, or upgrades older ones: only what is missing
        (infrastructure/catalog.py), and always accounts before api_tokens, the
        order in which `create` writes them (the other order deadlocked a CLI's
        `accounts create` against a starting server)."""
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
            present = catalog.present(curs, self.datastore.schema, ("accounts", "api_tokens"))
            # Upgrades a table made before accounts could be erased.
            if ("accounts", "erased_at") not in present:
                curs.execute(
                    SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS erased_at timestamptz").format(
                        self._accounts
                    )
                )
            # Added by the token life cycle; ALTER keeps older deployments' tables.
            for column in (
                f"name text NOT NULL DEFAULT '{FIRST_TOKEN_NAME}'",
                "expires_at timestamptz",
                "revoked_at timestamptz",
                "last_used_at timestamptz",
            ):
                if ("api_tokens", column.split()[0]) not in present:
                    curs.execute(
                        SQL(f"ALTER TABLE {{}} ADD COLUMN IF NOT EXISTS {column}").format(self._tokens)
                    )
            if ("api_tokens", LIVE_NAME_INDEX) not in present:
                curs.execute(
                    SQL(
                        "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (account_id, name) WHERE revoked_at IS NULL"
                    ).format(Identifier(LIVE_NAME_INDEX), self._tokens)
                )

    def exists(self, account_id: str) -> bool:
        try:
            key = UUID(account_id)
        except ValueError:
            return False
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL("SELECT 1 FROM {} WHERE id = %s").format(self._accounts), (key,))
            return curs.fetchone() is not None

    def role_of(self, account_id: UUID) -> str | None:
        """The account's role; None when there is no such account."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL("SELECT role FROM {} WHERE id = %s").format(self._accounts), (account_id,))
            row: Any = curs.fetchone()
        return None if row is None else str(row["role"])

    def erase(self, account_id: str) -> int:
        """Revokes every live token of the account (heard by every process, as any
        revocation) and removes its name; returns the number of tokens revoked.
        The row stays (ids only), so the account's events still name an account."""
        revoked = sum(self.revoke(t.token_id, account_id) for t in self.tokens(account_id))
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("UPDATE {} SET name = '', erased_at = coalesce(erased_at, now()) WHERE id = %s").format(
                    self._accounts
                ),
                (UUID(account_id),),
            )
        return revoked

    # --- accounts and tokens ------------------------------------------------

    def create(
        self,
        name: str,
        role: str = "owner",
        *,
        token_name: str = FIRST_TOKEN_NAME,
        expires_at: datetime | None = None,
    ) -> NewAccount:
        """A new account and its first token."""
        if role not in ROLES:
            raise TokenError("role", f"must be one of {', '.join(ROLES)}")
        name = _check_name(name)
        token_name = _check_name(token_name, "token_name")
        expires_at = _check_expiry(expires_at)
        account_id = uuid4()
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("INSERT INTO {} (id, name, role) VALUES (%s, %s, %s)").format(self._accounts),
                (account_id, name, role),
            )
            token = self._insert_token(curs, account_id, token_name, expires_at)
        return NewAccount(account_id, name, role, token.token, token.token_id)

    def issue(self, account_id: UUID, name: str, expires_at: datetime | None = None) -> NewToken:
        """A new named token for an existing account."""
        name = _check_name(name)
        expires_at = _check_expiry(expires_at)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("SELECT 1 FROM {} WHERE id = %s").format(self._accounts), (account_id,))
            if curs.fetchone() is None:
                raise TokenError("account_id", f"no account {account_id}")
            try:
                return self._insert_token(curs, account_id, name, expires_at)
            except UniqueViolation:
                raise TokenError("name", f"this account already has a live token named {name!r}") from None

    def _insert_token(self, curs: Any, account_id: UUID, name: str, expires_at: datetime | None) -> NewToken:
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        curs.execute(
            SQL(
                "INSERT INTO {} (token_id, account_id, secret_hash, name, expires_at) VALUES (%s, %s, %s, %s, %s)"
            ).format(self._tokens),
            (token_id, account_id, _hash(secret), name, expires_at),
        )
        return NewToken(token_id, account_id, name, expires_at, f"rp_{token_id}_{secret}")

    def tokens(
        self, account_id: UUID | str | None = None, *, include_revoked: bool = False
    ) -> list[TokenInfo]:
        """The tokens of one account (every account's when None), oldest first."""
        where = []
        params: list[Any] = []
        if account_id is not None:
            where.append("t.account_id = %s")
            params.append(account_id)
        if not include_revoked:
            where.append("t.revoked_at IS NULL")
        clause = SQL(" WHERE " + " AND ".join(where) if where else "")
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL("{}{} ORDER BY t.created_at, t.token_id").format(self._info, clause), params)
            rows = curs.fetchall()
        return [self._with_unflushed_use(TokenInfo(**row)) for row in rows]

    def token(self, token_id: str) -> TokenInfo | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL("{} WHERE t.token_id = %s").format(self._info), (token_id,))
            row = curs.fetchone()
        return self._with_unflushed_use(TokenInfo(**row)) if row else None

    def _with_unflushed_use(self, info: TokenInfo) -> TokenInfo:
        used = self._used.get(info.token_id)
        if used is None:
            return info
        seen = datetime.fromtimestamp(used, UTC)
        if info.last_used_at is None or seen > info.last_used_at:
            return TokenInfo(**{**info.__dict__, "last_used_at": seen})
        return info

    def revoke(self, token_id: str, account_id: UUID | str | None = None) -> bool:
        """Revokes a live token (of account_id, when given); False if there is none.
        Every process hears it within the change feed's poll interval."""
        scope = SQL(" AND account_id = %s") if account_id is not None else SQL("")
        params: tuple[Any, ...] = (token_id, account_id) if account_id is not None else (token_id,)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("UPDATE {} SET revoked_at = now() WHERE token_id = %s AND revoked_at IS NULL{}").format(
                    self._tokens, scope
                ),
                params,
            )
            revoked = curs.rowcount == 1
            if revoked:
                curs.execute("SELECT pg_notify(%s, %s)", (REVOCATIONS_CHANNEL, token_id))
        self.forget(token_id)
        return revoked

    def revoked_among(self, token_ids: list[str]) -> list[str]:
        """Those of token_ids that are revoked or expired now (after a missed notification)."""
        if not token_ids:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT i AS token_id FROM unnest(%s::text[]) AS i LEFT JOIN {} t ON t.token_id = i"
                    " WHERE t.token_id IS NULL OR t.revoked_at IS NOT NULL OR t.expires_at <= now()"
                ).format(self._tokens),
                (token_ids,),
            )
            return [row["token_id"] for row in curs.fetchall()]

    # --- the cache ----------------------------------------------------------

    def forget(self, token_id: str) -> None:
        """A revocation was heard (or made here): the token is looked up afresh."""
        self._generation += 1
        self._cache.pop(token_id, None)
        self._revoked_heard[token_id] = None
        if len(self._revoked_heard) > self.CACHE_SIZE:
            del self._revoked_heard[next(iter(self._revoked_heard))]

    def revocation_heard(self, token_id: str) -> bool:
        """True when this process heard token_id's revocation (no I/O): a stream
        that subscribed just after the feed ended the token's streams checks it."""
        return token_id in self._revoked_heard

    def forget_all(self) -> None:
        self._generation += 1
        self._cache.clear()

    def cached(self, token: str) -> Principal | None:
        """The token's principal if it was looked up lately (no I/O); else None."""
        parts = token.split("_", 2)
        if len(parts) != 3:
            return None
        hit = self._lookup_cache(parts[1], parts[2])
        return hit if isinstance(hit, Principal) else None

    def _lookup_cache(self, token_id: str, secret: str) -> Principal | bool:
        """The principal; False: the cache knows the token is not good; True: ask the database."""
        entry = self._cache.get(token_id)
        if entry is None:
            return True
        found, secret_hash, principal = entry
        age = time.monotonic() - found
        if age > (self.CACHE_SECONDS if self.revocations_heard.is_set() else self.UNHEARD_CACHE_SECONDS):
            return True
        if not hmac.compare_digest(secret_hash, _hash(secret)) or _expired(principal):
            return False
        self._used[token_id] = time.time()
        return principal

    def authenticate(self, token: str) -> Principal | None:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "rp" or not parts[1] or not parts[2]:
            return None
        token_id, secret = parts[1], parts[2]
        hit = self._lookup_cache(token_id, secret)
        if hit is not True:
            return hit if isinstance(hit, Principal) else None
        found = time.monotonic()
        generation = self._generation
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT t.secret_hash, t.expires_at, a.id, a.role FROM {} t JOIN {} a ON a.id = t.account_id"
                    " WHERE t.token_id = %s AND t.revoked_at IS NULL"
                ).format(self._tokens, self._accounts),
                (token_id,),
                prepare=True,
            )
            row = curs.fetchone()
        if row is None:
            _hash(secret)  # same work on a miss as on a hit
            return None
        principal = Principal(str(row["id"]), row["role"], token_id, row["expires_at"])
        if len(self._cache) >= self.CACHE_SIZE:
            self._cache.clear()
        if generation == self._generation:  # no revocation was heard while the row was read
            self._cache[token_id] = (found, bytes(row["secret_hash"]), principal)
        if not hmac.compare_digest(bytes(row["secret_hash"]), _hash(secret)) or _expired(principal):
            return None
        self._used[token_id] = time.time()
        return principal

    # --- last used ------------------------------------------------------------

    def flush_last_used(self) -> int:
        """Writes the remembered `last used` times in one statement; how many."""
        used, self._used = self._used, {}
        if not used:
            return 0
        ids = list(used)
        times = [datetime.fromtimestamp(used[i], UTC) for i in ids]
        try:
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(
                    SQL(
                        "UPDATE {} t SET last_used_at = GREATEST(t.last_used_at, u.at)"
                        " FROM unnest(%s::text[], %s::timestamptz[]) AS u(id, at) WHERE t.token_id = u.id"
                    ).format(self._tokens),
                    (ids, times),
                )
        except Exception:
            for token_id, at in used.items():  # kept for the next flush
                self._used[token_id] = max(at, self._used.get(token_id, 0.0))
            raise
        return len(ids)


def _expired(principal: Principal) -> bool:
    left = principal.seconds_left()
    return left is not None and left <= 0
