"""import-legacy against real legacy schemas, each built in a fresh database.

After every import the store must verify clean (events, invariant and read
table agree) and the account must have exactly one default among its active
profiles."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.sql import SQL

from api.legacy_report import format_report
from domain.chain import GENESIS, event_digest
from domain.profile import ERASED
from domain.roster import Roster, roster_id
from domain.service import Cause
from infrastructure.container import Container
from infrastructure.legacy_import import ImportReport, LegacyImportError, import_legacy
from infrastructure.legacy_plan import legacy_profile_id
from tests.support.databases import temporary_database
from tests.support.operations import verify_store

SAMPLE_SCHEMA = Path(__file__).parents[1] / "fixtures" / "legacy_schema.sql"
CLI = Path(sys.executable).parent / "racer-profiles"

# The sample's profiles 1-3 are valid; 4 has a blank name; vehicle 6 is an orphan.
SAMPLE_VEHICLES = {
    1: [("Rotax Max Senior", "Senior Max", "42"), ("Spare chassis", None, None)],
    2: [("Formula Ford 1600", "FF1600", "7")],
    3: [("Mazda MX-5", "Cup", "23")],
}


# --- fixtures and helpers ------------------------------------------------


@pytest.fixture
def legacy_url(pg_server_url: str) -> Iterator[str]:
    with temporary_database(pg_server_url, "rp_legacy") as url:
        yield url


@pytest.fixture
def account(container: Container) -> str:
    return str(container.accounts.create("Dashboard racers").account_id)


def sql(url: str, statement: str, params: tuple[Any, ...] | None = None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement, params)


def load_sample(url: str) -> None:
    sql(url, SAMPLE_SCHEMA.read_text())


def legacy_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
            for table in ("racer_profiles", "vehicles")
        }


def head(container: Container) -> int:
    return container.app.recorder.max_notification_id() or 0


def pid(account: str, legacy_id: Any) -> UUID:
    return legacy_profile_id(account, legacy_id)


def exists(container: Container, profile_id: UUID) -> bool:
    return bool(container.app.recorder.select_events(profile_id))


def vehicles_of(container: Container, profile_id: UUID) -> list[tuple[Any, ...]]:
    profile = container.app.get_profile(profile_id)
    return [(v["name"], v["vehicle_class"], v["race_number"]) for v in profile.vehicles]


def default_events(container: Container, account: str) -> list[Any]:
    return [
        e
        for e in container.app.repository.event_store.get(roster_id(account))
        if isinstance(e, Roster.DefaultChanged)
    ]


def check_store(container: Container, account: str) -> Roster:
    """verify is clean and the account has exactly one default, an active profile."""
    assert verify_store(container) == []
    roster = container.app.get_roster(account)
    assert roster is not None and roster.members
    assert roster.default in roster.members
    rows = [r for r in container.queries.all_rows() if r.account_id == account]
    assert sorted(str(r.id) for r in rows if not r.archived) == sorted(roster.members)
    assert [str(r.id) for r in rows if r.is_default] == [roster.default]
    return roster


def run(container: Container, url: str, account: str, **kwargs: Any) -> ImportReport:
    report = import_legacy(container.app, container.accounts, url, account, **kwargs)
    format_report(report)  # always printable
    return report


# --- the sample schema -----------------------------------------------------


def test_the_sample_schema_is_imported_with_vehicles_details_and_the_marked_default(
    container: Container, legacy_url: str, account: str
) -> None:
    load_sample(legacy_url)
    before = legacy_rows(legacy_url)

    report = run(container, legacy_url, account)

    assert report.created == [pid(account, 1), pid(account, 2), pid(account, 3)]
    assert [(b.table, b.legacy_id) for b in report.bad_rows] == [("racer_profiles", 4), ("vehicles", 6)]
    assert "name must not be blank" in report.bad_rows[0].reason
    assert "profile_id 9 is not a profile" in report.bad_rows[1].reason
    assert not exists(container, pid(account, 4))
    for legacy_id, vehicles in SAMPLE_VEHICLES.items():
        assert vehicles_of(container, pid(account, legacy_id)) == vehicles
    alex = container.app.get_profile(pid(account, 1))
    assert (alex.name, alex.account_id) == ("Alex Rivera", account)
    assert alex.details == {
        "home_track": "Silverstone",
        "team": "Apex Karting",
        "skill_rating": 7.5,
        "newsletter": True,
    }
    assert container.app.get_profile(pid(account, 3)).details["skill_rating"] is None
    assert report.unused_columns == ["vehicles.colour"]

    roster = check_store(container, account)
    assert roster.default == str(pid(account, 2))
    last = default_events(container, account)[-1]
    assert (last.actor, last.new) == ("import", str(pid(account, 2)))
    assert "legacy profile 2 is the only row marked is_default" in last.reason
    for legacy_id in (1, 2, 3):
        events = list(container.app.repository.event_store.get(pid(account, legacy_id)))
        assert {e.actor for e in events} == {"import"}

    lines = format_report(report)
    assert 'default: legacy profile 2 "Sam Okafor" (' + str(pid(account, 2)) + "): set" in lines
    assert "  reason: legacy profile 2 is the only row marked is_default" in lines
    assert "  profile 4: name must not be blank (skipped with its 1 vehicle)" in lines
    assert "  vehicle 6: profile_id 9 is not a profile in racer_profiles" in lines
    assert legacy_rows(legacy_url) == before


def test_a_second_run_writes_nothing(container: Container, legacy_url: str, account: str) -> None:
    load_sample(legacy_url)
    run(container, legacy_url, account)
    position = head(container)

    again = run(container, legacy_url, account)

    assert head(container) == position
    assert (again.created, again.to_create, again.to_add, again.vehicles_added) == ([], [], [], 0)
    assert again.already_imported == [1, 2, 3]
    assert not again.events_written
    assert again.default is not None and again.default.outcome == "already the default"
    assert "nothing written: the account is up to date" in format_report(again)
    check_store(container, account)


def test_a_re_run_never_brings_an_erased_profile_back(
    container: Container, legacy_url: str, account: str
) -> None:
    load_sample(legacy_url)
    run(container, legacy_url, account)
    erased = pid(account, 1)
    container.app.erase(account, erased, Cause("owner"))
    # A vehicle added to the erased person's legacy row later changes nothing either.
    sql(
        legacy_url,
        "INSERT INTO vehicles (id, profile_id, name, class, number) VALUES (8, 1, 'Rain kart', NULL, 43)",
    )
    position = head(container)

    again = run(container, legacy_url, account)

    assert head(container) == position
    assert (again.created, again.to_create, again.to_add) == ([], [], [])
    assert any("was erased in racer-profiles" in w for w in again.warnings), again.warnings
    profile = container.app.get_profile(erased)
    assert profile.erased and profile.name == ERASED
    container.view.wait(container.app.name, position, timeout=10)
    assert verify_store(container) == []


def test_rows_added_to_the_legacy_tables_later_are_imported_by_the_next_run(
    container: Container, legacy_url: str, account: str
) -> None:
    load_sample(legacy_url)
    run(container, legacy_url, account)
    sql(
        legacy_url,
        "INSERT INTO racer_profiles (id, name, created_at, updated_at)"
        " VALUES (5, 'Kim Tanaka', '2024-03-03', '2024-03-04')",
    )
    sql(
        legacy_url,
        "INSERT INTO vehicles (id, profile_id, name, class, number) VALUES"
        " (7, 5, 'Radical SR1', 'SR1', 11), (8, 1, 'Rain kart', NULL, 43)",
    )

    report = run(container, legacy_url, account)

    assert report.created == [pid(account, 5)]
    assert report.vehicles_added == 1
    assert vehicles_of(container, pid(account, 5)) == [("Radical SR1", "SR1", "11")]
    assert vehicles_of(container, pid(account, 1)) == [*SAMPLE_VEHICLES[1], ("Rain kart", None, "43")]
    roster = check_store(container, account)
    assert roster.default == str(pid(account, 2))  # still the row marked is_default

    position = head(container)
    third = run(container, legacy_url, account)
    assert head(container) == position
    assert (third.created, third.to_add) == ([], [])


def as_written_before_source_existed(container: Container, profile_id: UUID) -> None:
    """Rewrites a profile's stored events into the form an import wrote before
    events had a `source`: without the field, each hash taken again over what is
    stored and the chain linked again, as the service then stored them."""
    log, mapper = container.audit.log, container.app.mapper
    prev = GENESIS
    with container.app.recorder.datastore.transaction(commit=True) as curs:
        for logged in log.of(profile_id):
            state = mapper.stored_state(logged.stored)  # type: ignore[attr-defined]
            state.pop("source", None)
            state["prev_hash"] = prev
            state["event_hash"] = prev = event_digest(logged.stored.topic, state)
            del state["originator_id"], state["originator_version"]
            curs.execute(
                SQL("UPDATE {} SET state = %s WHERE originator_id = %s AND originator_version = %s").format(
                    log.table
                ),
                (mapper.transcoder.encode(state), profile_id, logged.version),
            )
    if container.app.repository.cache is not None:  # the cached aggregate holds the old chain head
        with contextlib.suppress(KeyError):
            container.app.repository.cache.get(profile_id, evict=True)


def test_provenance_is_recorded_as_event_data_and_read_back_from_old_events_too(
    container: Container, legacy_url: str, account: str
) -> None:
    load_sample(legacy_url)
    run(container, legacy_url, account)
    alex = pid(account, 1)
    created = next(iter(container.app.repository.event_store.get(alex)))
    assert created.source == {"legacy_profile": 1, "legacy_vehicles": [1, 2]}
    assert created.reason == "legacy import: profile 1, vehicles [1, 2]"  # for auditors, as before

    # A store filled by an import before events had a source: its ids are only in the reasons.
    for legacy_id in (1, 2, 3):
        as_written_before_source_existed(container, pid(account, legacy_id))
    old = list(container.app.repository.event_store.get(alex))
    assert [e.source for e in old] == [None]
    assert verify_store(container) == []
    sql(
        legacy_url,
        "INSERT INTO vehicles (id, profile_id, name, class, number) VALUES (8, 1, 'Rain kart', NULL, 43)",
    )

    report = run(container, legacy_url, account)

    assert (report.created, report.already_imported) == ([], [1, 2, 3])
    assert [(v.legacy_id, v.profile_id) for v in report.to_add] == [(8, alex)]
    assert vehicles_of(container, alex) == [*SAMPLE_VEHICLES[1], ("Rain kart", None, "43")]
    added = list(container.app.repository.event_store.get(alex))[-1]
    assert (added.source, added.reason) == (
        {"legacy_profile": 1, "legacy_vehicle": 8},
        "legacy import: vehicle 8 of profile 1",
    )
    position = head(container)
    assert run(container, legacy_url, account).to_add == []  # old and new events alike
    assert head(container) == position
    container.view.wait(container.app.name, position, timeout=10)
    check_store(container, account)


def test_a_dry_run_prints_the_plan_and_writes_nothing(
    container: Container, legacy_url: str, account: str
) -> None:
    load_sample(legacy_url)

    plan = run(container, legacy_url, account, dry_run=True)

    assert head(container) == 0
    assert container.app.get_roster(account) is None
    assert not any(exists(container, pid(account, i)) for i in (1, 2, 3, 4))
    assert [p.legacy_id for p in plan.to_create] == [1, 2, 3]
    assert plan.vehicles_to_create == 4
    assert [b.legacy_id for b in plan.bad_rows] == [4, 6]
    assert plan.default is not None
    assert (plan.default.legacy_id, plan.default.outcome) == (2, "would be set")
    lines = format_report(plan)
    assert (
        "plan: 3 new profiles with 4 vehicles, 0 new vehicles for profiles imported before;"
        " 0 profiles already imported" in lines
    )
    assert lines[-1] == "dry run: nothing written"

    # A dry run over an imported account, with a new row waiting, writes nothing either.
    run(container, legacy_url, account)
    sql(legacy_url, "INSERT INTO racer_profiles (id, name, created_at) VALUES (5, 'Kim', now())")
    position = head(container)
    plan = run(container, legacy_url, account, dry_run=True)
    assert head(container) == position
    assert [p.legacy_id for p in plan.to_create] == [5]
    assert not exists(container, pid(account, 5))
    check_store(container, account)


# --- choosing the default --------------------------------------------------


@pytest.mark.parametrize(
    ("marked", "updated", "expected", "reason"),
    [
        pytest.param(
            [],
            {},
            1,
            "no row is marked is_default; legacy profile 1 is the most recently updated",
            id="zero-marked",
        ),
        pytest.param([3], {}, 3, "legacy profile 3 is the only row marked is_default", id="one-marked"),
        pytest.param(
            [2, 3],
            {3: "2024-06-01"},
            3,
            "2 rows are marked is_default (2, 3); chose 3, the most recently updated of them",
            id="two-marked-by-update",
        ),
        pytest.param(
            [2, 3],
            {2: None, 3: None},
            2,
            "2 rows are marked is_default (2, 3); chose 2, the earliest created of them",
            id="two-marked-none-updated",
        ),
    ],
)
def test_the_default_follows_the_is_default_column(
    container: Container,
    legacy_url: str,
    account: str,
    marked: list[int],
    updated: dict[int, str | None],
    expected: int,
    reason: str,
) -> None:
    load_sample(legacy_url)
    sql(legacy_url, "UPDATE racer_profiles SET is_default = (id = ANY(%s))", (marked,))
    for legacy_id, when in updated.items():
        sql(legacy_url, "UPDATE racer_profiles SET updated_at = %s WHERE id = %s", (when, legacy_id))

    report = run(container, legacy_url, account)

    roster = check_store(container, account)
    assert roster.default == str(pid(account, expected))
    assert report.default is not None and report.default.reason.startswith(reason)
    assert reason in default_events(container, account)[-1].reason
    two = [w for w in report.warnings if "marked is_default:" in w]
    if len(marked) == 2:
        assert two == [f"2 legacy profiles are marked is_default: 2, 3; only {expected} becomes the default"]
        assert f"warning: {two[0]}" in format_report(report)
    else:
        assert two == []


def test_without_is_default_the_most_recently_updated_profile_is_the_default(
    container: Container, legacy_url: str, account: str
) -> None:
    load_sample(legacy_url)
    sql(legacy_url, "ALTER TABLE racer_profiles DROP COLUMN is_default")

    report = run(container, legacy_url, account)

    assert not report.has_is_default
    roster = check_store(container, account)
    assert roster.default == str(pid(account, 1))  # updated 2024-05-10, the latest
    event = default_events(container, account)[-1]
    assert event.actor == "import"
    assert "no is_default column; legacy profile 1 is the most recently updated" in event.reason


def test_without_is_default_or_updated_at_the_earliest_created_profile_is_the_default(
    container: Container, legacy_url: str, account: str
) -> None:
    load_sample(legacy_url)
    sql(legacy_url, "ALTER TABLE racer_profiles DROP COLUMN is_default, DROP COLUMN updated_at")
    sql(legacy_url, "UPDATE racer_profiles SET created_at = '2022-12-24' WHERE id = 3")

    report = run(container, legacy_url, account)

    assert report.created == [pid(account, 3), pid(account, 1), pid(account, 2)]  # created order
    roster = check_store(container, account)
    assert roster.default == str(pid(account, 3))
    assert roster.earliest_member() == str(pid(account, 3))
    # The default came with the first profile's join; that event carries the reason.
    (event,) = default_events(container, account)
    assert event.actor == "import"
    assert (
        "no is_default column and no updated_at column; legacy profile 3 is the earliest created"
        in event.reason
    )
    assert report.default is not None and report.default.outcome == "set"


def test_a_default_the_user_chose_since_is_never_overridden(
    container: Container, legacy_url: str, account: str
) -> None:
    load_sample(legacy_url)
    run(container, legacy_url, account)
    container.app.set_default(account, pid(account, 3), Cause(account, "I race the MX-5 now"))
    sql(legacy_url, "UPDATE racer_profiles SET is_default = false")
    sql(
        legacy_url,
        "INSERT INTO racer_profiles (id, name, created_at, updated_at, is_default)"
        " VALUES (5, 'Kim Tanaka', now(), now(), true)",
    )

    report = run(container, legacy_url, account)

    assert report.created == [pid(account, 5)]
    roster = check_store(container, account)
    assert roster.default == str(pid(account, 3))
    assert report.default is not None and report.default.legacy_id == 5
    assert report.default.outcome.startswith("not applied")
    assert f"chosen by {account}; kept" in report.default.outcome


def test_an_import_that_stopped_half_way_is_completed_by_the_next_run(
    container: Container, legacy_url: str, account: str
) -> None:
    load_sample(legacy_url)
    # What the first step of an interrupted run left: profile 1 with its vehicles.
    container.app.create_profile(
        account,
        "Alex Rivera",
        [
            {"name": "Rotax Max Senior", "vehicle_class": "Senior Max", "race_number": "42"},
            {"name": "Spare chassis"},
        ],
        Cause("import", "legacy import: profile 1, vehicles [1, 2]"),
        profile_id=pid(account, 1),
    )

    report = run(container, legacy_url, account)

    assert report.created == [pid(account, 2), pid(account, 3)]
    assert report.vehicles_added == 0  # vehicles 1 and 2 came with profile 1
    assert vehicles_of(container, pid(account, 1)) == SAMPLE_VEHICLES[1]
    roster = check_store(container, account)
    assert roster.default == str(pid(account, 2))
    assert report.default is not None and report.default.outcome == "set"


# --- bad rows and odd schemas -------------------------------------------------


def test_bad_rows_are_reported_by_id_and_skipped_whole(
    container: Container, legacy_url: str, account: str
) -> None:
    sql(
        legacy_url,
        """
        CREATE TABLE racer_profiles (id integer, name text, created_at timestamp, is_default boolean);
        CREATE TABLE vehicles (id integer, profile_id integer, name text, vehicle_class text,
                               race_number text);
        INSERT INTO racer_profiles VALUES
            (10, 'Good', '2024-01-01', false),
            (11, '', '2024-01-02', true),
            (12, NULL, '2024-01-03', false),
            (13, 'Bad race number', '2024-01-04', false),
            (14, repeat('x', 81), '2024-01-05', false),
            (15, 'Blank vehicle name', '2024-01-06', false),
            (16, 'Twin', '2024-01-07', false),
            (16, 'Twin again', '2024-01-08', false),
            (17, 'Also good', '2024-01-09', false);
        INSERT INTO vehicles VALUES
            (100, 10, 'Kart', '', ' '),
            (101, 13, 'Fine car', NULL, '8'),
            (102, 13, 'Bad car', NULL, '#7'),
            (103, 15, '   ', NULL, NULL),
            (104, 99, 'Orphan', NULL, NULL),
            (105, NULL, 'Nobody''s', NULL, NULL),
            (106, 17, 'Classy', repeat('c', 41), NULL);
    """,
    )

    report = run(container, legacy_url, account)

    assert report.created == [pid(account, 10)]
    assert vehicles_of(container, pid(account, 10)) == [("Kart", None, None)]  # blanks are absent
    reasons = {(b.table, b.legacy_id): b.reason for b in report.bad_rows}
    assert reasons == {
        ("racer_profiles", 11): "name must not be blank",
        ("racer_profiles", 12): "name is missing",
        ("racer_profiles", 13): "vehicle 102 race_number must contain only ASCII letters and digits"
        " (skipped with its 2 vehicles)",
        ("racer_profiles", 14): "name must be at most 80 characters after trimming",
        ("racer_profiles", 15): "vehicle 103 name must not be blank (skipped with its 1 vehicle)",
        ("racer_profiles", 16): "id appears 2 times in racer_profiles",
        ("racer_profiles", 17): "vehicle 106 vehicle_class must be at most 40 characters after trimming"
        " (skipped with its 1 vehicle)",
        ("vehicles", 104): "profile_id 99 is not a profile in racer_profiles",
        ("vehicles", 105): "has no profile_id",
    }
    for legacy_id in (11, 12, 13, 14, 15, 16, 17):
        assert not exists(container, pid(account, legacy_id))
    assert "marked is_default but skipped as a bad row: profile 11" in report.warnings
    roster = check_store(container, account)
    assert set(roster.members) == {str(pid(account, 10))}
    lines = format_report(report)
    assert "problems: 9 bad rows skipped, none of them written" in lines
    assert (
        "  profile 13: vehicle 102 race_number must contain only ASCII letters and digits"
        " (skipped with its 2 vehicles)" in lines
    )

    # Fixed in the legacy database, the row comes in with the next run.
    sql(legacy_url, "UPDATE vehicles SET race_number = '7' WHERE id = 102")
    again = run(container, legacy_url, account)
    assert again.created == [pid(account, 13)]
    assert vehicles_of(container, pid(account, 13)) == [("Fine car", None, "8"), ("Bad car", None, "7")]
    check_store(container, account)


def test_text_ids_odd_column_types_and_no_vehicles_table(
    container: Container, legacy_url: str, account: str
) -> None:
    extra = ", ".join(f"c{i:02d} integer DEFAULT {i}" for i in range(16))
    sql(
        legacy_url,
        f"""
        CREATE TABLE racer_profiles (
            id text PRIMARY KEY, name text NOT NULL, created_at date NOT NULL,
            updated_at timestamp, is_default text,
            fee numeric(8,2), big bigint, bio text, prefs jsonb, born date, avatar bytea,
            nickname text, {extra});
        INSERT INTO racer_profiles
            (id, name, created_at, updated_at, is_default, fee, big, bio, prefs, born, avatar, nickname)
        VALUES
            ('r-a', ' Ana ', '2020-01-01', NULL, 'no', 12.50, 1152921504606846976,
             E'fast\\nand\\tsteady', '{{"seat": "low"}}', '1990-02-03', '\\x00ff', '  '),
            ('r-b', 'Ben', '2021-01-01', '2021-06-01', 'YES', NULL, 5, repeat('b', 250), NULL, NULL,
             NULL, 'Benny');
    """,
    )

    report = run(container, legacy_url, account)

    assert not report.has_vehicles_table
    assert report.created == [pid(account, "r-a"), pid(account, "r-b")]
    ana = container.app.get_profile(pid(account, "r-a"))
    assert ana.name == "Ana"
    assert len(report.detail_columns) == 20  # 23 extra columns; the first 20 are kept
    assert report.unused_columns == ["racer_profiles.c13", "racer_profiles.c14", "racer_profiles.c15"]
    assert ana.details == {
        "fee": 12.5,
        "big": "1152921504606846976",
        "bio": "fast and steady",
        "prefs": '{"seat":"low"}',
        "born": "1990-02-03",
        "avatar": None,
        "nickname": None,
        **{f"c{i:02d}": i for i in range(13)},
    }
    bio = container.app.get_profile(pid(account, "r-b")).details["bio"]
    assert len(bio) == 200 and bio.endswith("…")
    assert any(
        w.startswith("details.bio: longer than 200 characters, truncated for 1 profile")
        for w in report.warnings
    )
    assert any(w.startswith("details.avatar: binary data, kept as null") for w in report.warnings)
    roster = check_store(container, account)
    assert roster.default == str(pid(account, "r-b"))  # is_default 'YES'
    assert 'default: legacy profile "r-b" "Ben"' in "\n".join(format_report(report))
    position = head(container)
    assert run(container, legacy_url, account).created == []
    assert head(container) == position


# --- safety --------------------------------------------------------------------


def test_the_legacy_database_is_read_in_a_read_only_transaction(
    container: Container, legacy_url: str, account: str
) -> None:
    # A racer_profiles view whose every read tries to write: a read-only
    # transaction refuses that write, so the import fails before writing anything.
    sql(
        legacy_url,
        """
        CREATE TABLE touched (at timestamptz);
        CREATE TABLE profiles_base (id integer, name text, created_at timestamptz);
        INSERT INTO profiles_base VALUES (1, 'Alex', now());
        CREATE FUNCTION touch() RETURNS boolean LANGUAGE plpgsql VOLATILE AS
            $$ BEGIN INSERT INTO touched VALUES (now()); RETURN true; END $$;
        CREATE VIEW racer_profiles AS SELECT * FROM profiles_base WHERE touch();
    """,
    )

    with pytest.raises(LegacyImportError, match="read-only transaction"):
        import_legacy(container.app, container.accounts, legacy_url, account)

    with psycopg.connect(legacy_url) as conn:
        assert conn.execute("SELECT count(*) FROM touched").fetchone() == (0,)
    assert head(container) == 0


def test_an_unusable_account_or_legacy_database_fails_before_writing(
    container: Container, legacy_url: str, account: str, database_url: str, pg_server_url: str
) -> None:
    with pytest.raises(LegacyImportError, match="the legacy database has no racer_profiles table"):
        import_legacy(container.app, container.accounts, legacy_url, account)  # still empty
    load_sample(legacy_url)
    auditor = str(container.accounts.create("Auditor", "auditor").account_id)
    missing = make_conninfo(pg_server_url, dbname=f"rp_missing_{uuid.uuid4().hex[:8]}")
    cases = [
        (legacy_url, str(uuid.uuid4()), "no account"),
        (legacy_url, "dashboard-user-7", "is not an account id"),
        (legacy_url, auditor, "is an auditor account"),
        (missing, account, "cannot connect to the legacy database: .*does not exist"),
        (database_url, account, "is a racer-profiles store"),
        ("dbname", account, "--from is not a PostgreSQL URL"),
    ]
    for url, who, message in cases:
        with pytest.raises(LegacyImportError, match=message):
            import_legacy(container.app, container.accounts, url, who)
    assert head(container) == 0

    sql(legacy_url, "ALTER TABLE racer_profiles DROP COLUMN created_at")
    with pytest.raises(LegacyImportError, match="lacks column"):
        import_legacy(container.app, container.accounts, legacy_url, account)
    assert head(container) == 0


# --- the command line ----------------------------------------------------------


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [str(CLI), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_cli_walk_through(container: Container, legacy_url: str, database_url: str) -> None:
    load_sample(legacy_url)
    created = cli(database_url, "accounts", "create", "Dashboard racers")
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    announce = next(i for i, line in enumerate(lines) if line.endswith("created; its token:"))
    account = lines[announce].split()[1]
    args = ("import-legacy", "--from", legacy_url, "--account", account)

    dry = cli(database_url, *args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "plan: 3 new profiles with 4 vehicles" in dry.stdout
    assert "  profile 4: name must not be blank (skipped with its 1 vehicle)" in dry.stdout
    assert f'default: legacy profile 2 "Sam Okafor" ({pid(account, 2)}): would be set' in dry.stdout
    assert dry.stdout.splitlines()[-1] == "dry run: nothing written"
    assert head(container) == 0

    real = cli(database_url, *args)
    assert real.returncode == 0, real.stderr
    assert f'default: legacy profile 2 "Sam Okafor" ({pid(account, 2)}): set' in real.stdout
    assert "  reason: legacy profile 2 is the only row marked is_default" in real.stdout
    assert (
        real.stdout.splitlines()[-1] == f"imported 3 profiles with 4 vehicles and 0 new vehicles"
        f" into account {account}"
    )
    roster = check_store(container, account)
    assert roster.default == str(pid(account, 2))

    position = head(container)
    again = cli(database_url, *args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "nothing written: the account is up to date"
    assert head(container) == position

    unknown = cli(database_url, "import-legacy", "--from", legacy_url, "--account", str(uuid.uuid4()))
    assert unknown.returncode == 2
    assert "error: no account" in unknown.stderr
    check_store(container, account)
