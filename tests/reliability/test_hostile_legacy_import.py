"""import-legacy against a hostile legacy database: column names that carry
terminal escape sequences, JSON nested deeper than any parser's stack, and rows
of megabytes. The operator's terminal gets escaped text, a too-deep row is
reported and skipped (never a RecursionError), and memory stays flat in the
legacy table's size (rows are streamed, each kept as a bounded summary)."""

from __future__ import annotations

import tracemalloc
import unicodedata
from collections.abc import Iterator

import psycopg
import pytest

from api.legacy_report import format_report
from infrastructure.container import Container
from infrastructure.legacy_import import import_legacy
from infrastructure.legacy_rows import MAX_NESTING
from tests.support.databases import temporary_database

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

ESCAPES = "\x1b[31mred\x1b]0;pwned\x07"
BIDI = "\u202eevil"


@pytest.fixture
def legacy_url(pg_server_url: str) -> Iterator[str]:
    with temporary_database(pg_server_url, "rp_hostile_legacy") as url:
        yield url


@pytest.fixture
def account(container: Container) -> str:
    return str(container.accounts.create("Hostile legacy").account_id)


def sql(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement.encode())


def unprintable(text: str) -> list[str]:
    return [ch for ch in text if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")]


def test_escape_sequences_in_column_names_reach_the_report_escaped(
    container: Container, legacy_url: str, account: str
) -> None:
    escapes, bidi = ESCAPES.replace('"', '""'), BIDI
    sql(
        legacy_url,
        f'CREATE TABLE racer_profiles (id int, name text, created_at timestamptz, "{escapes}" text, "{bidi}" text);'
        f"INSERT INTO racer_profiles VALUES (1, 'Alex', now(), 'a', 'b');"
        f'CREATE TABLE vehicles (id int, profile_id int, name text, "{escapes}" text);'
        f"INSERT INTO vehicles VALUES (1, 1, 'Kart', 'x')",
    )
    report = import_legacy(container.app, container.accounts, legacy_url, account, dry_run=True)
    lines = format_report(report)
    text = "\n".join(lines)
    assert [unprintable(line) for line in lines] == [[] for _ in lines], text
    assert "kept as details: \\x1b[31mred\\x1b]0;pwned\\x07, \\u202eevil" in text, text
    assert "not imported: vehicles.\\x1b[31mred\\x1b]0;pwned\\x07" in text, text
    # Such names are no detail keys either: the row is reported and skipped, nothing written.
    assert [b.legacy_id for b in report.bad_rows] == [1]
    assert "control or unassigned characters" in report.bad_rows[0].reason


def test_deeply_nested_jsonb_skips_its_row_and_imports_the_others(
    container: Container, legacy_url: str, account: str
) -> None:
    depth = 5000  # far beyond Python's recursion limit
    nested = "[" * depth + "1" + "]" * depth
    sql(
        legacy_url,
        "CREATE TABLE racer_profiles (id int, name text, created_at timestamptz, prefs jsonb);"
        f"INSERT INTO racer_profiles VALUES (1, 'Deep', now(), '{nested}'),"
        ' (2, \'Shallow\', now(), \'{"theme": ["dark", {"size": 2}]}\')',
    )
    report = import_legacy(container.app, container.accounts, legacy_url, account)
    assert [(b.legacy_id, b.reason) for b in report.bad_rows] == [
        (1, f"column prefs holds JSON nested deeper than {MAX_NESTING} levels")
    ]
    assert [p.legacy_id for p in report.to_create] == [2]
    assert report.to_create[0].details == {"prefs": '{"theme":["dark",{"size":2}]}'}
    assert len(report.created) == 1


def test_large_rows_are_streamed_so_memory_stays_flat(
    container: Container, legacy_url: str, account: str
) -> None:
    rows, size = 24, 4 * 1024 * 1024  # 96 MiB of legacy data
    sql(
        legacy_url,
        "CREATE TABLE racer_profiles (id int, name text, created_at timestamptz, notes text);"
        f"INSERT INTO racer_profiles SELECT i, 'Racer ' || i, now(), repeat('x', {size})"
        f" FROM generate_series(1, {rows}) AS i",
    )
    tracemalloc.start()
    try:
        report = import_legacy(container.app, container.accounts, legacy_url, account, dry_run=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(report.to_create) == rows
    assert all(len(p.details["notes"]) <= 200 for p in report.to_create)
    # Read whole, the table held every row at once (twice 96 MiB as bytes and text); streamed, a few rows.
    assert peak < 80 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB while importing {rows} rows of 4 MiB"
