"""The auditor's round trip with the real command line: `export` the log,
`replay` it into a fresh database, `rebuild` and `verify` there; the rebuilt
read table equals the original, column by column.

The source database serves the module (each test adds a story of its own)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import psycopg.rows
import pytest
from psycopg.conninfo import conninfo_to_dict
from typer.testing import CliRunner

from api.cli import cli
from domain.service import Cause
from infrastructure.chain_check import checkpoint
from infrastructure.container import Container, build
from infrastructure.settings import Settings
from tests.support.databases import temporary_database

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("racer-profiles")
EVENT_COLUMNS = "notification_id, originator_id, originator_version, topic, state"


def run(database_url: str, *args: str, keys_url: str | None = None) -> subprocess.CompletedProcess[str]:
    assert CLI.exists(), CLI
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url, "HOME": str(ROOT)}
    if keys_url:
        env["KEYS_DATABASE_URL"] = keys_url
    return subprocess.run(
        [str(CLI), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def run_in_process(database_url: str, *args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), env={"DATABASE_URL": database_url})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def last_position(stdout: str) -> int:
    lines = [line for line in stdout.splitlines() if line.startswith("last position ")]
    assert len(lines) == 1, stdout
    return int(lines[0].removeprefix("last position "))


@pytest.fixture(scope="module")
def source(module_container: Container) -> Container:
    return module_container


@pytest.fixture
def fresh_database(pg_server_url: str) -> Iterator[str]:
    """An empty database, named by a postgresql:// URL (the source uses a conninfo string)."""
    with temporary_database(pg_server_url, "rp_replica") as conninfo:
        name = conninfo_to_dict(conninfo)["dbname"]
        info = conninfo_to_dict(pg_server_url)
        user = info.get("user", "postgres")
        password = f":{info['password']}" if info.get("password") else ""
        # host as a query parameter: it may be a socket directory (the embedded server)
        host = quote(str(info.get("host", "127.0.0.1")), safe="")
        yield f"postgresql://{user}{password}@/{name}?host={host}&port={info.get('port', 5432)}"


