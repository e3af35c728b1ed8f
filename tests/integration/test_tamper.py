"""Tamper evidence: events edited, deleted or reordered directly in PostgreSQL
are named by verify (verify_store and `racer-profiles verify`), and
`verify --checkpoint` digests change with them.

The clean-store test has a database of its own; the tampering tests share one
(each in accounts of its own, so each names only what it broke)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.utils import _topic_cache as topic_cache
from typer.testing import CliRunner

from api.cli import cli
from domain.chain import event_digest
from domain.profile import RacerProfile
from domain.roster import roster_id
from domain.service import Cause
from domain.upcasting import DEFAULTS
from infrastructure.chain_check import chain_problems, checkpoint
from infrastructure.container import Container
from infrastructure.sealing import is_sealed
from tests.support.operations import verify_store

EVENTS = "racerprofiles_events"
CHECKPOINT = re.compile(r"^checkpoint position=(\d+) sha256=([0-9a-f]{64})$")


@pytest.fixture(scope="module")
def tampered(module_container: Container) -> Container:
    return module_container


@pytest.fixture
def acc() -> str:
    return f"acc-{uuid.uuid4().hex[:12]}"


def caught_up(c: Container) -> None:
    c.view.wait(c.app.name, c.audit.log.head(), timeout=10)


def some_history(c: Container, acc: str) -> tuple[UUID, UUID]:
    """p1: Created, Renamed, Renamed, VehicleAdded, Renamed; p2: Created, Renamed;
    the roster: Created, MemberAdded, DefaultChanged, MemberAdded, DefaultChanged."""
    p1 = c.app.create_profile(acc, "Ann", [], Cause("alice", "signup", "r1")).profile_id
    p2 = c.app.create_profile(acc, "Bob", [], Cause("bob", None, "r2")).profile_id
    c.app.rename(acc, p1, "Anna", Cause("alice", None, "r3"))
    c.app.rename(acc, p1, "Annie", Cause("alice", None, "r4"))
    c.app.set_default(acc, p2, Cause("bob", "mine", "r5"))
    c.app.add_vehicle(acc, p1, {"name": "Kart"}, Cause("alice", None, "r6"))
    c.app.rename(acc, p1, "Annabel", Cause("alice", None, "r7"))
    c.app.rename(acc, p2, "Bobby", Cause("bob", None, "r8"))
    caught_up(c)
    return p1, p2


def run_cli(c: Container, *args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), env={"DATABASE_URL": c.settings.database_url})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def cli_checkpoint(c: Container, *args: str) -> tuple[int, str]:
    result = run_cli(c, "verify", "--checkpoint", *args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("checkpoint")]
    assert len(lines) == 1, result.stdout
    match = CHECKPOINT.match(lines[0])
    assert match, lines[0]
    return int(match.group(1)), match.group(2)


def sql(c: Container) -> psycopg.Connection[Any]:
    assert c.settings.database_url
    return psycopg.connect(c.settings.database_url, autocommit=True)


def read_state(conn: psycopg.Connection[Any], aggregate: UUID, version: int) -> dict[str, Any]:
    row = conn.execute(
        f"SELECT state FROM {EVENTS} WHERE originator_id = %s AND originator_version = %s",
        (aggregate, version),
    ).fetchone()
    assert row is not None
    return json.loads(bytes(row[0]))  # type: ignore[no-any-return]


def write_state(conn: psycopg.Connection[Any], aggregate: UUID, version: int, state: dict[str, Any]) -> None:
    done = conn.execute(
        f"UPDATE {EVENTS} SET state = %s WHERE originator_id = %s AND originator_version = %s",
        (json.dumps(state, separators=(",", ":")).encode(), aggregate, version),
    )
    assert done.rowcount == 1


def assert_named(problems: list[str], aggregate: UUID, versions: tuple[int, ...]) -> None:
    named = [p for p in problems if str(aggregate) in p]
    assert named, problems
    assert any(re.search(rf"\bversion ({'|'.join(map(str, versions))})\b", p) for p in named), named


def assert_cli_names(c: Container, aggregate: UUID, versions: tuple[int, ...]) -> None:
    result = run_cli(c, "verify")
    assert result.exit_code == 1, result.output
    assert_named(result.stdout.splitlines(), aggregate, versions)


# --- an untouched store ----------------------------------------------------------


def test_an_untouched_store_passes_and_its_checkpoint_is_stable(container: Container, acc: str) -> None:
    c = container
    some_history(c, acc)
    assert chain_problems(c.audit.log) == []
    assert verify_store(c) == []
    result = run_cli(c, "verify")
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout

    head = c.audit.log.head()
    first = cli_checkpoint(c)
    assert first[0] == head
    assert checkpoint(c.audit.log) == first
    assert checkpoint(c.audit.log, head) == first

    # Events appended after P do not change the checkpoint up to P.
    upto = head - 3
    at_p = cli_checkpoint(c, "--upto", str(upto))
    assert at_p[0] == upto and at_p[1] != first[1]
    first_profile = next(r.id for r in c.queries.all_rows() if r.account_id == acc)
    c.app.rename(acc, first_profile, "Later", Cause("carol"))
    c.app.create_profile(acc, "Newcomer", [], Cause("carol"))
    caught_up(c)
    assert cli_checkpoint(c, "--upto", str(upto)) == at_p
    assert checkpoint(c.audit.log, head) == first
    latest = checkpoint(c.audit.log)
    assert latest[0] > head and latest[1] != first[1]
    assert verify_store(c) == []


# --- (a) edited events -----------------------------------------------------------


def test_edited_events_are_named_by_aggregate_and_version(tampered: Container, acc: str) -> None:
    c = tampered
    p1, p2 = some_history(c, acc)
    roster = roster_id(acc)
    before = cli_checkpoint(c)
    with sql(c) as conn:
        # p1 version 2: another name inside the JSON (stored sealed), hash untouched.
        state = read_state(conn, p1, 2)
        assert is_sealed(state["name"])
        state["name"] = "Mallory"
        write_state(conn, p1, 2, state)
        # p2 version 1: another name, and the forger recomputes the event's own
        # hash, so only the link from version 2 gives it away.
        state = read_state(conn, p2, 1)
        state["name"] = "Forged"
        digest_state = {**state, "originator_id": p2, "originator_version": 1}
        digest_state["timestamp"] = c.audit.log.decode(c.audit.log.of(p2)[0]).timestamp
        state["event_hash"] = event_digest("domain.profile:RacerProfile.Created", digest_state)
        write_state(conn, p2, 1, state)
        # the roster's default change to p2: the actor rewritten.
        state = read_state(conn, roster, 5)
        assert state["new"] == str(p2)
        state["actor"] = "someone-else"
        write_state(conn, roster, 5, state)

    problems = verify_store(c)
    assert_named(problems, p1, (2,))
    assert_named(problems, p2, (1, 2))
    assert_named(problems, roster, (5,))
    assert_cli_names(c, p1, (2,))
    assert_cli_names(c, roster, (5,))
    after = cli_checkpoint(c)
    assert after[0] == before[0] and after[1] != before[1]


def test_an_edited_last_event_with_a_recomputed_hash_changes_the_checkpoint(
    tampered: Container, acc: str
) -> None:
    """The chain cannot see a consistent rewrite of an aggregate's newest
    event; the checkpoint kept outside the database does."""
    c = tampered
    p1, _ = some_history(c, acc)
    before = checkpoint(c.audit.log)
    last = c.audit.log.of(p1)[-1]
    event = c.audit.log.decode(last)
    with sql(c) as conn:
        state = read_state(conn, p1, last.version)
        state["name"] = "Rewritten"
        digest_state = {
            **state,
            "originator_id": p1,
            "originator_version": last.version,
            "timestamp": event.timestamp,
        }
        state["event_hash"] = event_digest(last.stored.topic, digest_state)
        write_state(conn, p1, last.version, state)
    assert not [p for p in chain_problems(c.audit.log) if str(p1) in p]
    after = checkpoint(c.audit.log)
    assert after[0] == before[0] and after[1] != before[1]


# --- (b) a deleted event ---------------------------------------------------------


def test_a_deleted_event_in_the_middle_is_named(tampered: Container, acc: str) -> None:
    c = tampered
    p1, p2 = some_history(c, acc)
    before = checkpoint(c.audit.log)
    with sql(c) as conn:
        deleted = conn.execute(
            f"DELETE FROM {EVENTS} WHERE originator_id = %s AND originator_version = 3", (p1,)
        )
        assert deleted.rowcount == 1
    problems = verify_store(c)
    assert_named(problems, p1, (3, 4))
    assert not [p for p in problems if str(p2) in p]
    assert_cli_names(c, p1, (3, 4))
    after = checkpoint(c.audit.log)
    assert after[1] != before[1]


# --- (c) reordered events --------------------------------------------------------


def test_swapped_versions_of_two_events_are_named(tampered: Container, acc: str) -> None:
    c = tampered
    p1, _ = some_history(c, acc)
    before = checkpoint(c.audit.log)
    with sql(c) as conn, conn.transaction():
        update = f"UPDATE {EVENTS} SET originator_version = %s WHERE originator_id = %s AND originator_version = %s"
        conn.execute(update, (-1, p1, 2))
        conn.execute(update, (2, p1, 3))
        conn.execute(update, (3, p1, -1))
    now_second = next(e for e in c.audit.log.of(p1) if e.version == 2)
    assert c.audit.log.decode(now_second).name == "Annie"  # really swapped
    problems = verify_store(c)
    assert_named(problems, p1, (2,))
    assert_cli_names(c, p1, (2,))
    after = checkpoint(c.audit.log)
    assert after[0] == before[0] and after[1] != before[1]


# --- (d) a schema change is not tampering ----------------------------------------

CREATED_TOPIC = "domain.profile:RacerProfile.Created"


class CreatedWithNicknameV2(RacerProfile.Created):
    """RacerProfile.Created after a schema change: a new field, upcast by the
    library's class_version mechanism."""

    class_version = 2
    nickname: str = ""

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["nickname"] = "(none)"


