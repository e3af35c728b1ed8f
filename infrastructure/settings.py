"""One validated settings object; the only place that reads the environment
and the only place that turns settings into the library's variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

POOL_MIN = 2
# Every table lives in this schema: the event store's (the library's), the
# read table, tokens, idempotency keys. Pinned, not configurable: statements
# outside the library name it too.
SCHEMA = "public"


def project_root() -> Path:
    """The checkout this code runs from (where pyproject.toml is: `make run`, an
    editable install); for an installed copy, the user's data directory."""
    here = Path(__file__).resolve().parents[1]
    if (here / "pyproject.toml").is_file():
        return here
    return Path.home() / ".local" / "share" / "racer-profiles"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset: start the embedded server"
    )
    read_database_url: str | None = Field(
        default=None, description="a streaming replica for queries; unset: DATABASE_URL"
    )
    keys_database_url: str | None = Field(
        default=None,
        description="a database of its own for the data keys (erasure); unset: DATABASE_URL",
    )
    key_cache_size: int = Field(
        default=10_000, ge=0, le=1_000_000, description="data keys kept in memory per process"
    )
    key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="how long a process keeps a data key before asking again (another process may erase)",
    )
    embedded_data_dir: Path = Field(
        default=Path(".data/postgres"),
        description="data directory of the embedded server; relative to the project root",
    )
    api_threads: int = Field(default=8, ge=1, le=200, description="request worker threads")
    db_connect_timeout: int = Field(
        default=5, ge=1, le=60, description="seconds to get a pooled connection or connect"
    )
    db_lock_timeout: int = Field(
        default=5, ge=0, le=600, description="seconds a write waits for the event table lock"
    )
    command_max_attempts: int = Field(default=12, ge=1, le=100)
    wait_timeout: float = Field(
        default=5.0, gt=0, le=60, description="seconds a request waits for the read table"
    )
    create_tables: bool = Field(default=True, description="create tables at start-up")
    run_projection: bool = Field(default=True, description="serve starts the projector (a child process)")
    inline_projection: bool = Field(
        default=True,
        description="a command writes its read-table rows in its own transaction when the read table"
        " is caught up (the projector applies the rest)",
    )
    group_commit: bool = Field(
        default=True,
        description="commands of different accounts waiting at the same moment commit in one"
        " transaction (infrastructure/group_commit.py); false: each command in its own",
    )
    aggregate_cache_size: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="aggregates (rosters, profiles) kept in memory per process; 0: none",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="browser origins allowed to call the API (JSON list)"
    )
    idempotency_ttl_seconds: int = Field(
        default=24 * 3600, ge=60, description="how long an Idempotency-Key is remembered"
    )
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=10 * 1024 * 1024)
    # Bulkheads (api/quotas.py): one client cannot take what the others need.
    max_waits_per_token: int = Field(
        default=4, ge=1, le=1000, description="X-Min-Position waits one token may have open at once"
    )
    max_streams_per_token: int = Field(
        default=8, ge=1, le=1000, description="SSE streams one token may have open at once"
    )
    max_streams_per_account: int = Field(
        default=16, ge=1, le=10_000, description="SSE streams one account may have open at once"
    )
    max_streams: int = Field(
        default=200, ge=1, le=100_000, description="SSE streams one API process serves at once"
    )
    stream_page_size: int = Field(
        default=50, ge=1, le=1000, description="profiles per page of a stream's backlog"
    )
    token_last_used_flush_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="how often tokens' `last used` times are written"
    )

    @field_validator("database_url", "read_database_url", "keys_database_url")
    @classmethod
    def _parseable(cls, value: str | None) -> str | None:
        if value:
            conninfo_to_dict(value)  # raises a clear error for a malformed URL
        return value or None

    @property
    def embedded_data_path(self) -> Path:
        """The embedded data directory: one per project, whatever the current directory."""
        path = self.embedded_data_dir.expanduser()
        return path if path.is_absolute() else project_root() / path

    def conninfo(self) -> dict[str, Any]:
        if not self.database_url:
            raise RuntimeError("no database URL: start the embedded server first")
        return conninfo_to_dict(self.database_url)

    def keys_conninfo(self) -> dict[str, Any]:
        return conninfo_to_dict(self.keys_database_url) if self.keys_database_url else self.conninfo()

    def read_conninfo(self) -> dict[str, Any]:
        return conninfo_to_dict(self.read_database_url) if self.read_database_url else self.conninfo()

    @property
    def pool_size(self) -> int:
        """The most connections a pool opens: one per request thread, plus two."""
        return max(self.api_threads + 2, POOL_MIN)

    def library_env(self) -> dict[str, str]:
        """The eventsourcing library's whole environment for the event store
        (ProfilesService.construct_env adds nothing from os.environ)."""
        info = self.conninfo()
        return {
            "PERSISTENCE_MODULE": "infrastructure.recorder:ProfilesFactory",
            "POSTGRES_DBNAME": str(info.get("dbname", "postgres")),
            "POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
            "POSTGRES_PORT": str(info.get("port", "5432")),
            "POSTGRES_USER": str(info.get("user", "postgres")),
            "POSTGRES_PASSWORD": str(info.get("password", "")),
            # Two connections kept open; the pool grows to one per request thread.
            "POSTGRES_POOL_SIZE": str(POOL_MIN),
            "POSTGRES_MAX_OVERFLOW": str(self.pool_size - POOL_MIN),
            "POSTGRES_CONNECT_TIMEOUT": str(self.db_connect_timeout),
            "POSTGRES_LOCK_TIMEOUT": str(self.db_lock_timeout),
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "10",
            # No ping per checkout (a round trip each): a dead connection fails
            # the statement, and it is retried on a fresh one (infrastructure/db_retry.py).
            "POSTGRES_PRE_PING": "n",
            "CREATE_TABLE": "y" if self.create_tables else "n",
            "POSTGRES_SCHEMA": SCHEMA,
            # The library's insert function takes no table lock (notification ids
            # could commit out of order) and skips _insert_events (the idempotency
            # mark, infrastructure/recorder.py): never on.
            "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
            # The library's aggregate cache: a command loads an account's roster
            # from memory and reads only the events stored since (fast-forward,
            # so other processes' writes are seen), instead of replaying up to
            # 99 events after its snapshot. Each get returns a deep copy, so a
            # command that fails half-way leaves the cached roster untouched.
            # Quick benchmark: create-profile on large rosters 272 -> 330 cmd/s.
            # Empty: no cache (the library reads "0" as a cache of size 0).
            "AGGREGATE_CACHE_MAXSIZE": str(self.aggregate_cache_size) if self.aggregate_cache_size else "",
        }

    def with_database(self, url: str) -> Settings:
        return self.model_copy(update={"database_url": url})
