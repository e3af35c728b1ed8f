"""Group commit (infrastructure/group_commit.py, ProfilesService.run_together)
on PostgreSQL: commands of different accounts commit in one transaction, and
each command's outcome, events, keys and read-table rows are what it would
have had alone."""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from domain.errors import ConcurrencyConflict
from domain.profile import RacerProfile
from domain.roster import roster_id
from domain.service import Cause, Command, Outcome
from infrastructure.container import Container
from infrastructure.encrypted_app import SEALED_BY
from tests.support.operations import verify_store

pytestmark = pytest.mark.postgres


def _stored_state(container: Container, aggregate_id: UUID, version: int) -> dict[str, Any]:
    (stored,) = container.app.recorder.select_events(aggregate_id, gt=version - 1, lte=version)
    state: dict[str, Any] = container.app.mapper.transcoder.decode(stored.state)
    return state


def _transactions(container: Container, positions: list[int]) -> set[int]:
    """The transactions that stored the events at these positions."""
    events = container.app.recorder.events_table_name  # type: ignore[attr-defined]
    with psycopg.connect(container.settings.database_url) as conn:
        rows = conn.execute(
            f"SELECT DISTINCT xmin::text FROM {events} WHERE notification_id = ANY(%s)", (positions,)
        ).fetchall()
    return {int(r[0]) for r in rows}


def test_concurrent_commands_of_many_accounts_commit_in_groups_and_verify(container: Container) -> None:
    groups: list[int] = []
    run_together = container.app.run_together

    def counted(commands: Any) -> Any:
        groups.append(len(commands))
        return run_together(commands)

    container.app.run_together = counted  # type: ignore[method-assign]
    accounts = [str(uuid4()) for _ in range(12)]
    made: dict[str, list[UUID]] = {a: [] for a in accounts}
    errors: list[BaseException] = []
    start = threading.Barrier(len(accounts))

    def work(account: str) -> None:
        try:
            start.wait()
            for n in range(4):
                outcome = container.app.create_profile(account, f"R{n}", [{"name": "Kart"}], Cause(account))
                made[account].append(outcome.profile_id)
            # Every switch is a real one: back to the first, then to the last.
            container.app.set_default(account, made[account][-1], Cause(account, "last"))
            container.app.set_default(account, made[account][0], Cause(account))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(a,)) for a in accounts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert max(groups) > 1, groups  # commands did share transactions
    assert sum(groups) == len(accounts) * 6
    for account in accounts:
        roster = container.app.get_roster(account)
        assert roster is not None and roster.default == str(made[account][0])
        rows = container.queries.page(account, include_archived=False, after=None, limit=10)
        assert sorted(r.id for r in rows) == sorted(made[account])
        assert [r.id for r in rows if r.is_default] == [made[account][0]]
    assert verify_store(container) == []


def test_a_group_is_one_transaction_and_each_outcome_is_its_own(container: Container) -> None:
    a, b = str(uuid4()), str(uuid4())
    first_b = container.app.create_profile(b, "B1", [], Cause(b)).profile_id
    second_b = container.app.create_profile(b, "B2", [], Cause(b)).profile_id
    new_a = uuid4()
    app = container.app
    cause_a, cause_b = Cause(a, "joined").stamped(), Cause(b, "switched").stamped()

    def create_a() -> tuple[Any, ...]:
        profile = RacerProfile.start(new_a, a, "A1", [], *cause_a.args()[:2], {}, cause_a.request_id, None)
        roster = app._roster(a, cause_a)
        roster.join(new_a, profile.created_at.isoformat(), *cause_a.args())
        return profile, roster

    def switch_b() -> tuple[Any, ...]:
        roster = app._roster(b, cause_b)
        roster.set_default(second_b, *cause_b.args())
        return (roster,)

    out_a, out_b = app.run_together(
        [Command(a, new_a, create_a, cause_a), Command(b, second_b, switch_b, cause_b)]
    )
    assert isinstance(out_a, Outcome) and isinstance(out_b, Outcome)
    assert out_b.position > out_a.position
    assert len(_transactions(container, [out_a.position, out_b.position])) == 1
    # Each command's rows came back with the commit, for its answer.
    assert container.view.fresh_row(new_a, out_a.position) is not None
    row_b = container.view.fresh_row(second_b, out_b.position)
    assert row_b is not None and row_b.is_default
    assert first_b != second_b

    # B's roster event (its reason sealed) is sealed under B's profile's key, as
    # alone; not under A's new profile, whose events came first in the save.
    roster_b = app.get_roster(b)
    assert roster_b is not None
    state_b = _stored_state(container, roster_id(b), roster_b.version)
    assert state_b[SEALED_BY] == str(second_b)
    roster_a = app.get_roster(a)
    assert roster_a is not None
    assert _stored_state(container, roster_id(a), roster_a.version)[SEALED_BY] == str(new_a)
    assert verify_store(container) == []


def test_a_command_whose_events_fail_the_group_fails_alone(container: Container) -> None:
    """One command's events collide (a profile id that exists): the group rolls
    back, each command runs alone, and only that one fails."""
    a, b = str(uuid4()), str(uuid4())
    taken = container.app.create_profile(a, "A1", [], Cause(a)).profile_id
    container.app.max_attempts = 2
    app = container.app
    cause_a = Cause(a).stamped()

    def collide() -> tuple[Any, ...]:
        return (RacerProfile.start(taken, a, "Again", [], a, None, {}, cause_a.request_id, None),)

    new_b = uuid4()
    cause_b = Cause(b).stamped()

    def create_b() -> tuple[Any, ...]:
        profile = RacerProfile.start(new_b, b, "B1", [], b, None, {}, cause_b.request_id, None)
        roster = app._roster(b, cause_b)
        roster.join(new_b, profile.created_at.isoformat(), *cause_b.args())
        return profile, roster

    head = app.recorder.max_notification_id()
    bad, good = app.run_together([Command(a, taken, collide, cause_a), Command(b, new_b, create_b, cause_b)])
    assert isinstance(bad, ConcurrencyConflict)
    assert isinstance(good, Outcome) and good.position > (head or 0)
    assert app.get_profile(new_b).name == "B1"
    assert app.get_profile(taken).name == "A1"
    container.view.wait(app.name, good.position, timeout=10)
    assert [r.id for r in container.queries.page(b, include_archived=False, after=None, limit=10)] == [new_b]
    assert verify_store(container) == []


def test_the_groups_roster_read_is_an_index_scan_on_a_table_never_analysed(container: Container) -> None:
    """As a plain join, a table without statistics (new or fast-growing) was
    read whole for every group: 127 commands/s instead of 337 on one shared
    account, and 9.7 ms instead of 2.3 per sequential switch (benchmarks)."""
    for n in range(1000):
        container.app.create_profile("busy", f"R{n}", [], Cause("busy"))
    recorder: Any = container.app.recorder
    statement = recorder._select_after_text.replace("%b", "$X").replace("$X", "$1", 1).replace("$X", "$2", 1)
    ids = f"ARRAY['{roster_id('busy')}', '{roster_id('other')}']::uuid[]"
    with psycopg.connect(container.settings.database_url) as conn:
        # The plan a prepared statement settles on, without the values.
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE after_versions AS {statement}")
        plan = "\n".join(
            row[0] for row in conn.execute(f"EXPLAIN EXECUTE after_versions({ids}, ARRAY[900, 0])").fetchall()
        )
    assert "Index" in plan and "Seq Scan" not in plan, plan