def rows(database_url: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(statement).fetchall()


def dict_rows(database_url: str, statement: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(statement).fetchall()


def a_story(c: Container, tag: str) -> None:
    a, b = f"acc-a-{tag}", f"acc-b-{tag}"
    p1 = c.app.create_profile(
        a,
        "Ann",
        [{"name": "Kart", "race_number": "7"}],
        Cause("alice", "signup", "e1"),
        details={"team": "red", "since": 2019},
    ).profile_id
    p2 = c.app.create_profile(a, "Bob", [], Cause("alice", None, "e2")).profile_id
    p3 = c.app.create_profile(b, "Cy", [{"name": "Buggy"}], Cause("bob", None, "e3")).profile_id
    c.app.rename(a, p1, "Anna", Cause("alice", "typo", "e4"))
    vehicle = c.app.add_vehicle(a, p2, {"name": "Quad", "vehicle_class": "Open"}, Cause("alice")).vehicle_id
    assert vehicle is not None
    c.app.change_vehicle(a, p2, vehicle, {"race_number": "42"}, Cause("alice"))
    c.app.set_default(a, p2, Cause("alice", "rotation", "e5"))
    c.app.archive(a, p1, Cause("alice", "retired", "e6"))
    c.app.archive(b, p3, Cause("bob"))
    c.app.restore(b, p3, Cause("bob"))
    c.app.remove_vehicle(b, p3, c.app.get_profile(p3).vehicles[0]["id"], Cause("bob"))


def test_export_replay_rebuild_verify_reproduces_the_read_table(
    source: Container, fresh_database: str, tmp_path: Path
) -> None:
    container = source
    source_url = container.settings.database_url
    assert source_url
    a_story(container, "one")
    head = container.audit.log.head()
    container.view.wait(container.app.name, head, timeout=10)

    out = tmp_path / "log.ndjson"
    exported = run(source_url, "export", "--out", str(out))
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert last_position(exported.stdout) == head
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[-1]["position"] == head
    original_events = rows(
        source_url, f"SELECT {EVENT_COLUMNS} FROM racerprofiles_events ORDER BY notification_id"
    )
    assert [
        (
            r["position"],
            uuid.UUID(r["aggregate_id"]),
            r["version"],
            r["topic"],
            base64.b64decode(r["stored_state"]),
        )
        for r in records
    ] == [(n, i, v, t, bytes(s)) for n, i, v, t, s in original_events]

    replayed = run(source_url, "replay", str(out), "--into", fresh_database)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    assert str(head) in replayed.stdout

    # Keys are never exported: the copy reads them from the original's key store.
    rebuilt = run(fresh_database, "rebuild", keys_url=source_url)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    verified = run(fresh_database, "verify", keys_url=source_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr[-3000:]

    copied_events = rows(
        fresh_database, f"SELECT {EVENT_COLUMNS} FROM racerprofiles_events ORDER BY notification_id"
    )
    assert copied_events == original_events
    query = "SELECT * FROM racer_profiles ORDER BY id"
    original, copy = rows(source_url, query), rows(fresh_database, query)
    assert len(original) >= 3
    assert copy == original

    # Without the keys (an auditor's copy) the chains, the invariant and every
    # non-personal column still reproduce; personal fields read as withheld.
    assert run(fresh_database, "rebuild").returncode == 0
    keyless = run(fresh_database, "verify")
    assert keyless.returncode == 0, keyless.stdout + keyless.stderr[-3000:]
    withheld = dict_rows(fresh_database, query)
    assert {r["name"] for r in withheld} == {"[withheld]"}
    personal = {"name", "details", "vehicles"}
    assert [{k: v for k, v in r.items() if k not in personal} for r in withheld] == [
        {k: v for k, v in r.items() if k not in personal} for r in dict_rows(source_url, query)
    ]
    run(fresh_database, "rebuild", keys_url=source_url)
    with psycopg.connect(source_url) as conn:
        cursor = conn.execute("SELECT * FROM racer_profiles LIMIT 0")
        columns = [d.name for d in cursor.description or []]
    assert {
        "id",
        "account_id",
        "name",
        "details",
        "vehicles",
        "vehicle_count",
        "archived",
        "is_default",
        "version",
        "created_at",
        "updated_at",
        "position",
    } <= set(columns)

    # A store that is not empty is refused (exit 2) and left as it was.
    again = run_in_process(source_url, "replay", str(out), "--into", fresh_database)
    assert again.exit_code == 2, again.output
    into_source = run_in_process(source_url, "replay", str(out), "--into", source_url)
    assert into_source.exit_code == 2, into_source.output
    assert (
        rows(fresh_database, f"SELECT {EVENT_COLUMNS} FROM racerprofiles_events ORDER BY notification_id")
        == original_events
    )
    assert rows(source_url, "SELECT count(*) FROM racerprofiles_events")[0][0] == head

    replica = build(Settings(database_url=fresh_database, api_threads=2))
    try:
        assert checkpoint(replica.audit.log) == checkpoint(container.audit.log)
        # The replica's log continues after the replayed positions.
        outcome = replica.app.create_profile("acc-new", "Dee", [], Cause("dave"))
        assert replica.audit.log.of(outcome.profile_id)[0].position == head + 1
    finally:
        replica.close()


def test_an_export_resumed_after_its_last_position_completes_it(source: Container, tmp_path: Path) -> None:
    container = source
    source_url = container.settings.database_url
    assert source_url
    a_story(container, "three")
    first_page = tmp_path / "first.ndjson"
    first = run_in_process(source_url, "export", "--out", str(first_page))
    assert first.exit_code == 0, first.output
    resume_at = last_position(first.stdout)
    assert resume_at == container.audit.log.head()

    a_story(container, "four")  # more events arrive
    rest = tmp_path / "rest.ndjson"
    second = run_in_process(source_url, "export", "--out", str(rest), "--after", str(resume_at))
    assert second.exit_code == 0, second.output
    assert last_position(second.stdout) == container.audit.log.head()
    everything = tmp_path / "all.ndjson"
    assert run_in_process(source_url, "export", "--out", str(everything)).exit_code == 0

    assert first_page.read_bytes() + rest.read_bytes() == everything.read_bytes()
    positions = [json.loads(line)["position"] for line in rest.read_text().splitlines()]
    assert positions and positions[0] == resume_at + 1 and positions == sorted(set(positions))

    empty = tmp_path / "empty.ndjson"
    nothing = run_in_process(
        source_url, "export", "--out", str(empty), "--after", str(container.audit.log.head())
    )
    assert nothing.exit_code == 0 and empty.read_bytes() == b""
    assert last_position(nothing.stdout) == container.audit.log.head()
