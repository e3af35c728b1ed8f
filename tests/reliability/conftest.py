"""Fixtures of the reliability harness: a fresh database per test on the
session's server (TEST_DATABASE_URL, else the embedded one), a directory for
the service processes' logs, and the summary table printed at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_harness import REPORT, RUNNING, SCALE

from tests.support.databases import temporary_database


@pytest.fixture(scope="session")
def rel_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reliability-logs")
    REPORT.path = tmp_path_factory.getbasetemp() / "reliability-summary.txt"
    return path


@pytest.fixture
def rel_database(pg_server_url: str) -> Iterator[str]:
    with temporary_database(pg_server_url, "rp_rel") as url:
        yield url


@pytest.fixture(autouse=True)
def _stop_load_threads() -> Iterator[None]:
    """A failed test leaves no client or sampler thread sending requests."""
    yield
    for running in RUNNING:
        running.stop.set()
    RUNNING.clear()


def pytest_report_header(config: pytest.Config) -> str:
    return f"reliability scale: {SCALE.name} (RELIABILITY_SCALE=long for the long form)"


def pytest_terminal_summary(terminalreporter: object, exitstatus: int, config: pytest.Config) -> None:
    if not REPORT.rows:
        return
    lines = REPORT.lines()
    write = terminalreporter.write_line  # type: ignore[attr-defined]
    terminalreporter.section("reliability summary")  # type: ignore[attr-defined]
    for line in lines:
        write(line)
    if REPORT.path is not None:
        REPORT.path.write_text("\n".join(lines) + "\n")
        write(f"summary table written to {REPORT.path}")
