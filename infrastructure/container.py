"""The composition root: builds every part from one Settings object.

Nothing is built at import time; callers own the container and close it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore

from infrastructure.accounts import Accounts
from infrastructure.audit import Audit
from infrastructure.change_feed import ChangeFeed
from infrastructure.dead_connections import CheckedDatastore
from infrastructure.embedded import start_embedded
from infrastructure.encrypted_app import EncryptedProfilesService
from infrastructure.group_commit import GroupCommit
from infrastructure.idempotency import IdempotencyStore
from infrastructure.inline_projection import InlineProjection
from infrastructure.keys import KeyRing, PostgresKeyStore
from infrastructure.profile_queries import ProfileQueries
from infrastructure.profiles_view import PostgresProfilesView
from infrastructure.projection_status import ProjectionStatus
from infrastructure.read_your_writes import ReadYourWrites
from infrastructure.runner import ProjectionRunner
from infrastructure.settings import POOL_MIN, SCHEMA, Settings

log = logging.getLogger(__name__)

SCHEMA_LOCK_KEY = 7_261_504_114  # arbitrary, fixed; the runner's leader lock is ...113


def resolve_database(settings: Settings) -> Settings:
    """Settings with a database URL: the given one, or the embedded server's."""
    if settings.database_url:
        return settings
    return settings.with_database(start_embedded(settings.embedded_data_path).url)


def read_datastore(settings: Settings, info: dict[str, Any] | None = None) -> PostgresDatastore:
    """A pool on the primary (info None) or on the server info names (a replica)."""
    info = info or settings.conninfo()
    return CheckedDatastore(
        dbname=str(info.get("dbname", "postgres")),
        host=str(info.get("host", "127.0.0.1")),
        port=str(info.get("port", "5432")),
        user=str(info.get("user", "postgres")),
        password=str(info.get("password", "")),
        connect_timeout=settings.db_connect_timeout,
        idle_in_transaction_session_timeout=10,
        pool_size=POOL_MIN,
        max_overflow=settings.pool_size - POOL_MIN,
        pre_ping=False,
        lock_timeout=settings.db_lock_timeout,
        schema=SCHEMA,
    )


@dataclass
class Container:
    settings: Settings
    app: EncryptedProfilesService
    datastore: PostgresDatastore
    keys: KeyRing
    keys_datastore: PostgresDatastore
    reader: PostgresDatastore
    view: PostgresProfilesView
    queries: ProfileQueries
    accounts: Accounts
    audit: Audit
    idempotency: IdempotencyStore
    projection_status: ProjectionStatus
    # Live profile changes for the streams; started by the HTTP app's lifespan.
    feed: ChangeFeed
    # What answers read after a write or before a query (api/responses.py).
    reads: ReadYourWrites
    runner: ProjectionRunner | None = None
    group_commit: GroupCommit | None = None
    _closed: bool = field(default=False, repr=False)

    def open_pools(self, timeout: float = 30.0) -> None:
        """Opens both pools and waits for their connections, so that the first
        requests do not pay for connecting (pools otherwise open lazily)."""
        for pool in {self.app.recorder.datastore.pool, self.datastore.pool, self.reader.pool}:  # type: ignore[attr-defined]
            pool.open(wait=True, timeout=timeout)

    def start_runner(self) -> ProjectionRunner:
        if self.runner is None:
            runner = ProjectionRunner(self.app, self.view, self.settings.conninfo())
            runner.on_stop = self.projection_status.record_stop
            self.runner = runner.start()
        return self.runner

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.feed.stop()
        if self.runner is not None:
            self.runner.stop()
        if self.group_commit is not None:
            self.group_commit.close()
            self.app.committer = None
        self.app.close()
        self.datastore.close()
        if self.keys_datastore is not self.datastore:
            self.keys_datastore.close()
        if self.reader is not self.datastore:
            self.reader.close()


@contextmanager
def schema_lock(settings: Settings) -> Iterator[None]:
    """Serialises table creation across processes: concurrent CREATE OR REPLACE
    FUNCTION statements (the library's) fail with "tuple concurrently updated"."""
    if not settings.create_tables:
        yield
        return
    with psycopg.connect(**settings.conninfo(), autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        yield  # the lock ends with the session


def build(settings: Settings) -> Container:
    """settings must name a database (see resolve_database)."""
    with schema_lock(settings):
        datastore = read_datastore(settings)
        keys_datastore = (
            read_datastore(settings, settings.keys_conninfo()) if settings.keys_database_url else datastore
        )
        key_store = PostgresKeyStore(keys_datastore)
        keys = KeyRing(
            key_store,
            settings.key_cache_size,
            settings.key_cache_seconds,
            # In the event store's database, a new profile's key commits with its events.
            with_events=None if settings.keys_database_url else key_store,
        )
        idempotency = IdempotencyStore(datastore, settings.idempotency_ttl_seconds, keys)
        app = EncryptedProfilesService(
            settings.library_env(),
            keys=keys,
            also_forget=(idempotency.forget_profile,),
            max_attempts=settings.command_max_attempts,
        )
        # Queries (and the waits before them) go to the replica when there is one.
        reader = (
            read_datastore(settings, settings.read_conninfo()) if settings.read_database_url else datastore
        )
        view = PostgresProfilesView(datastore, application_name=app.name, reader=reader)
        queries = ProfileQueries(reader, app.recorder.events_table_name)  # type: ignore[attr-defined]
        if settings.inline_projection:
            app.recorder.inline = InlineProjection(  # type: ignore[attr-defined]
                view,
                app.name,
                app.recorder.events_table_name,  # type: ignore[attr-defined]
                queries.statements,
            )
        accounts = Accounts(datastore, revocations_heard=view.feed_listening)
        projection_status = ProjectionStatus(datastore)
        if settings.create_tables:
            projection_status.create_tables()
            view.create_table()
            accounts.create_tables()
            idempotency.create_table()
            key_store.create_table()
    feed = ChangeFeed(
        settings.conninfo(), datastore, on_position=view.reached_position, listening=view.feed_listening
    )
    feed.on_token_revoked = lambda token_id: _token_revoked(accounts, feed, token_id)
    group_commit = GroupCommit(app) if settings.group_commit else None
    app.committer = group_commit
    return Container(
        group_commit=group_commit,
        settings=settings,
        app=app,
        datastore=datastore,
        keys=keys,
        keys_datastore=keys_datastore,
        view=view,
        queries=queries,
        reader=reader,
        accounts=accounts,
        audit=Audit(app, reader),
        idempotency=idempotency,
        projection_status=projection_status,
        feed=feed,
        reads=ReadYourWrites(
            view,
            queries,
            app.name,
            settings.wait_timeout,
            # With a replica, only the primary's head can say a position was never written.
            (lambda: app.recorder.max_notification_id() or 0) if settings.read_database_url else None,
        ),
    )


def _token_revoked(accounts: Accounts, feed: ChangeFeed, token_id: str | None) -> None:
    """Heard on the change feed's connection: forget the token (the feed ends its
    streams). None: the feed reconnected, so any token may have been revoked meanwhile."""
    if token_id is not None:
        accounts.forget(token_id)
        return
    accounts.forget_all()
    for revoked in accounts.revoked_among(feed.token_ids()):
        feed.end_token_streams(revoked)
