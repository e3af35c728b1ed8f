"""The racer_profiles projection on PostgreSQL: exactly-once application, every
command reflected in the read table, rebuild, verify, runner failover and a
poison event."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import Tracking

import infrastructure.inline_projection as inline_module
import infrastructure.runner as runner_module
from domain.profile import RacerProfile
from domain.service import Cause, Outcome
from infrastructure.container import Container, build
from infrastructure.profiles_view import AlreadyApplied
from infrastructure.settings import Settings
from projections.profiles import changes_for
from projections.rows import ProfileRow
from tests.support.operations import rebuild_read_table, verify_store

pytestmark = pytest.mark.postgres

CAUSE = Cause("tester", "integration")
ACC = "acct-a"


# --- helpers -------------------------------------------------------------------------


def settle(container: Container, outcome: Outcome | int) -> None:
    """Waits until the read table has applied the outcome's position."""
    position = outcome if isinstance(outcome, int) else outcome.position
    container.view.wait(container.app.name, position, timeout=10)


def row_of(container: Container, pid: UUID, account: str = ACC) -> ProfileRow:
    row = container.queries.get(account, pid)
    assert row is not None, f"no row for profile {pid}"
    return row


def defaults_of(container: Container, account: str = ACC) -> list[UUID]:
    return [r.id for r in container.queries.all_rows() if r.account_id == account and r.is_default]


