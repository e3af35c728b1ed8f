"""The commands counter on /metrics (api/metrics.py), on real PostgreSQL: a
command that loses a race to another worker process and succeeds on its retry
counts once, as `conflict_retried`; one that loses every attempt counts as
`conflict_failed`; neither counts as `ok`.

The rival is a second stack on the same database, as another worker process
would be: the in-process per-account queue cannot serialise it, so the
database refuses the loser's events (the aggregate's version is taken) and the
service retries from a fresh load. The test makes the race certain instead of
likely: the rival's command commits just before the service's save."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from domain.service import Cause
from infrastructure.container import Container
from tests.support.databases import running_container

Counts = dict[tuple[str, str], float]


@pytest.fixture
def rival(database_url: str) -> Iterator[Container]:
    """Another worker process's stack on the test's database (no projection runner of its own)."""
    with running_container(database_url, runner=False) as other:
        yield other


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container)) as c:
        yield c


def commands(client: TestClient) -> Counts:
    """The commands counter's samples: (command, outcome) -> count."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.labels["command"], sample.labels["outcome"]): sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == "commands"
        for sample in family.samples
        if sample.name == "commands_total"
    }


def added(before: Counts, after: Counts, command: str) -> Counts:
    """What the counter gained for command, by outcome."""
    keys = {key for key in (*before, *after) if key[0] == command}
    gained = {key[1]: after.get(key, 0.0) - before.get(key, 0.0) for key in keys}
    return {(command, outcome): value for outcome, value in gained.items() if value}


def losing(
    monkeypatch: pytest.MonkeyPatch, container: Container, rival_wins: Callable[[], Any], times: int
) -> None:
    """The service's next `times` saves each lose to the rival: its command
    commits first. (The library's `_record` stores a save's events, whether a
    command saves alone or in a group: infrastructure/group_commit.py.)"""
    record = container.app._record
    lost = 0

    def after_the_rival(*args: Any, **kwargs: Any) -> Any:
        nonlocal lost
        if lost < times:
            lost += 1
            rival_wins()
        return record(*args, **kwargs)

    monkeypatch.setattr(container.app, "_record", after_the_rival)


def owner_with_profile(container: Container, client: TestClient) -> tuple[str, dict[str, str], UUID]:
    account = container.accounts.create(f"metrics-{uuid.uuid4().hex[:8]}")
    headers = {"Authorization": f"Bearer {account.token}"}
    created = client.post("/v1/profiles", json={"name": "Ann"}, headers=headers)
    assert created.status_code == 201, created.text
    return str(account.account_id), headers, UUID(created.json()["id"])


def test_a_command_that_lost_a_race_and_won_its_retry_counts_as_conflict_retried(
    container: Container, rival: Container, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    account, headers, pid = owner_with_profile(container, client)
    before = commands(client)
    losing(monkeypatch, container, lambda: rival.app.rename(account, pid, "Rival", Cause(account)), times=1)

    response = client.patch(f"/v1/profiles/{pid}", json={"name": "Bea"}, headers=headers)

    # The retry loaded the rival's rename and applied this one on top of it.
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["version"]) == ("Bea", 3)
    assert added(before, commands(client), "rename_profile") == {("rename_profile", "conflict_retried"): 1}


def test_a_command_that_lost_every_attempt_counts_as_conflict_failed(
    container: Container, rival: Container, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    account, headers, pid = owner_with_profile(container, client)
    before = commands(client)
    attempts = container.app.max_attempts
    names = iter(f"Rival {i}" for i in range(attempts))
    losing(
        monkeypatch, container, lambda: rival.app.rename(account, pid, next(names), Cause(account)), attempts
    )

    response = client.patch(f"/v1/profiles/{pid}", json={"name": "Bea"}, headers=headers)

    assert response.status_code == 409 and response.json()["type"].endswith("/conflict"), response.text
    assert added(before, commands(client), "rename_profile") == {("rename_profile", "conflict_failed"): 1}


def test_a_command_without_a_race_counts_as_ok(container: Container, client: TestClient) -> None:
    _, headers, pid = owner_with_profile(container, client)
    before = commands(client)

    response = client.patch(f"/v1/profiles/{pid}", json={"name": "Bea"}, headers=headers)

    assert response.status_code == 200, response.text
    assert added(before, commands(client), "rename_profile") == {("rename_profile", "ok"): 1}
