"""The eventsourcing library's own test cases (they ship in the package, under
eventsourcing/tests/) run against this project's classes: the recorders and
factory (infrastructure/recorder.py), the view as a tracking recorder
(infrastructure/profiles_view.py), the library's example application on this
project's factory. They keep the library's promises about ordering,
concurrency, tracking, waiting and snapshots true of the subclasses.

Cases that cannot apply by design are not run; each is named below with its
reason (set to None, so that unittest does not collect it, rather than skipped):
- test_performance (every recorder case) and test_concurrent_throughput: they
  time inserts and print figures, asserting nothing about behaviour; speed is
  measured by benchmarks/, not by tests.
- ProcessRecorderTestCase: the project has no process recorder (its
  projection writes through the view, a tracking recorder)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any
from unittest import TestCase
from uuid import uuid4

import pytest
from eventsourcing.persistence import AggregateRecorder, ApplicationRecorder, TrackingRecorder
from eventsourcing.postgres import PostgresProcessRecorder, PostgresTrackingRecorder
from eventsourcing.tests import application as library_application
from eventsourcing.tests.persistence import (
    AggregateRecorderTestCase,
    ApplicationRecorderTestCase,
    InfrastructureFactoryTestCase,
    NonInterleavingNotificationIDsBaseCase,
    TrackingRecorderTestCase,
)
from eventsourcing.utils import Environment, get_topic

from infrastructure.profiles_view import PostgresProfilesView
from infrastructure.recorder import ProfilesFactory, ProfilesRecorder, SnapshotsRecorder
from infrastructure.settings import Settings

pytestmark = pytest.mark.postgres

APP = "LibraryCase"
NOT_APPLICABLE = None  # see the module docstring for each case set to this


def environ_restorer() -> Callable[[], None]:
    saved = dict(os.environ)

    def restore() -> None:
        os.environ.clear()
        os.environ.update(saved)

    return restore


class OnItsOwnDatabase(TestCase):
    """Each test on a database of its own (tests/conftest.py), configured by
    Settings as the service is."""

    factory: ProfilesFactory

    @pytest.fixture(autouse=True)
    def _database(self, database_url: str) -> Iterator[None]:
        self.settings = Settings(database_url=database_url, api_threads=4)
        self.closers: list[Any] = []
        yield
        for close in self.closers:
            close()

    def project_factory(self) -> ProfilesFactory:
        factory = ProfilesFactory(Environment(APP, self.settings.library_env()))
        self.closers.append(factory.close)
        return factory


class TestProfilesRecorder(OnItsOwnDatabase, ApplicationRecorderTestCase[ProfilesRecorder]):
    def create_recorder(self) -> ProfilesRecorder:
        recorder = self.project_factory().application_recorder()
        assert isinstance(recorder, ProfilesRecorder)
        return recorder

    test_performance = NOT_APPLICABLE  # type: ignore[assignment]
    test_concurrent_throughput = NOT_APPLICABLE  # type: ignore[assignment]


class TestProfilesRecorderDoesNotInterleave(OnItsOwnDatabase, NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> ApplicationRecorder:
        return self.project_factory().application_recorder()


class TestSnapshotsRecorder(OnItsOwnDatabase, AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        recorder = self.project_factory().aggregate_recorder("snapshots")
        assert isinstance(recorder, SnapshotsRecorder)
        return recorder

    test_performance = NOT_APPLICABLE  # type: ignore[assignment]


class TestProfilesViewAsTrackingRecorder(OnItsOwnDatabase, TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        factory = self.project_factory()
        view = PostgresProfilesView(factory.datastore, application_name="upstream1")
        view.create_table()
        return view


class SomeTrackingRecorder(PostgresTrackingRecorder):
    """A subclass named by topic (the library's factory case needs one)."""


class TestProfilesFactory(OnItsOwnDatabase, InfrastructureFactoryTestCase[ProfilesFactory]):
    def setUp(self) -> None:
        self.env = Environment(APP, self.settings.library_env())
        super().setUp()

    def expected_factory_class(self) -> type[ProfilesFactory]:
        return ProfilesFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return SnapshotsRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return ProfilesRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        # The view is built by the composition root (it needs its application
        # name and read datastore), never by the factory.
        return PostgresTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return SomeTrackingRecorder

    def expected_process_recorder_class(self) -> type[PostgresProcessRecorder]:
        return PostgresProcessRecorder


class TestExampleApplicationOnProfilesFactory(
    OnItsOwnDatabase, library_application.ExampleApplicationTestCase
):
    """The library's bank-accounts application (snapshots, cache, notification
    log) on this project's factory and recorders. The example application is
    the library's: it reads its configuration from os.environ, so the test
    sets the Settings-derived variables there for its duration."""

    expected_factory_topic = get_topic(ProfilesFactory)

    def setUp(self) -> None:
        self.closers.append(environ_restorer())
        os.environ.update(self.settings.library_env())
        super().setUp()


def test_the_library_cases_are_collected_with_the_project_classes() -> None:
    """Guards against a case class silently collecting nothing (a renamed base)."""
    for case in (TestProfilesRecorder, TestSnapshotsRecorder, TestProfilesViewAsTrackingRecorder):
        names = [n for n in dir(case) if n.startswith("test") and callable(getattr(case, n))]
        assert names, case
    assert uuid4()


class TestApplicationOnProfilesFactory(OnItsOwnDatabase, library_application.ApplicationTestCase):
    """The library's application cases (names, save, cache, fast-forward,
    snapshots, the log) on this project's factory, configured through
    os.environ as the library's own PostgreSQL runs of them are."""

    def setUp(self) -> None:
        self.closers.append(environ_restorer())
        os.environ.update(self.settings.library_env())
        super().setUp()
