"""The composition root: builds every part from one Settings object.

Nothing is built at import time; callers own the container and close it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from eventsourcing.postgres import PostgresDatastore

from domain.service import ProfilesService
from infrastructure.accounts import Accounts
from infrastructure.audit import Audit
from infrastructure.embedded import start_embedded
from infrastructure.idempotency import IdempotencyStore
from infrastructure.profile_queries import ProfileQueries
from infrastructure.profiles_view import PostgresProfilesView
from infrastructure.runner import ProjectionRunner
from infrastructure.settings import Settings

log = logging.getLogger(__name__)


def resolve_database(settings: Settings) -> Settings:
    """Settings with a database URL: the given one, or the embedded server's."""
    if settings.database_url:
        return settings
    return settings.with_database(start_embedded(settings.embedded_data_dir))


def read_datastore(settings: Settings) -> PostgresDatastore:
    info = settings.conninfo()
    return PostgresDatastore(
        dbname=str(info.get("dbname", "postgres")),
        host=str(info.get("host", "127.0.0.1")),
        port=str(info.get("port", "5432")),
        user=str(info.get("user", "postgres")),
        password=str(info.get("password", "")),
        connect_timeout=settings.db_connect_timeout,
        idle_in_transaction_session_timeout=10,
        pool_size=settings.pool_size,
        pre_ping=True,
        lock_timeout=settings.db_lock_timeout,
    )


@dataclass
class Container:
    settings: Settings
    app: ProfilesService
    datastore: PostgresDatastore
    view: PostgresProfilesView
    queries: ProfileQueries
    accounts: Accounts
    audit: Audit
    idempotency: IdempotencyStore
    runner: ProjectionRunner | None = None
    _closed: bool = field(default=False, repr=False)

    def start_runner(self) -> ProjectionRunner:
        if self.runner is None:
            self.runner = ProjectionRunner(self.app, self.view, self.settings.conninfo()).start()
        return self.runner

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.runner is not None:
            self.runner.stop()
        self.app.close()
        self.datastore.close()


def build(settings: Settings) -> Container:
    """settings must name a database (see resolve_database)."""
    app = ProfilesService(settings.library_env(), max_attempts=settings.command_max_attempts)
    datastore = read_datastore(settings)
    view = PostgresProfilesView(datastore)
    accounts = Accounts(datastore)
    idempotency = IdempotencyStore(datastore, settings.idempotency_ttl_seconds)
    if settings.create_tables:
        view.create_table()
        accounts.create_tables()
        idempotency.create_table()
    return Container(
        settings=settings,
        app=app,
        datastore=datastore,
        view=view,
        queries=ProfileQueries(datastore),
        accounts=accounts,
        audit=Audit(app),
        idempotency=idempotency,
    )
