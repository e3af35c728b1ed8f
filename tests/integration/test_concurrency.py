"""Racing writers on real PostgreSQL: the roster's version collision plus the
service's retry keep exactly one active default per account, in the events and
in the read table."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from uuid import UUID

import pytest

from domain.errors import ConcurrencyConflict, IllegalState
from domain.roster import Roster, roster_id
from domain.service import Cause, Outcome, ProfilesService
from infrastructure.container import Container
from infrastructure.settings import Settings
from tests.support.operations import verify_store

pytestmark = pytest.mark.postgres

THREADS = 8
ROUNDS = 4
CAUSE = Cause("racer", "concurrency")

Result = Outcome | Exception


@pytest.fixture
def settings(database_url: str) -> Settings:
    # As deployed: one pooled connection per request thread (plus two).
    return Settings(database_url=database_url, api_threads=THREADS, wait_timeout=10.0)


# --- helpers -------------------------------------------------------------------------


def race(calls: list[Callable[[], Outcome]]) -> list[Result]:
    """Runs the calls on one thread each, released together by a barrier."""
    barrier = threading.Barrier(len(calls))
    results: list[Result | None] = [None] * len(calls)

    def work(i: int) -> None:
        barrier.wait(timeout=10)
        try:
            results[i] = calls[i]()
        except Exception as e:  # inspected by the test
            results[i] = e

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a racing command hung"
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def outcomes(results: list[Result], *allowed: type[Exception]) -> list[Outcome]:
    """The successful outcomes; every failure must be one of the allowed errors."""
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, allowed)]
    assert unexpected == [], unexpected
    return [r for r in results if isinstance(r, Outcome)]


def settle(container: Container, done: list[Outcome]) -> None:
    container.view.wait(container.app.name, max(o.position for o in done), timeout=10)


def read_defaults(container: Container, account: str) -> list[UUID]:
    return [r.id for r in container.queries.all_rows() if r.account_id == account and r.is_default]


def roster_history_problems(container: Container, account: str) -> list[str]:
    """Replays the roster's events: each DefaultChanged continues the previous
    one, names an active member (or None when none is left), and the invariant
    holds after every event not immediately followed by its DefaultChanged."""
    events = list(container.app.events.get(roster_id(account)))
    members: set[str] = set()
    default: str | None = None
    problems = []
    for i, e in enumerate(events):
        if isinstance(e, Roster.MemberAdded):
            members.add(e.profile_id)
        elif isinstance(e, Roster.MemberRemoved):
            members.discard(e.profile_id)
        elif isinstance(e, Roster.DefaultChanged):
            if e.previous != default:
                problems.append(f"v{e.originator_version}: previous {e.previous}, was {default}")
            default = e.new
        next_is_default_change = i + 1 < len(events) and isinstance(events[i + 1], Roster.DefaultChanged)
        if not next_is_default_change and (default in members) != bool(members):
            problems.append(f"v{e.originator_version}: default {default}, members {sorted(members)}")
        if not next_is_default_change and not members and default is not None:
            problems.append(f"v{e.originator_version}: default {default} with no member")
    return problems


def create_account(container: Container, size: int) -> tuple[str, list[UUID]]:
    account = f"acct-{uuid.uuid4().hex[:10]}"
    pids = [container.app.create_profile(account, f"P{i}", [], CAUSE).profile_id for i in range(size)]
    return account, pids


def assert_one_default_everywhere(container: Container, account: str) -> UUID:
    """The roster and the read table agree on a single active default."""
    roster = container.app.get_roster(account)
    assert roster is not None and roster.members
    assert roster.default in roster.members
    assert read_defaults(container, account) == [UUID(roster.default)]
    assert roster_history_problems(container, account) == []
    return UUID(roster.default)


# --- races ---------------------------------------------------------------------------


@pytest.fixture
def workers(container: Container) -> Iterator[list[ProfilesService]]:
    """One service per racing thread, as separate worker processes would have:
    the in-process per-account queue cannot serialise them, the store must."""
    env = container.settings.model_copy(update={"api_threads": 1}).library_env()
    apps = [ProfilesService(env) for _ in range(THREADS)]
    yield apps
    for app in apps:
        app.close()


def test_racing_first_creates_for_a_new_account_leave_exactly_one_default(
    container: Container, workers: list[ProfilesService]
) -> None:
    app = container.app
    attempts: list[int] = []
    for _ in range(ROUNDS):
        account = f"acct-{uuid.uuid4().hex[:10]}"
        pids = [uuid.uuid4() for _ in range(THREADS)]
        results = race(
            [
                (partial(worker.create_profile, account, "Racer", [], CAUSE, profile_id=pid))
                for pid, worker in zip(pids, workers, strict=True)
            ]
        )
        done = outcomes(results, ConcurrencyConflict)
        assert done, "no create succeeded"
        attempts += [o.attempts for o in done]
        settle(container, done)

        created = {o.profile_id for o in done}
        roster = app.get_roster(account)
        assert roster is not None
        # A create that gave up left nothing behind; every success is a member.
        assert set(roster.members) == {str(p) for p in created}
        assert {r.id for r in container.queries.all_rows() if r.account_id == account} == created
        default = assert_one_default_everywhere(container, account)
        # The first committed create became the default, and only it.
        first = min(done, key=lambda o: o.position)
        assert default == first.profile_id
        changes = [e for e in app.events.get(roster_id(account)) if isinstance(e, Roster.DefaultChanged)]
        assert len(changes) == 1
    # The racing writers collided on the roster and retried from a fresh load.
    assert max(attempts) > 1, attempts
    assert verify_store(container) == []


def test_racing_set_defaults_end_on_the_last_committed_one(container: Container) -> None:
    app = container.app
    for _ in range(ROUNDS):
        account, pids = create_account(container, THREADS + 1)
        targets = pids[1:]  # pids[0] is the default already: every call moves it
        results = race([partial(app.set_default, account, pid, CAUSE) for pid in targets])
        done = outcomes(results, ConcurrencyConflict)
        assert done
        settle(container, done)

        default = assert_one_default_everywhere(container, account)
        last = max(done, key=lambda o: o.position)
        assert default == last.profile_id
        # Each success wrote exactly one DefaultChanged, in commit order.
        changes = [e for e in app.events.get(roster_id(account)) if isinstance(e, Roster.DefaultChanged)]
        assert [UUID(e.new) for e in changes[1:]] == [
            o.profile_id for o in sorted(done, key=lambda o: o.position)
        ]
    assert verify_store(container) == []


def test_archiving_the_default_while_others_set_defaults_keeps_one_active_default(
    container: Container,
) -> None:
    app = container.app
    for _ in range(ROUNDS):
        account, p = create_account(container, THREADS)
        calls: list[Callable[[], Outcome]] = [
            partial(app.archive, account, p[0], CAUSE),  # the default, no successor
            partial(app.archive, account, p[2], CAUSE, successor_id=p[3]),
            partial(app.set_default, account, p[2], CAUSE),  # refused if p[2] is archived first
            partial(app.archive, account, p[4], CAUSE),
            partial(app.set_default, account, p[1], CAUSE),
            partial(app.set_default, account, p[0], CAUSE),  # refused if p[0] is archived first
            partial(app.archive, account, p[6], CAUSE, successor_id=p[7]),
            partial(app.set_default, account, p[5], CAUSE),
        ]
        results = race(calls)
        done = outcomes(results, ConcurrencyConflict, IllegalState)
        for i in (0, 1, 3, 6):  # archives of active profiles by distinct callers
            assert isinstance(results[i], Outcome | ConcurrencyConflict), results[i]
        settle(container, done)

        default = assert_one_default_everywhere(container, account)
        archived = {r.id for r in container.queries.all_rows() if r.account_id == account and r.archived}
        assert default not in archived
        assert archived == {pid for pid in p if app.get_profile(pid).archived}
    assert verify_store(container) == []


def test_one_process_queues_commands_on_one_account_instead_of_colliding(
    container: Container,
) -> None:
    """Within one process, concurrent unconditional commands on one account wait
    their turn: none needs a retry, none ends in a conflict."""
    app = container.app
    account, pids = create_account(container, 2)
    calls: list[Callable[[], Outcome]] = []
    for i in range(2 * THREADS):
        if i % 2:
            calls.append(lambda i=i: app.set_default(account, pids[i % 2], CAUSE))
        else:
            calls.append(lambda i=i: app.create_profile(account, f"Q{i}", [], CAUSE))
    results = race(calls)
    done = outcomes(results)
    assert len(done) == len(calls)
    assert [o.attempts for o in done] == [1] * len(calls)
    settle(container, done)
    assert_one_default_everywhere(container, account)