class CreatedWithNicknameDefault(RacerProfile.Created):
    """The same change, upcast by the project's UpcastingMapper defaults."""

    nickname: str = ""


def add_nickname(how: str, monkeypatch: pytest.MonkeyPatch) -> type:
    """From now on stored Created events decode into a class with one more field."""
    new_class: type = CreatedWithNicknameV2
    if how == "mapper_default":
        new_class = CreatedWithNicknameDefault
        monkeypatch.setitem(DEFAULTS, "nickname", "(none)")
    monkeypatch.setitem(topic_cache, CREATED_TOPIC, new_class)
    return new_class


@pytest.mark.parametrize("how", ["class_version", "mapper_default"])
def test_a_field_added_with_an_upcast_default_keeps_verify_passing_and_edits_still_fail(
    container: Container, acc: str, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    c = container
    p1, p2 = some_history(c, acc)
    assert run_cli(c, "verify").exit_code == 0

    new_class = add_nickname(how, monkeypatch)
    created: Any = c.audit.log.decode(c.audit.log.of(p1)[0])
    assert type(created) is new_class and created.nickname == "(none)"  # really upcast
    assert chain_problems(c.audit.log) == []
    result = run_cli(c, "verify")
    assert result.exit_code == 0, result.output

    with sql(c) as conn:
        state = read_state(conn, p2, 1)
        state["name"] = "Mallory"
        write_state(conn, p2, 1, state)
    assert_named(chain_problems(c.audit.log), p2, (1,))
    assert_cli_names(c, p2, (1,))
