"""The CRUD baseline: the dashboard's plan, as a user would build it instead.

A `racer_profiles` table with `is_default`; "set default" clears the old
default and sets the new one in one transaction; the first active profile of
an account becomes its default. Same bearer tokens as the service
(`rp_<token id>_<secret>`, the secret's SHA-256 compared in constant time,
found tokens cached for 30 s), the same request models (api/schemas.py), the
same JSON shapes, and the same server stack: uvicorn with uvloop and
httptools, one worker, no access log; FastAPI `async def` endpoints on
psycopg's async pool (as large as the service's pools).

    python benchmarks/crud_app.py --port 8002 --database-url URL [--schema crud]

Its tables live in their own schema (benchmarks/run.py copies the service's
accounts, tokens and read-table rows into it, so both serve the same data).
Written for benchmarks/run.py only: no migrations, no history, no audit.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from api.schemas import DefaultRequest, ProfileCreate

POOL_SIZE = int(os.environ.get("API_THREADS", "8")) + 2  # the service's pool size
CACHE_SECONDS = 30.0
COLUMNS = (
    "id, account_id, name, details, vehicles, vehicle_count, archived, is_default,"
    " version, created_at, updated_at"
)


def ddl(schema: str) -> list[str]:
    """The CRUD tables, shaped like the service's (benchmarks/run.py fills them)."""
    s = Identifier(schema)
    return [
        SQL(q).format(s=s).as_string()
        for q in (
            "CREATE SCHEMA IF NOT EXISTS {s}",
            "CREATE TABLE {s}.accounts (id uuid PRIMARY KEY, name text NOT NULL, role text NOT NULL)",
            "CREATE TABLE {s}.api_tokens (token_id text PRIMARY KEY,"
            " account_id uuid NOT NULL REFERENCES {s}.accounts(id), secret_hash bytea NOT NULL)",
            "CREATE TABLE {s}.racer_profiles (id uuid PRIMARY KEY, account_id text NOT NULL,"
            " name text NOT NULL, details jsonb NOT NULL DEFAULT '{{}}'::jsonb,"
            " vehicles jsonb NOT NULL DEFAULT '[]'::jsonb, vehicle_count integer NOT NULL DEFAULT 0,"
            " archived boolean NOT NULL DEFAULT false, is_default boolean NOT NULL DEFAULT false,"
            " version integer NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)",
            "CREATE UNIQUE INDEX ON {s}.racer_profiles (account_id) WHERE is_default",
            "CREATE INDEX ON {s}.racer_profiles (account_id, created_at, id)",
        )
    ]


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "details": row["details"],
        "is_default": row["is_default"],
        "archived": row["archived"],
        "vehicles": [
            {
                "id": v["id"],
                "name": v["name"],
                "vehicle_class": v.get("vehicle_class"),
                "race_number": v.get("race_number"),
            }
            for v in row["vehicles"]
        ],
        "vehicle_count": row["vehicle_count"],
        "version": row["version"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def problem(status: int, detail: str) -> HTTPException:
    return HTTPException(status, detail)


class Store:
    """The pool, the statements' table names and the token cache."""

    def __init__(self, conninfo: str, schema: str) -> None:
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo,
            kwargs={"autocommit": True, "row_factory": dict_row},
            min_size=2,
            max_size=POOL_SIZE,
            open=False,
        )

        def name(table: str) -> str:
            return SQL("{}.{}").format(Identifier(schema), Identifier(table)).as_string()

        self.profiles, self.tokens, self.accounts = (
            name("racer_profiles"),
            name("api_tokens"),
            name("accounts"),
        )
        self.cache: dict[str, tuple[float, bytes, str]] = {}


async def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


StoreDep = Annotated[Store, Depends(get_store)]


async def get_account(store: StoreDep, authorization: Annotated[str | None, Header()] = None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    parts = token.strip().split("_", 2)
    if scheme.lower() != "bearer" or len(parts) != 3 or parts[0] != "rp":
        raise problem(401, "invalid token")
    token_id, secret = parts[1], parts[2]
    hit = store.cache.get(token_id)
    if hit is None or hit[0] <= time.monotonic():
        async with store.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT t.secret_hash, a.id FROM {store.tokens} t JOIN {store.accounts} a"
                " ON a.id = t.account_id WHERE t.token_id = %s AND a.role = 'owner'",
                (token_id,),
            )
            row = await cur.fetchone()
        if row is None:
            raise problem(401, "invalid token")
        hit = (time.monotonic() + CACHE_SECONDS, bytes(row["secret_hash"]), str(row["id"]))
        store.cache[token_id] = hit
    if not hmac.compare_digest(hit[1], hashlib.sha256(secret.encode()).digest()):
        raise problem(401, "invalid token")
    return hit[2]


