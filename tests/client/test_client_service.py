"""Every Client method against the real server over HTTP: the answers as
typed models, each typed error, retries that apply a command once, pages
followed, read-your-writes, and the live stream resumed after a drop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from racer_profiles_client import (
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    PreconditionFailed,
    Profile,
    ProfileErased,
    ServiceUnreachable,
    Unauthorized,
    Unavailable,
    ValidationFailed,
    __version__,
)

from tests.client.cutting_proxy import CuttingProxy
from tests.support.service import Service, free_port


def test_profile_commands_answer_typed_profiles_with_etags(client: Client) -> None:
    assert client.get_default() is None  # a new account has none
    alex = client.create_profile(
        "Alex", vehicles=[{"name": "Rotax Max", "race_number": "07"}], details={"club": "North"}
    )
    assert isinstance(alex, Profile) and alex.name == "Alex" and alex.is_default
    assert alex.details == {"club": "North"} and alex.vehicle_count == 1
    assert alex.vehicles[0].race_number == "07" and alex.etag == '"1"'
    assert alex.position is not None and client.last_position == alex.position

    alex = client.rename(alex.id, "Alexandra", if_match=alex.etag, reason="typo")
    assert alex.name == "Alexandra" and alex.version == 2

    alex = client.add_vehicle(alex.id, "Spare", vehicle_class="Junior", if_match=alex.etag)
    spare = next(v for v in alex.vehicles if v.name == "Spare")
    assert spare.vehicle_class == "Junior" and alex.vehicle_count == 2
    alex = client.change_vehicle(alex.id, spare.id, race_number="12", vehicle_class=None, if_match=alex.etag)
    spare = next(v for v in alex.vehicles if v.id == spare.id)
    assert (spare.name, spare.vehicle_class, spare.race_number) == ("Spare", None, "12")
    alex = client.remove_vehicle(alex.id, spare.id, if_match=alex.etag)
    assert [v.name for v in alex.vehicles] == ["Rotax Max"]

    sam = client.create_profile("Sam")
    assert not sam.is_default
    default = client.get_default()
    assert default is not None and default.id == alex.id and default.roster_etag
    sam = client.set_default(sam.id, if_match=default.roster_etag)
    assert sam.is_default and sam.roster_etag != default.roster_etag

    archived = client.archive(sam.id, successor_id=alex.id)
    assert archived.archived and not archived.is_default
    assert client.get_default().id == alex.id  # type: ignore[union-attr]
    restored = client.restore(sam.id, if_match=archived.etag)
    assert not restored.archived

    assert client.get_profile(alex.id).name == "Alexandra"
    assert client.get_profile(alex.id, version=1).name == "Alex"
    assert client.get_profile(alex.id, as_of=datetime.now(UTC)).name == "Alexandra"


def test_lists_history_timeline_and_export_follow_every_page(client: Client) -> None:
    names = [f"P{i}" for i in range(5)]
    created = [client.create_profile(name) for name in names]
    client.archive(created[4].id)
    assert [p.name for p in client.list_profiles(page_size=2)] == names[:4]
    assert [p.name for p in client.list_profiles(include_archived=True, page_size=2)] == names

    first = created[0]
    client.rename(first.id, "P0b")
    client.rename(first.id, "P0c")
    entries = list(client.history(first.id, page_size=1))
    assert [e.type for e in entries if e.aggregate_type == "RacerProfile"][-2:] == ["Renamed", "Renamed"]
    assert [e.position for e in entries] == sorted({e.position for e in entries})

    client.set_default(created[1].id)
    client.set_default(created[2].id)
    timeline = list(client.default_timeline(page_size=1))
    assert [str(c.to_profile_id) for c in timeline] == [str(p.id) for p in created[:3]]

    exported = list(client.export_events(page_size=3))
    positions = [e.position for e in exported]
    assert positions == sorted(set(positions)) and len(exported) > 6
    assert list(client.export_events(after=positions[-2], page_size=3)) == exported[-1:]


def test_operations_endpoints(client: Client) -> None:
    assert client.health().status == "ok"
    readiness = client.readiness()
    assert readiness.ready and readiness.database == "ok"
    assert "# TYPE" in client.metrics()


def test_each_error_is_typed_from_the_problem_document(service: Service, client: Client) -> None:
    alex = client.create_profile("Alex")
    with pytest.raises(NotFound) as missing:
        client.get_profile(uuid.uuid4())
    assert missing.value.kind == "not-found" and missing.value.problem.status == 404

    with pytest.raises(PreconditionFailed) as stale:
        client.rename(alex.id, "Late", if_match='"7"')
    assert stale.value.current_version == 1

    with pytest.raises(ValidationFailed) as invalid:
        client.add_vehicle(alex.id, "Kart", race_number="#1")
    assert [e.field for e in invalid.value.errors] == ["race_number"]

    client.archive(alex.id)
    with pytest.raises(Conflict) as archived:
        client.rename(alex.id, "Again")
    assert archived.value.kind == "illegal-state"
    assert client.get_profile(alex.id).name == "Alex"  # nothing changed

    sam = client.create_profile("Sam", vehicles=[{"name": "Kart"}])
    receipt = client.erase(sam.id, reason="asked by the parent")
    assert receipt.profile_id == sam.id and receipt.position >= 1
    with pytest.raises(Gone) as gone:
        client.get_profile(sam.id)
    assert gone.value.kind == "erased" and gone.value.status == 410
    with pytest.raises(Gone):
        client.erase(sam.id)
    assert client.get_profile(sam.id, version=1).name == "[erased]"

    with Client(service.base_url, "rp_not_a_token") as stranger, pytest.raises(Unauthorized):
        stranger.get_default()
    with Client(service.base_url, service.new_token(role="auditor")) as auditor, pytest.raises(Forbidden):
        auditor.create_profile("Nope")


def test_a_position_no_write_has_reached_is_refused_at_once(
    service: Service, client: Client, token: str
) -> None:
    client.saw_position(10**12)  # as a worker given a position from elsewhere
    with pytest.raises(ValidationFailed) as ahead:
        client.get_default()
    assert ahead.value.kind == "position-ahead", ahead.value.problem
    assert [e.field for e in ahead.value.errors] == ["X-Min-Position"]
    with Client(service.base_url, token, read_your_writes=False) as plain:
        assert plain.get_default() is None  # the same read without X-Min-Position answers


def test_an_unreachable_service_is_retried_then_reported() -> None:
    nowhere = Client(f"http://127.0.0.1:{free_port()}", "rp_x", retries=2, backoff=0.01)
    with nowhere, pytest.raises(ServiceUnreachable) as unreachable:
        nowhere.get_default()
    assert isinstance(unreachable.value, Unavailable) and "no answer from" in str(unreachable.value)


def test_a_command_whose_answer_was_lost_is_retried_and_applied_once(proxy: CuttingProxy, token: str) -> None:
    with Client(proxy.base_url, token, backoff=0.01) as client:
        proxy.swallow_next_answer()
        sam = client.create_profile("Sam")
        assert proxy.swallowed == 1
        posts = [
            line for line in proxy.requests_sent().splitlines() if line.lower().startswith("idempotency-key")
        ]
        assert len(posts) == 2 and posts[0] == posts[1]  # the retry carried the same key
        assert [p.name for p in client.list_profiles()] == ["Sam"]

        proxy.swallow_next_answer()
        renamed = client.rename(sam.id, "Samantha", if_match=sam.etag)
        assert renamed.version == 2  # applied once: a second rename would be version 3 or a 412
        assert [h.type for h in client.history(sam.id) if h.aggregate_type == "RacerProfile"] == [
            "Created",
            "Renamed",
        ]


def test_every_request_names_the_client_and_its_version(proxy: CuttingProxy, token: str) -> None:
    with Client(proxy.base_url, token) as client:
        client.health()
    assert f"user-agent: racer-profiles-client/{__version__}" in proxy.requests_sent().lower()


def test_reads_send_the_highest_position_seen(proxy: CuttingProxy, token: str) -> None:
    with Client(proxy.base_url, token) as client:
        created = client.create_profile("Alex")
        client.get_profile(created.id)
    assert f"x-min-position: {created.position}" in proxy.requests_sent().lower()
    proxy.sent.clear()
    with Client(proxy.base_url, token, read_your_writes=False) as client:
        client.create_profile("Sam")
        client.get_default()
    assert "x-min-position" not in proxy.requests_sent().lower()


def test_the_stream_resumes_after_a_dropped_connection(
    service: Service, proxy: CuttingProxy, token: str
) -> None:
    with Client(service.base_url, token) as writer:
        alex = writer.create_profile("Alex")
        with Client(proxy.base_url, token) as reader:
            stream = reader.changes()
            first = next(stream)
            assert first.id == alex.id and first.position is not None

            received: list[Profile] = []
            done = threading.Event()

            def read_until_samantha() -> None:
                for change in stream:
                    received.append(change)
                    if change.name == "Samantha":
                        break
                done.set()

            thread = threading.Thread(target=read_until_samantha, daemon=True)
            thread.start()
            proxy.cut_all()  # the stream drops; Sam is created and renamed while it reconnects
            sam = writer.create_profile("Sam")
            writer.rename(sam.id, "Samantha")
            assert done.wait(30), f"the stream gave {received}"
            # Resumed after Alex (Last-Event-ID), not from the start: Alex is not sent again.
            assert received and all(p.id == sam.id for p in received), received
            assert f"last-event-id: {first.position}" in proxy.requests_sent().lower()
            stream.close()


def test_the_stream_sends_an_erasure_as_a_profile_erased(client: Client) -> None:
    alex = client.create_profile("Alex")
    sam = client.create_profile("Sam")
    stream = client.changes()
    assert {next(stream).id for _ in range(2)} == {alex.id, sam.id}

    received: list[Profile | ProfileErased] = []
    done = threading.Event()

    def read_until_an_erasure() -> None:
        for change in stream:
            received.append(change)
            if isinstance(change, ProfileErased):
                break
        done.set()

    thread = threading.Thread(target=read_until_an_erasure, daemon=True)
    thread.start()
    receipt = client.erase(sam.id)
    assert done.wait(30), f"no erasure on the stream; it gave {received}"
    stream.close()
    erased = received[-1]
    assert isinstance(erased, ProfileErased)
    assert (erased.id, erased.erased_at) == (sam.id, receipt.erased_at)
    # The row's position (the profile's last event); the receipt's is the erasure's last event of all.
    assert erased.position is not None and erased.position <= receipt.position
    # Before it, at most Sam's archived state (the erasure archives first): nothing of Alex.
    assert all(isinstance(c, Profile) and c.id == sam.id and c.archived for c in received[:-1]), received


def test_the_async_client_does_the_same(service: Service, token: str, new_token: Callable[[], str]) -> None:
    async def scenario() -> None:
        async with AsyncClient(service.base_url, token) as client:
            assert await client.get_default() is None
            alex = await client.create_profile("Alex", vehicles=[{"name": "Kart"}])
            sam = await client.create_profile("Sam")
            sam = await client.rename(sam.id, "Samuel", if_match=sam.etag)
            assert (await client.set_default(sam.id)).is_default
            assert [p.name async for p in client.list_profiles(page_size=1)] == ["Alex", "Samuel"]
            with pytest.raises(PreconditionFailed):
                await client.archive(alex.id, if_match='"5"')
            changes = client.changes()
            seen = {(await changes.__anext__()).name for _ in range(2)}
            assert seen == {"Alex", "Samuel"}
            await changes.aclose()
            assert (await client.readiness()).ready
            assert (await client.erase(alex.id, successor_id=sam.id)).profile_id == alex.id

    asyncio.run(scenario())


def test_the_example_of_the_client_authors_guide_runs_as_written(service: Service, token: str) -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "client-authors.md").read_text()
    source = guide.split("## Python client", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    source = source.replace("http://127.0.0.1:8000", service.base_url)  # make run's address
    env = {**os.environ, "RACER_PROFILES_TOKEN": token}
    ran = subprocess.run(
        [sys.executable, "-c", source], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        "changed meanwhile; now at version 2",
        "Alexandra 1 ",
        "Sam 0 default",
        "Sam",
    ]


def test_token_life_cycle_through_both_clients(service: Service) -> None:
    admin_token = service.create_account(f"client-admin-{uuid.uuid4().hex[:6]}", "admin")
    with Client(service.base_url, admin_token, timeout=30) as admin:
        account = admin.create_account(f"client-{uuid.uuid4().hex[:6]}", token_name="laptop")
        assert account.role == "owner" and account.token.name == "laptop"
        phone = admin.issue_token(account.id, "phone", expires_at=datetime(2999, 1, 1, tzinfo=UTC))
        assert phone.expires_at == datetime(2999, 1, 1, tzinfo=UTC)
        assert [t.name for t in admin.account_tokens(account.id)] == ["laptop", "phone"]
        with Client(service.base_url, account.token.token, timeout=30) as owner:
            assert [t.id for t in owner.tokens()] == [account.token.id, phone.id]
            with pytest.raises(Forbidden):
                owner.issue_token(account.id, "sneaky")
            owner.revoke_token(phone.id)
            with pytest.raises(NotFound):
                owner.revoke_token(phone.id)
            assert [t.revoked_at is not None for t in owner.tokens(include_revoked=True)] == [False, True]

        async def revoke_async() -> None:
            async with AsyncClient(service.base_url, admin_token) as aclient:
                assert [t.name for t in await aclient.account_tokens(account.id)] == ["laptop"]
                await aclient.revoke_any_token(account.token.id)

        asyncio.run(revoke_async())
        with Client(service.base_url, account.token.token, retries=0) as revoked, pytest.raises(Unauthorized):
            revoked.tokens()
