"""The inline projection (infrastructure/inline_projection.py): a command's rows
and the view's tracking record commit with its events when the read table is
caught up; otherwise, or when its statements fail, the runner applies the
events, each exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from domain.service import Cause
from infrastructure.container import Container, build
from infrastructure.settings import Settings
from tests.support.operations import verify_store

pytestmark = pytest.mark.postgres

CAUSE = Cause("tester", "inline")


@pytest.fixture
def no_runner(settings: Settings) -> Iterator[Container]:
    """Commands and the view, with no runner anywhere: only the inline
    projection can change the read table."""
    built = build(settings)
    yield built
    built.close()


def tracked(container: Container) -> int:
    return container.view.max_tracking_id(container.app.name) or 0


def test_a_command_is_in_the_read_table_when_it_returns_without_a_runner(no_runner: Container) -> None:
    app = no_runner.app
    first = app.create_profile("acct", "Ann", [{"name": "Kart", "race_number": "7"}], CAUSE)
    assert no_runner.view.has_reached(first.position)  # known in-process: no wait, no query
    assert tracked(no_runner) == first.position
    second = app.create_profile("acct", "Bea", [], CAUSE)
    added = app.add_vehicle("acct", second.profile_id, {"name": "Bike"}, CAUSE)
    switched = app.set_default("acct", second.profile_id, CAUSE)
    assert tracked(no_runner) == switched.position
    rows = {r.id: r for r in no_runner.queries.all_rows()}
    assert rows[second.profile_id].is_default and not rows[first.profile_id].is_default
    assert [v["id"] for v in rows[second.profile_id].vehicles] == [added.vehicle_id]
    assert rows[second.profile_id].position == switched.position  # the default change, after the vehicle
    assert [v["name"] for v in rows[first.profile_id].vehicles] == ["Kart"]
    # The rows the last command changed came back with its commit (its answer's body).
    assert no_runner.view.fresh_row(second.profile_id, switched.position) == rows[second.profile_id]
    assert no_runner.view.fresh_row(first.profile_id, switched.position) == rows[first.profile_id]
    assert no_runner.view.fresh_row(second.profile_id, added.position) is None  # an earlier command's
    assert verify_store(no_runner) == []


def test_a_view_behind_the_log_is_left_to_the_runner(settings: Settings, no_runner: Container) -> None:
    # Events stored without the inline projection (another writer): the view lags.
    plain = build(settings.model_copy(update={"inline_projection": False}))
    try:
        elsewhere = plain.app.create_profile("acct", "Ann", [], CAUSE)
    finally:
        plain.close()
    assert tracked(no_runner) < elsewhere.position

    # A command now must not jump the tracking position past those events.
    later = no_runner.app.create_profile("acct", "Bea", [], CAUSE)
    assert tracked(no_runner) < elsewhere.position
    assert no_runner.queries.get("acct", later.profile_id) is None

    runner = no_runner.start_runner()
    no_runner.view.wait(no_runner.app.name, later.position, timeout=10)
    # Counted just after the batch commits.
    deadline = time.monotonic() + 10
    while runner.applied < later.position and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert runner.applied == later.position  # every event so far, by the runner
    assert {r.name for r in no_runner.queries.all_rows()} == {"Ann", "Bea"}
    # Caught up again: the next command is inline and the runner has nothing to apply.
    applied = runner.applied
    third = no_runner.app.create_profile("acct", "Cy", [], CAUSE)
    assert tracked(no_runner) == third.position
    assert no_runner.queries.get("acct", third.profile_id) is not None
    assert runner.applied == applied
    assert verify_store(no_runner) == []


def test_a_read_table_statement_that_fails_leaves_the_events_to_the_runner(
    no_runner: Container, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = no_runner.app
    ann = app.create_profile("acct", "Ann", [], CAUSE)
    bea = app.create_profile("acct", "Bea", [], CAUSE)
    # Break the read table: a row the projection does not know of holds the
    # account's default, so setting Bea as default violates the one-default index.
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("UPDATE racer_profiles SET is_default = false WHERE id = %s", (ann.profile_id,))
        conn.execute(
            "INSERT INTO racer_profiles (id, account_id, name, version, created_at, updated_at, position,"
            " is_default) SELECT gen_random_uuid(), account_id, 'Ghost', 1, now(), now(), 0, true"
            " FROM racer_profiles WHERE id = %s",
            (ann.profile_id,),
        )
    before = tracked(no_runner)

    switched = app.set_default("acct", bea.profile_id, CAUSE)  # the command itself succeeds

    assert "inline projection failed" in caplog.text
    assert app.get_roster("acct").default == str(bea.profile_id)  # type: ignore[union-attr]
    assert switched.position > before
    assert tracked(no_runner) == before  # no row and no tracking for it
    assert not no_runner.view.has_reached(switched.position)


def test_commands_and_a_runner_together_apply_every_event_once(container: Container) -> None:
    """Inline writers and the runner race for the same positions (the runner
    wakes on every commit): vehicles appended by each command appear once."""
    app = container.app
    profiles = [app.create_profile(f"acct-{i}", f"P{i}", [], CAUSE).profile_id for i in range(4)]
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            for n in range(15):
                app.add_vehicle(f"acct-{i}", profiles[i], {"name": f"V{n}"}, CAUSE)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    head = app.recorder.max_notification_id()
    container.view.wait(app.name, head, timeout=10)
    rows: dict[Any, Any] = {r.id: r for r in container.queries.all_rows()}
    for pid in profiles:
        assert rows[pid].vehicle_count == 15
        assert [v["name"] for v in rows[pid].vehicles] == [f"V{n}" for n in range(15)]
    assert verify_store(container) == []


def test_events_and_snapshots_stored_by_the_binary_insert_read_back_intact(no_runner: Container) -> None:
    """The recorders insert events as four binary arrays (infrastructure/recorder.py):
    what the library reads back, events and snapshots, is what was saved."""
    app = no_runner.app
    created = app.create_profile("acct", "Ann", [], CAUSE)
    for n in range(50):  # a snapshot is taken at version 100 (at most 50 vehicles)
        added = app.add_vehicle("acct", created.profile_id, {"name": f"V{n}", "race_number": str(n)}, CAUSE)
        app.remove_vehicle("acct", created.profile_id, str(added.vehicle_id), CAUSE)
    app.add_vehicle("acct", created.profile_id, {"name": "Kept"}, CAUSE)
    snapshots = list(app.snapshots.get(created.profile_id))  # type: ignore[union-attr]
    assert [s.originator_version for s in snapshots] == [100]
    app.repository.cache = None  # type: ignore[assignment]  # load from the store, not memory
    profile = app.get_profile(created.profile_id)
    assert profile.version == 102
    assert [v["name"] for v in profile.vehicles] == ["Kept"]
    stored = app.recorder.select_events(created.profile_id)
    assert [e.originator_version for e in stored] == list(range(1, 103))
    assert verify_store(no_runner) == []