def head(container: Container) -> int:
    return container.app.recorder.max_notification_id() or 0


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Polls a condition in short Event waits; fails after timeout."""
    tick = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        tick.wait(0.01)
    assert condition(), "condition not reached in time"


def mixed_scenario(container: Container, accounts: list[str]) -> int:
    """Every command type over several accounts; returns the last position."""
    app = container.app
    last = 0
    for n, acc in enumerate(accounts):
        a = app.create_profile(acc, f"A{n}", [{"name": "Kart", "race_number": "7"}], CAUSE)
        b = app.create_profile(acc, f"B{n}", [], CAUSE)
        c = app.create_profile(acc, f"C{n}", [{"name": "GT", "vehicle_class": "GT3"}, {"name": "F4"}], CAUSE)
        app.rename(acc, a.profile_id, f"A{n}-renamed", CAUSE)
        added = app.add_vehicle(acc, b.profile_id, {"name": "Bike", "vehicle_class": "MX"}, CAUSE)
        app.change_vehicle(acc, b.profile_id, str(added.vehicle_id), {"race_number": "99"}, CAUSE)
        first_of_c = app.get_profile(c.profile_id).vehicles[0]["id"]
        app.remove_vehicle(acc, c.profile_id, first_of_c, CAUSE)
        app.set_default(acc, c.profile_id, CAUSE)
        app.archive(acc, c.profile_id, CAUSE, successor_id=b.profile_id)
        if n % 2:
            app.archive(acc, b.profile_id, CAUSE)  # default without successor: A takes over
            app.archive(acc, a.profile_id, CAUSE)  # the last one: no default
        last = app.restore(acc, c.profile_id, CAUSE).position
    return last


# --- exactly once --------------------------------------------------------------------


def test_reapplying_an_applied_position_raises_already_applied_and_changes_nothing(
    container: Container,
) -> None:
    app = container.app
    created = app.create_profile(ACC, "Alex", [{"name": "Kart"}], CAUSE)
    added = app.add_vehicle(ACC, created.profile_id, {"name": "Bike"}, CAUSE)
    settle(container, added)
    before = container.queries.all_rows()

    # Re-apply both the latest position (whose AddVehicle is not idempotent:
    # applied twice it would append the vehicle twice) and an earlier one.
    for notification in app.recorder.select_notifications(1, 10):
        changes = changes_for(app.mapper.to_domain_event(notification))
        with pytest.raises(AlreadyApplied):
            container.view.apply(changes, Tracking(app.name, notification.id))

    assert container.queries.all_rows() == before
    assert container.view.position(app.name) == added.position
    assert row_of(container, created.profile_id).vehicle_count == 2


# --- every command reflected -----------------------------------------------------------


def test_create_projects_name_vehicles_and_the_first_profile_as_default(container: Container) -> None:
    app = container.app
    vehicles: list[dict[str, Any]] = [
        {"name": " Kart ", "vehicle_class": "KZ2", "race_number": "42"},
        {"name": "Bike"},
    ]
    first = app.create_profile(ACC, "  Alex  ", vehicles, CAUSE)
    second = app.create_profile(ACC, "Bea", [], CAUSE)
    settle(container, second)

    row = row_of(container, first.profile_id)
    stored = app.get_profile(first.profile_id)
    assert (row.account_id, row.name, row.archived, row.is_default, row.version) == (
        ACC,
        "Alex",
        False,
        True,
        1,
    )
    assert [(v["name"], v["vehicle_class"], v["race_number"]) for v in row.vehicles] == [
        ("Kart", "KZ2", "42"),
        ("Bike", None, None),
    ]
    assert row.vehicles == stored.vehicles  # ids too, in order
    assert row.vehicle_count == 2
    assert row.created_at == row.updated_at == stored.created_at
    # The first profile's last touching event is the roster's DefaultChanged.
    assert row.position == first.position

    other = row_of(container, second.profile_id)
    assert (other.name, other.vehicles, other.vehicle_count, other.is_default) == ("Bea", [], 0, False)
    # Not the default: its last touching event is its own Created, before the roster's.
    assert other.position < second.position
    assert defaults_of(container) == [first.profile_id]


def test_rename_and_vehicle_commands_update_the_row_in_order(container: Container) -> None:
    app = container.app
    pid = app.create_profile(ACC, "Alex", [{"name": "Kart"}, {"name": "Bike"}], CAUSE).profile_id
    kart, bike = (v["id"] for v in app.get_profile(pid).vehicles)

    renamed = app.rename(ACC, pid, "Alexandra", CAUSE)
    settle(container, renamed)
    row = row_of(container, pid)
    assert (row.name, row.version, row.position) == ("Alexandra", 2, renamed.position)

    added = app.add_vehicle(ACC, pid, {"name": "Truck", "vehicle_class": "T1", "race_number": "8"}, CAUSE)
    settle(container, added)
    row = row_of(container, pid)
    assert [v["id"] for v in row.vehicles] == [kart, bike, added.vehicle_id]
    assert row.vehicles[-1] == {
        "id": added.vehicle_id,
        "name": "Truck",
        "vehicle_class": "T1",
        "race_number": "8",
    }
    assert (row.vehicle_count, row.version, row.position) == (3, 3, added.position)

    changed = app.change_vehicle(ACC, pid, bike, {"race_number": "77", "vehicle_class": "MX"}, CAUSE)
    settle(container, changed)
    row = row_of(container, pid)
    assert [v["id"] for v in row.vehicles] == [kart, bike, added.vehicle_id]  # order kept
    assert row.vehicles[1] == {"id": bike, "name": "Bike", "vehicle_class": "MX", "race_number": "77"}
    assert row.vehicles[0] == {"id": kart, "name": "Kart", "vehicle_class": None, "race_number": None}
    assert (row.vehicle_count, row.version, row.position) == (3, 4, changed.position)

    removed = app.remove_vehicle(ACC, pid, kart, CAUSE)
    settle(container, removed)
    row = row_of(container, pid)
    assert [v["id"] for v in row.vehicles] == [bike, added.vehicle_id]
    assert (row.vehicle_count, row.version, row.position) == (2, 5, removed.position)
    stored = app.get_profile(pid)
    assert row.vehicles == stored.vehicles
    assert row.updated_at == stored.modified_on
    assert verify_store(container) == []


def test_the_default_moves_with_set_default_archive_and_restore(container: Container) -> None:
    app = container.app

    def create(name: str) -> UUID:
        return app.create_profile(ACC, name, [], CAUSE).profile_id

    p1, p2, p3, p4 = create("P1"), create("P2"), create("P3"), create("P4")

    def expect_default(outcome: Outcome, default: UUID | None) -> None:
        settle(container, outcome)
        assert defaults_of(container) == ([default] if default else [])
        roster = app.get_roster(ACC)
        assert roster is not None
        assert roster.default == (str(default) if default else None)

    # set_default: the old and the new default are both touched by the event.
    moved = app.set_default(ACC, p2, CAUSE)
    expect_default(moved, p2)
    assert row_of(container, p1).position == row_of(container, p2).position == moved.position
    assert row_of(container, p2).version == 1  # a roster event: the profile's version is unchanged

    # Archiving the default with a successor hands over to the successor.
    handed = app.archive(ACC, p2, CAUSE, successor_id=p4)
    expect_default(handed, p4)
    row = row_of(container, p2)
    assert (row.archived, row.is_default, row.version, row.position) == (True, False, 2, handed.position)

    # Without a successor: the earliest created remaining active profile (P1, not P3).
    fallback = app.archive(ACC, p4, CAUSE)
    expect_default(fallback, p1)
    assert row_of(container, p4).archived

    # Archiving a non-default leaves the default alone.
    app.archive(ACC, p3, CAUSE)
    # Archiving the last active profile leaves the account with no default.
    last = app.archive(ACC, p1, CAUSE)
    expect_default(last, None)
    assert all(r.archived and not r.is_default for r in container.queries.all_rows())

    # Restoring into an empty roster makes the restored profile the default.
    restored = app.restore(ACC, p3, CAUSE)
    expect_default(restored, p3)
    row = row_of(container, p3)
    assert (row.archived, row.is_default, row.version, row.position) == (False, True, 3, restored.position)

    # Restoring another one does not steal the default.
    again = app.restore(ACC, p2, CAUSE)
    expect_default(again, p3)
    assert not row_of(container, p2).archived
    for r in container.queries.all_rows():
        assert r.version == app.get_profile(r.id).version
    assert verify_store(container) == []


# --- rebuild ---------------------------------------------------------------------------


def test_rebuild_reproduces_the_read_table_exactly_and_projection_continues(
    container: Container,
) -> None:
    accounts = [f"acct-{i}" for i in range(4)]
    settle(container, mixed_scenario(container, accounts))
    assert verify_store(container) == []
    before = container.queries.all_rows()
    assert len(before) == 12

    replayed = rebuild_read_table(container)

    assert replayed == head(container)
    settle(container, head(container))
    assert container.queries.all_rows() == before  # every column of every row
    assert verify_store(container) == []

    # The runner keeps projecting onto the swapped-in table.
    app = container.app
    renamed = app.rename("acct-0", before[0].id, "After rebuild", CAUSE)
    created = app.create_profile("acct-new", "Newcomer", [{"name": "Kart"}], CAUSE)
    moved = app.set_default("acct-0", before[0].id, CAUSE)
    settle(container, moved)
    assert row_of(container, before[0].id, "acct-0").name == "After rebuild"
    assert row_of(container, before[0].id, "acct-0").is_default
    assert row_of(container, created.profile_id, "acct-new").is_default
    assert renamed.position < created.position < moved.position
    assert verify_store(container) == []


def test_rebuild_while_commands_keep_arriving_loses_no_event(container: Container) -> None:
    app = container.app
    settle(container, mixed_scenario(container, [f"acct-{i}" for i in range(10)]))
    pid = app.create_profile("busy", "Busy", [], CAUSE).profile_id
    writing, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def keep_writing() -> None:
        try:
            for i in range(200):
                app.rename("busy", pid, f"Busy {i}", CAUSE)
                app.create_profile("busy", f"Extra {i}", [], CAUSE)
                writing.set()
                if done.is_set():
                    return
        except BaseException as e:  # reported by the main thread
            errors.append(e)
            writing.set()

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        assert writing.wait(10)
        rebuild_read_table(container)
    finally:
        done.set()
        writer.join(30)
    assert not writer.is_alive()
    assert errors == []
    assert verify_store(container) == []


# --- verify -----------------------------------------------------------------------------


def _tamper(settings: Settings, statement: str, *params: Any) -> None:
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(statement, params)  # type: ignore[arg-type]


def test_verify_reports_rows_changed_or_deleted_behind_the_projection(
    container: Container, settings: Settings
) -> None:
    app = container.app
    p1 = app.create_profile(ACC, "Alex", [], CAUSE).profile_id
    p2 = app.create_profile(ACC, "Bea", [], CAUSE).profile_id
    p3 = app.create_profile(ACC, "Cy", [], CAUSE).profile_id
    settle(container, head(container))
    assert verify_store(container) == []

    _tamper(settings, "UPDATE racer_profiles SET name = 'Mallory' WHERE id = %s", p2)
    problems = verify_store(container)
    assert any(str(p2) in p and "name" in p and "Mallory" in p for p in problems), problems
    assert not any(str(p1) in p for p in problems), problems

    _tamper(settings, "UPDATE racer_profiles SET name = 'Bea' WHERE id = %s", p2)
    assert verify_store(container) == []

    # Move the default by hand: both rows disagree with the roster.
    _tamper(
        settings,
        "UPDATE racer_profiles SET is_default = (id = %s) WHERE account_id = %s",
        p2,
        ACC,
    )
    problems = verify_store(container)
    assert any(str(p1) in p and "is_default" in p for p in problems), problems
    assert any(str(p2) in p and "is_default" in p for p in problems), problems

    # Clear it: the account shows no default at all.
    _tamper(settings, "UPDATE racer_profiles SET is_default = false WHERE account_id = %s", ACC)
    problems = verify_store(container)
    assert any(ACC in p and "0 defaults" in p for p in problems), problems

    _tamper(settings, "UPDATE racer_profiles SET is_default = (id = %s) WHERE account_id = %s", p1, ACC)
    assert verify_store(container) == []

    _tamper(settings, "DELETE FROM racer_profiles WHERE id = %s", p3)
    problems = verify_store(container)
    assert problems == [f"profile {p3}: in the events but missing from the read table"]


# --- runner failover ---------------------------------------------------------------------


def test_a_standby_runner_takes_over_when_the_leader_stops(container: Container, settings: Settings) -> None:
    first_runner = container.start_runner()
    assert first_runner.became_leader.wait(10)
    second = build(settings)
    try:
        standby = second.start_runner()
        wait_for(lambda: standby.status().role == "standby")
        assert not standby.became_leader.is_set()

        # While the first leads, it alone projects.
        pid = container.app.create_profile(ACC, "Alex", [{"name": "Kart"}], CAUSE).profile_id
        settle(container, head(container))
        assert standby.status().role == "standby"

        first_runner.stop()
        assert first_runner.status().role == "stopped"
        assert standby.became_leader.wait(10)
        assert standby.status().role == "leader"

        # Commands through either app are projected, each exactly once.
        a = container.app.add_vehicle(ACC, pid, {"name": "Bike"}, CAUSE)
        b = second.app.add_vehicle(ACC, pid, {"name": "Truck"}, CAUSE)
        c = second.app.create_profile(ACC, "Bea", [], CAUSE)
        d = container.app.set_default(ACC, c.profile_id, CAUSE)
        assert a.position < b.position < c.position < d.position
        settle(second, d)
        settle(container, d)  # the first view sees it too (it polls the database)
        row = row_of(second, pid)
        assert [v["name"] for v in row.vehicles] == ["Kart", "Bike", "Truck"]
        assert (row.vehicle_count, row.version, row.is_default) == (3, 3, False)
        assert row_of(second, c.profile_id).is_default
        assert second.view.position(second.app.name) == d.position
        assert verify_store(second) == []
        assert verify_store(container) == []
    finally:
        second.close()


# --- poison event --------------------------------------------------------------------------


def test_the_runner_stops_at_an_event_it_cannot_apply(
    container: Container, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = container.app
    real_changes_for = runner_module.changes_for

    def poisoned(event: object) -> Any:
        if isinstance(event, RacerProfile.Renamed) and event.name == "Poison":
            raise ValueError("cannot map this event")
        return real_changes_for(event)

    # The runner and the inline projection apply the same function: poisoned for
    # both, the command stores its events without rows and the runner stops at them.
    monkeypatch.setattr(runner_module, "changes_for", poisoned)
    monkeypatch.setattr(inline_module, "changes_for", poisoned)

    created = app.create_profile(ACC, "Alex", [], CAUSE)
    poison = app.rename(ACC, created.profile_id, "Poison", CAUSE)
    later = app.create_profile(ACC, "Bea", [], CAUSE)
    runner = container.runner
    assert runner is not None

    wait_for(lambda: runner.status().role == "failed")
    status = runner.status()
    assert status.failed_position == poison.position
    assert status.error is not None and "cannot map this event" in status.error
    # Consistent up to the event before the poison; nothing after it applied.
    assert container.view.position(app.name) == created.position
    assert row_of(container, created.profile_id).name == "Alex"
    assert container.queries.get(ACC, later.profile_id) is None
    assert later.position > poison.position

    # Once the cause is fixed, a restarted projector resumes at the poison event.
    monkeypatch.setattr(runner_module, "changes_for", real_changes_for)
    monkeypatch.setattr(inline_module, "changes_for", real_changes_for)
    restarted = build(settings)
    try:
        restarted.start_runner()
        settle(restarted, later)
        assert row_of(restarted, created.profile_id).name == "Poison"
        assert verify_store(restarted) == []
    finally:
        restarted.close()