AccountDep = Annotated[str, Depends(get_account)]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await app.state.store.pool.open(wait=True)
    yield
    await app.state.store.pool.close()


app = FastAPI(title="racer-profiles CRUD baseline", lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> ORJSONResponse:
    return ORJSONResponse({"status": "ok"})


@app.get("/v1/profiles/default")
async def get_default(account_id: AccountDep, store: StoreDep) -> ORJSONResponse:
    async with store.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {COLUMNS} FROM {store.profiles} WHERE account_id = %s AND is_default", (account_id,)
        )
        row = await cur.fetchone()
    if row is None:
        raise problem(404, "this account has no active profile")
    return ORJSONResponse(public(row), headers={"ETag": f'"{row["version"]}"'})


@app.get("/v1/profiles")
async def list_profiles(account_id: AccountDep, store: StoreDep, limit: int = 50) -> ORJSONResponse:
    async with store.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {COLUMNS} FROM {store.profiles} WHERE account_id = %s AND NOT archived"
            " ORDER BY created_at, id LIMIT %s",
            (account_id, limit + 1),
        )
        rows = await cur.fetchall()
    # Same page shape as the service; no account here has more than one page.
    return ORJSONResponse({"items": [public(r) for r in rows[:limit]], "next_cursor": None})


@app.put("/v1/profiles/default")
async def set_default(body: DefaultRequest, account_id: AccountDep, store: StoreDep) -> ORJSONResponse:
    t = store.profiles
    async with store.pool.connection() as conn, conn.transaction():
        # The account's row is the lock that serialises its changes of default.
        await conn.execute(f"SELECT 1 FROM {store.accounts} WHERE id = %s FOR UPDATE", (account_id,))
        cur = await conn.execute(
            f"SELECT archived, is_default FROM {t} WHERE id = %s AND account_id = %s",
            (body.profile_id, account_id),
        )
        found = await cur.fetchone()
        if found is None or found["archived"]:
            raise problem(404, f"no active profile {body.profile_id} in this account")
        if not found["is_default"]:
            # Clear first: the unique index on (account_id) WHERE is_default is not deferrable.
            await conn.execute(
                f"UPDATE {t} SET is_default = false, version = version + 1, updated_at = now()"
                " WHERE account_id = %s AND is_default",
                (account_id,),
            )
            await conn.execute(
                f"UPDATE {t} SET is_default = true, version = version + 1, updated_at = now() WHERE id = %s",
                (body.profile_id,),
            )
        cur = await conn.execute(f"SELECT {COLUMNS} FROM {t} WHERE id = %s", (body.profile_id,))
        row = await cur.fetchone()
    return ORJSONResponse(public(row), headers={"ETag": f'"{row["version"]}"'})


@app.post("/v1/profiles", status_code=201)
async def create_profile(body: ProfileCreate, account_id: AccountDep, store: StoreDep) -> ORJSONResponse:
    t = store.profiles
    vehicles = [{"id": str(uuid.uuid4()), **v.model_dump()} for v in body.vehicles]
    async with store.pool.connection() as conn, conn.transaction():
        await conn.execute(f"SELECT 1 FROM {store.accounts} WHERE id = %s FOR UPDATE", (account_id,))
        # The account's first active profile becomes its default.
        cur = await conn.execute(
            f"INSERT INTO {t} (id, account_id, name, details, vehicles, vehicle_count, is_default,"
            " version, created_at, updated_at)"
            f" SELECT %s, %s, %s, %s, %s, %s, NOT EXISTS (SELECT 1 FROM {t}"
            "  WHERE account_id = %s AND is_default), 1, now(), now()"
            f" RETURNING {COLUMNS}",
            (
                uuid.uuid4(),
                account_id,
                body.name,
                Jsonb(body.details),
                Jsonb(vehicles),
                len(vehicles),
                account_id,
            ),
        )
        row = await cur.fetchone()
    return ORJSONResponse(
        public(row),
        status_code=201,
        headers={"ETag": f'"{row["version"]}"', "Location": f"/v1/profiles/{row['id']}"},
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", default="crud")
    args = parser.parse_args()
    app.state.store = Store(args.database_url, args.schema)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
