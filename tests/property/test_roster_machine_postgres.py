"""The roster state machine on PostgreSQL, with the projection running: after
every step the read table rows of the example's accounts match the model and
each account shows exactly one default while it has active profiles."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import ClassVar

import pytest
from hypothesis import settings

from domain.service import ProfilesService
from infrastructure.container import Container
from tests.property.roster_model import ACCOUNT_COUNT, RosterMachine
from tests.support.databases import running_container, temporary_database

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def shared_container(pg_server_url: str) -> Iterator[Container]:
    """One database (and one running projection) for every example of the module."""
    with (
        temporary_database(pg_server_url, "rp_prop") as url,
        running_container(url, api_threads=8) as container,  # the default pool
    ):
        yield container


class PostgresRosterMachine(RosterMachine):
    container: ClassVar[Container | None] = None

    @classmethod
    def shared(cls) -> Container:
        assert cls.container is not None, "the shared_container fixture is not bound"
        return cls.container

    def make_service(self) -> ProfilesService:
        return self.shared().app

    def account_names(self) -> list[str]:
        # Examples share the database: fresh accounts keep them apart.
        prefix = uuid.uuid4().hex[:10]
        return [f"{prefix}-acc-{i}" for i in range(ACCOUNT_COUNT)]

    def teardown(self) -> None:
        """The app outlives the example; the module fixture closes it."""

    def check_extra(self) -> None:
        container = self.shared()
        container.view.wait(container.app.name, self.position, timeout=10)
        rows = {
            row.id: row
            for account in self.accounts
            for row in container.queries.page(account, include_archived=True, after=None, limit=1000)
        }
        # An erased profile leaves the lists; its row is a tombstone without personal data.
        live = {pid: p for pid, p in self.model.profiles.items() if not p.erased}
        assert set(rows) == set(live)
        for pid, expected in self.model.profiles.items():
            if expected.erased:
                tombstone = container.queries.get(expected.account, pid)
                assert tombstone is not None and tombstone.erased_at is not None, pid
                assert (tombstone.name, tombstone.vehicles, tombstone.is_default) == ("", [], False), pid
                assert tombstone.version == expected.version, pid
                continue
            row = rows[pid]
            is_default = self.model.rosters[expected.account].default == pid
            assert (row.account_id, row.name, row.archived, row.is_default, row.vehicle_count) == (
                expected.account,
                expected.name,
                expected.archived,
                is_default,
                len(expected.vehicles),
            ), pid
            assert (row.vehicles, row.version) == (expected.vehicles, expected.version), pid
        for account in self.accounts:
            account_rows = [r for r in rows.values() if r.account_id == account]
            has_active = any(not r.archived for r in account_rows)
            defaults = [r for r in account_rows if r.is_default]
            assert len(defaults) == (1 if has_active else 0), account
            assert all(not r.archived for r in defaults), account


@pytest.fixture(autouse=True)
def _bind_shared_container(shared_container: Container) -> Iterator[None]:
    PostgresRosterMachine.container = shared_container
    yield
    PostgresRosterMachine.container = None


PostgresRosterMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
TestPostgresRoster = PostgresRosterMachine.TestCase
