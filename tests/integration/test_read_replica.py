"""READ_DATABASE_URL: queries read a PostgreSQL streaming replica, and
read-your-writes still holds because waits check the replica's own copy of the
projection's tracking position.

The module starts a primary and a streaming replica of its own (the embedded
PostgreSQL binaries; pg_basebackup -R -X stream; see tests/replica_support.py),
so it never touches TEST_DATABASE_URL's server."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient
from replica_support import StreamingReplica

from api.app import create_app
from domain.roster import roster_id
from domain.service import Cause
from infrastructure.container import Container, build
from infrastructure.settings import Settings

pytestmark = pytest.mark.postgres

WAIT = 10.0  # generous: replay is milliseconds, but CI machines stall


@pytest.fixture(scope="module")
def servers() -> Iterator[StreamingReplica]:
    pair = StreamingReplica().start()
    try:
        yield pair
    finally:
        pair.stop()


@pytest.fixture(scope="module")
def container(servers: StreamingReplica) -> Iterator[Container]:
    settings = Settings(
        database_url=servers.primary.url,
        read_database_url=servers.replica.url,
        api_threads=4,
        wait_timeout=WAIT,
    )
    built = build(settings)  # creates the tables on the primary
    try:
        servers.catch_up()  # ... which the replica must have before it is queried
        built.start_runner()
        yield built
    finally:
        built.close()


@pytest.fixture(scope="module")
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container), raise_server_exceptions=False) as c:
        yield c


def new_owner(container: Container) -> tuple[str, dict[str, str]]:
    """A fresh account: (account id, its Authorization header)."""
    account = container.accounts.create(f"replica-{uuid.uuid4().hex[:8]}")
    return str(account.account_id), {"Authorization": f"Bearer {account.token}"}


def server_facts(conn: Any) -> tuple[bool, str, str]:
    row = conn.execute(
        "SELECT pg_is_in_recovery() AS r, current_setting('data_directory') AS d,"
        " current_setting('port') AS p"
    ).fetchone()
    return row["r"], row["d"], row["p"]


def primary_position(container: Container) -> int:
    """The projection's position as the primary has it (not the replica)."""
    with container.datastore.get_connection() as conn:
        row = conn.execute(
            "SELECT notification_id FROM racer_profiles_tracking WHERE application_name = %s",
            (container.app.name,),
        ).fetchone()
    return int(row["notification_id"]) if row else 0


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        time.sleep(0.01)


