"""A projection stopped by an event it cannot apply: every process sees where
(readiness fails with the position and error), and an explicit, recorded skip
lets it resume."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

import infrastructure.runner as runner_module
from api.app import create_app
from domain.service import Cause
from infrastructure.container import Container, build
from infrastructure.projection_status import CannotSkip
from infrastructure.settings import Settings

pytestmark = pytest.mark.postgres
CAUSE = Cause("acct")


def wait_until_failed(container: Container) -> None:
    runner = container.runner
    assert runner is not None
    runner._thread.join(10)  # the runner's thread ends when it stops at a poison event
    assert runner.status().role == "failed"


@pytest.fixture
def poisoned(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Container, int]]:
    """A container whose runner stopped at the rename of a second profile."""
    # Events stored by a writer without the inline projection (an import, an
    # older version): only the runner applies them, and it meets the poison.
    container = build(settings.model_copy(update={"inline_projection": False}))
    first = container.app.create_profile("acct", "Ann", [], CAUSE)
    bad = container.app.rename("acct", first.profile_id, "Poison", CAUSE).position
    real = runner_module.changes_for

    def changes_for(event: Any) -> Any:
        if getattr(event, "name", None) == "Poison":
            raise ValueError("cannot project this")
        return real(event)

    monkeypatch.setattr(runner_module, "changes_for", changes_for)
    container.start_runner()
    wait_until_failed(container)
    yield container, bad
    container.close()


def test_every_process_sees_where_the_projection_stopped(
    poisoned: tuple[Container, int], settings: Settings
) -> None:
    _container, bad = poisoned
    other = build(settings)  # an API worker without a runner of its own
    try:
        with TestClient(create_app(other)) as client:
            ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["projection_failed_position"] == bad
        assert "cannot project this" in ready.json()["projection_error"]
    finally:
        other.close()


def test_a_skip_must_name_the_stopped_position(poisoned: tuple[Container, int]) -> None:
    container, bad = poisoned
    with pytest.raises(CannotSkip):
        container.projection_status.skip(container.view, container.app.name, bad + 1, "test")
    assert container.view.max_tracking_id(container.app.name) == bad - 1


def test_an_explicit_skip_is_recorded_and_the_projection_resumes(
    poisoned: tuple[Container, int], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    container, bad = poisoned
    monkeypatch.undo()
    container.projection_status.skip(container.view, container.app.name, bad, "test")
    later = container.app.create_profile("acct", "Bo", [], CAUSE)
    resumed = build(settings)
    try:
        resumed.start_runner()
        resumed.view.wait(resumed.app.name, later.position, timeout=10)
        names = {row.name for row in resumed.queries.all_rows()}
        assert names == {"Ann", "Bo"}  # the skipped rename was not applied
        with TestClient(create_app(resumed)) as client:
            assert client.get("/readyz").status_code == 200
        with resumed.datastore.get_connection() as conn:
            rows = conn.execute("SELECT position, skipped_by FROM racer_profiles_skips").fetchall()
        assert [(r["position"], r["skipped_by"]) for r in rows] == [(bad, "test")]
    finally:
        resumed.close()
