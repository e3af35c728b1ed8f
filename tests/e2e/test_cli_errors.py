"""Every command answers a database it cannot use, and an event it cannot
decode, with one `error: …` line and exit status 2 (or, for export, the event
written as stored with a marker), never a traceback."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from domain.service import Cause
from infrastructure.container import build
from infrastructure.settings import Settings
from tests.support.databases import create_database, drop_database
from tests.support.service import CLI, ROOT, free_port, service_env

pytestmark = pytest.mark.postgres

COMMANDS = [
    ("migrate",),
    ("verify",),
    ("rebuild",),
    ("export", "--out", "/dev/null"),
    ("accounts", "create", "Nobody"),
    ("project",),
    ("serve", "--port", "0"),
]


def run(database_url: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        env=service_env(database_url, DB_CONNECT_TIMEOUT="3"),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr[-3000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_a_missing_database_is_one_line(pg_server_url: str, args: tuple[str, ...]) -> None:
    missing = make_conninfo(pg_server_url, dbname=f"rp_missing_{uuid.uuid4().hex[:8]}")
    line = one_error(run(missing, *args))
    name = conninfo_to_dict(missing)["dbname"]
    assert f'database "{name}" does not exist' in line
    assert f"racer-profiles psql -c 'CREATE DATABASE \"{name}\"'" in line


@pytest.mark.parametrize("args", COMMANDS[:3], ids=lambda a: a[0])
def test_an_unreachable_server_and_an_unknown_user_are_one_line(
    pg_server_url: str, args: tuple[str, ...]
) -> None:
    unreachable = make_conninfo(pg_server_url, host="127.0.0.1", port=str(free_port()))
    assert "Connection refused" in one_error(run(unreachable, *args))
    stranger = make_conninfo(pg_server_url, user=f"nobody_{uuid.uuid4().hex[:6]}")
    assert "does not exist" in one_error(run(stranger, *args))


@pytest.fixture
def undecodable(pg_server_url: str) -> Iterator[tuple[str, int]]:
    """A database whose first command's last event names a class that does not exist
    (a bad deploy, say), with the events of a second command after it."""
    url = create_database(pg_server_url, "rp_e2e")
    container = build(Settings(database_url=url, api_threads=1))
    try:
        position = container.app.create_profile("acct", "Ann", [], Cause("acct")).position
        container.app.create_profile("acct", "Bo", [], Cause("acct"))
        table = container.app.recorder.events_table_name  # type: ignore[attr-defined]
    finally:
        container.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"UPDATE {table} SET topic = 'nowhere:Gone' WHERE notification_id = %s", (position,))
    try:
        yield url, position
    finally:
        drop_database(pg_server_url, url)


def test_export_writes_an_undecodable_event_as_stored_and_goes_on(
    undecodable: tuple[str, int], tmp_path: Path
) -> None:
    url, bad = undecodable
    out = tmp_path / "log.ndjson"
    result = run(url, "export", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"warning: the event at position {bad} cannot be decoded" in result.stderr
    assert "Traceback" not in result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    (raw,) = [r for r in records if r["position"] == bad]
    assert raw["topic"] == "nowhere:Gone" and "undecodable" in raw
    assert base64.b64decode(raw["stored_state"])  # the stored bytes, for replay
    assert records[-1]["position"] > bad  # the export went on past it
    assert all("undecodable" not in r for r in records if r["position"] != bad)


def test_rebuild_stops_at_an_undecodable_event_naming_it(undecodable: tuple[str, int]) -> None:
    url, bad = undecodable
    line = one_error(run(url, "rebuild"))
    assert line.startswith(f"error: rebuild stopped at position {bad}:")
    assert f"export --after {bad - 1}" in line


def test_replay_creates_its_target_database(pg_server_url: str, tmp_path: Path) -> None:
    source = create_database(pg_server_url, "rp_e2e")
    target = make_conninfo(pg_server_url, dbname=f"rp_replay_{uuid.uuid4().hex[:8]}")
    try:
        container = build(Settings(database_url=source, api_threads=1))
        try:
            container.app.create_profile("acct", "Ann", [], Cause("acct"))
        finally:
            container.close()
        log = tmp_path / "log.ndjson"
        assert run(source, "export", "--out", str(log)).returncode == 0
        replayed = run(source, "replay", str(log), "--into", target)
        assert replayed.returncode == 0, replayed.stderr[-3000:]
        assert replayed.stdout.startswith(f"created the database {conninfo_to_dict(target)['dbname']}\n")
        assert run(target, "rebuild").returncode == 0
        verified = run(target, "verify")
        assert verified.returncode == 0 and verified.stdout.startswith("ok:"), verified.stdout
    finally:
        drop_database(pg_server_url, target)
        drop_database(pg_server_url, source)