def test_the_fixture_streams_a_replica_of_the_primary(servers: StreamingReplica) -> None:
    assert servers.primary.fetch("SELECT pg_is_in_recovery()") == (False,)
    assert servers.replica.fetch("SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)") == (
        True,
        "streaming",
    )
    (senders,) = servers.primary.fetch("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
    assert senders == 1


def test_queries_and_waits_read_the_replica_and_commands_write_the_primary(
    servers: StreamingReplica, container: Container
) -> None:
    assert container.reader is not container.datastore
    assert container.queries.datastore is container.reader
    assert container.view.reader is container.reader
    # Every connection of the queries' pool is on the replica (held all at once,
    # so that the pool cannot hand out the same one twice) ...
    with ExitStack() as stack:
        conns = [
            stack.enter_context(container.queries.datastore.get_connection())
            for _ in range(container.settings.pool_size)
        ]
        facts = {server_facts(conn) for conn in conns}
    assert facts == {(True, str(servers.replica.data_dir), str(servers.replica.port))}
    # ... and the write side's are on the primary.
    with container.datastore.get_connection() as conn:
        assert server_facts(conn) == (False, str(servers.primary.data_dir), str(servers.primary.port))
    with container.app.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
        assert server_facts(conn)[0] is False


def test_read_your_writes_through_the_replica_after_every_command(container: Container) -> None:
    account = f"acct-{uuid.uuid4().hex[:8]}"
    cause = Cause(account)
    app, view, queries = container.app, container.view, container.queries

    def seen(outcome: Any) -> Any:
        # Immediately after the command: wait on the replica's tracking position, then read.
        view.wait(app.name, outcome.position, timeout=WAIT)
        row = queries.get(account, outcome.profile_id)
        assert row is not None, f"position {outcome.position} reached but the row is not on the replica"
        return row

    alex = seen(app.create_profile(account, "Alex", [{"name": "Rotax Max"}], cause))
    assert (alex.name, alex.is_default, alex.vehicle_count) == ("Alex", True, 1)

    sam = seen(app.create_profile(account, "Sam", [], cause))
    assert (sam.name, sam.is_default) == ("Sam", False)

    outcome = app.set_default(account, sam.id, cause)
    sam = seen(outcome)
    assert sam.is_default
    assert queries.default(account).id == sam.id  # type: ignore[union-attr]
    assert not queries.get(account, alex.id).is_default  # type: ignore[union-attr]

    renamed = seen(app.rename(account, alex.id, "Alexandra", cause, alex.version))
    assert renamed.name == "Alexandra"

    outcome = app.add_vehicle(account, alex.id, {"name": "X30", "race_number": "12"}, cause)
    with_vehicle = seen(outcome)
    assert [v["name"] for v in with_vehicle.vehicles] == ["Rotax Max", "X30"]

    archived = seen(app.archive(account, sam.id, cause))
    assert archived.archived and not archived.is_default
    # The default passed to the earliest-created active profile, on the replica too.
    assert queries.default(account).id == alex.id  # type: ignore[union-attr]

    restored = seen(app.restore(account, sam.id, cause))
    assert not restored.archived
    assert [r.name for r in queries.page(account, include_archived=False, after=None, limit=10)] == [
        "Alexandra",
        "Sam",
    ]
    # The roster's version as the replica has it is the primary's.
    assert queries.aggregate_version(roster_id(account)) == app.get_roster(account).version  # type: ignore[union-attr]


def test_http_reads_right_after_writes_are_consistent(container: Container, client: TestClient) -> None:
    account_id, auth = new_owner(container)
    created = client.post("/v1/profiles", json={"name": "Alex", "vehicles": [{"name": "Kart"}]}, headers=auth)
    assert created.status_code == 201, created.text
    alex = created.json()
    assert alex["is_default"] is True
    assert int(created.headers["X-Position"]) > 0

    second = client.post("/v1/profiles", json={"name": "Sam"}, headers=auth)
    assert second.status_code == 201, second.text
    sam = second.json()

    # No X-Min-Position: the command already waited for the replica, so plain reads see it.
    listed = client.get("/v1/profiles", headers=auth)
    assert listed.status_code == 200, listed.text
    assert [(p["id"], p["is_default"]) for p in listed.json()["items"]] == [
        (alex["id"], True),
        (sam["id"], False),
    ]
    one = client.get(f"/v1/profiles/{sam['id']}", headers=auth)
    assert one.status_code == 200 and one.json() == sam
    assert one.headers["ETag"] == second.headers["ETag"]

    default = client.get("/v1/profiles/default", headers=auth)
    assert default.status_code == 200, default.text
    assert default.json()["id"] == alex["id"]
    # The ETag is the roster's version read on the replica: the primary's current one.
    roster = container.app.get_roster(account_id)
    assert roster is not None
    assert default.headers["ETag"] == f'"{roster.version}"'

    # So it works as If-Match straight away (a stale one would answer 412) ...
    switched = client.put(
        "/v1/profiles/default",
        json={"profile_id": sam["id"]},
        headers={**auth, "If-Match": default.headers["ETag"]},
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["is_default"] is True
    # ... and the next read shows the switch and the roster's next version.
    after = client.get("/v1/profiles/default", headers=auth)
    assert after.json()["id"] == sam["id"]
    assert after.headers["ETag"] == switched.headers["ETag"] != default.headers["ETag"]
    stale = client.put(
        "/v1/profiles/default",
        json={"profile_id": alex["id"]},
        headers={**auth, "If-Match": default.headers["ETag"]},
    )
    assert stale.status_code == 412, stale.text


def test_a_paused_replica_holds_waits_back_until_it_replays(
    servers: StreamingReplica, container: Container, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    account_id, auth = new_owner(container)
    created = client.post("/v1/profiles", json={"name": "Alex"}, headers=auth)
    assert created.status_code == 201, created.text
    profile_id = created.json()["id"]
    # Requests give up waiting sooner, so that the 503 below comes quickly.
    monkeypatch.setattr(container, "settings", container.settings.model_copy(update={"wait_timeout": 0.5}))

    servers.pause_replay()
    try:
        outcome = container.app.rename(account_id, uuid.UUID(profile_id), "Alexandra", Cause(account_id))
        # The projection applies it on the primary; only the replica is behind.
        wait_until(lambda: primary_position(container) >= outcome.position)

        with pytest.raises(TimeoutError):
            container.view.wait(container.app.name, outcome.position, timeout=0.5)

        lagging = client.get(
            f"/v1/profiles/{profile_id}", headers={**auth, "X-Min-Position": str(outcome.position)}
        )
        assert lagging.status_code == 503, lagging.text
        assert lagging.headers["Retry-After"] == "1"
        assert lagging.headers["Content-Type"].startswith("application/problem+json")
        assert lagging.json()["status"] == 503

        # Without X-Min-Position the answer is the replica's (older) state: reads
        # really go to the replica, while the primary's table has the new name.
        stale = client.get(f"/v1/profiles/{profile_id}", headers=auth)
        assert stale.status_code == 200 and stale.json()["name"] == "Alex"
        with container.datastore.get_connection() as conn:
            row = conn.execute("SELECT name FROM racer_profiles WHERE id = %s", (profile_id,)).fetchone()
        assert row["name"] == "Alexandra"

        # A command while the replica lags past WAIT_TIMEOUT: stored, 202 with its position.
        accepted = client.post("/v1/profiles", json={"name": "Sam"}, headers=auth)
        assert accepted.status_code == 202, accepted.text
        assert int(accepted.headers["X-Position"]) == accepted.json()["position"] > outcome.position

        # /readyz reports the lag as the replica has it.
        ready = client.get("/readyz").json()
        assert ready["lag"] > 0 and ready["position"] < outcome.position
    finally:
        servers.resume_replay()

    container.view.wait(container.app.name, accepted.json()["position"], timeout=WAIT)
    assert container.queries.get(account_id, uuid.UUID(profile_id)).name == "Alexandra"  # type: ignore[union-attr]
    fresh = client.get(
        f"/v1/profiles/{profile_id}", headers={**auth, "X-Min-Position": str(outcome.position)}
    )
    assert fresh.status_code == 200 and fresh.json()["name"] == "Alexandra"
    listed = client.get("/v1/profiles", headers=auth).json()["items"]
    assert [p["name"] for p in listed] == ["Alexandra", "Sam"]
