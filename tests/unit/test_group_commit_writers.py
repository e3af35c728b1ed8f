"""GroupCommit (infrastructure/group_commit.py) with a stand-in service: which
commands go together, what each waiter hears, and shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

import pytest

from domain.service import Cause, Command, Outcome
from infrastructure.group_commit import GroupCommit


class StandIn:
    """Records each group; holds every group until `go` is set."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.groups: list[list[str]] = []
        self.in_hand: set[str] = set()
        self.overlaps: list[str] = []
        self.go = threading.Event()
        self.fail = fail
        self.alone: list[Command] = []
        self._lock = threading.Lock()

    def run_together(self, commands: Sequence[Command]) -> list[Any]:
        accounts = [c.account_id for c in commands]
        with self._lock:
            self.groups.append(accounts)
            self.overlaps += [a for a in accounts if a in self.in_hand]
            self.in_hand.update(accounts)
        self.go.wait(5)
        with self._lock:
            self.in_hand.difference_update(accounts)
        if self.fail is not None:
            raise self.fail
        return [Outcome(c.profile_id, n) for n, c in enumerate(commands, 1)]

    def run_alone(self, command: Command) -> Outcome:
        self.alone.append(command)
        return Outcome(command.profile_id, 0)


def command(account: str) -> Command:
    return Command(account, uuid4(), lambda: (), Cause(account))


def submit(committer: GroupCommit, commands: list[Command]) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = [None] * len(commands)

    def call(i: int) -> None:
        try:
            results[i] = committer(commands[i])
        except BaseException as e:
            results[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(commands))]
    for t in threads:
        t.start()
    return threads, results


def wait_until(condition: Any) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_waiting_commands_go_together_one_per_account_and_never_an_account_in_two_groups() -> None:
    service = StandIn()
    committer = GroupCommit(service, writers=2)  # type: ignore[arg-type]
    try:
        first, _ = submit(committer, [command("a")])
        wait_until(lambda: len(service.groups) == 1)  # writer 1 holds a's group
        cmds = [command(x) for x in ("a", "b", "c", "a", "b")]
        threads, results = submit(committer, cmds)
        time.sleep(0.05)  # all five wait while the first group is held
        service.go.set()
        for t in [*first, *threads]:
            t.join(5)
        assert service.overlaps == []  # an account was never in two groups at once
        assert all(len(set(g)) == len(g) for g in service.groups)  # one command per account
        assert sorted(a for g in service.groups for a in g) == ["a", "a", "a", "b", "b", "c"]
        assert max(len(g) for g in service.groups) > 1  # others' commands did go together
        assert [r.profile_id for r in results] == [c.profile_id for c in cmds]  # each its own outcome
    finally:
        service.go.set()
        committer.close()


def test_a_failed_group_reaches_each_of_its_waiters_and_the_writer_goes_on() -> None:
    service = StandIn(fail=RuntimeError("database gone"))
    committer = GroupCommit(service, writers=1)  # type: ignore[arg-type]
    try:
        threads, results = submit(committer, [command("a"), command("b")])
        service.go.set()
        for t in threads:
            t.join(5)
        assert all(isinstance(r, RuntimeError) for r in results), results
        service.fail = None
        later = command("c")
        assert committer(later).profile_id == later.profile_id
    finally:
        committer.close()


def test_close_runs_what_waits_and_later_commands_run_alone() -> None:
    service = StandIn()
    committer = GroupCommit(service, writers=1)  # type: ignore[arg-type]
    threads, results = submit(committer, [command("a"), command("b")])
    wait_until(lambda: service.groups)
    closing = threading.Thread(target=committer.close)
    closing.start()
    service.go.set()
    closing.join(5)
    for t in threads:
        t.join(5)
    assert all(isinstance(r, Outcome) for r in results)
    late = command("d")
    assert committer(late) == Outcome(late.profile_id, 0)
    assert service.alone == [late]


@pytest.mark.parametrize("max_group", [1, 2])
def test_a_group_holds_at_most_max_group_commands(max_group: int) -> None:
    service = StandIn()
    service.go.set()
    committer = GroupCommit(service, writers=1, max_group=max_group)  # type: ignore[arg-type]
    try:
        threads, _ = submit(committer, [command(str(n)) for n in range(6)])
        for t in threads:
            t.join(5)
        assert max(len(g) for g in service.groups) <= max_group
        assert sum(len(g) for g in service.groups) == 6
    finally:
        committer.close()
