"""The embedded PostgreSQL of the `make run` setup (no DATABASE_URL) never
outlives the command that started it: the real `racer-profiles serve` is
stopped by SIGINT (Ctrl-C), SIGHUP (a closed terminal) and SIGTERM (`make
stop`), each sent to its whole process group as a terminal would; after a
SIGKILL, which nothing can catch, the next command stops the orphan and starts
afresh. CLI commands beside a running serve use its server and leave it up."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.processes import postgres_of, until
from tests.support.service import CLI, ROOT, free_port, service_env

# Each test starts its own embedded PostgreSQL (as `make run` does): a server, so
# `pytest -m "not postgres"` leaves the module out.
pytestmark = pytest.mark.postgres

STARTUP = 60.0  # seconds: initdb and a first start on a loaded 2-core machine
STARTED: list[Serve] = []  # every serve the module started, for the clean-up


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if psutil.pid_exists(pid) else None


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("embedded") / "pgdata"
    yield path
    for serve in STARTED:  # only if a test failed half-way: nothing of it is left running
        if serve.process.poll() is None:
            os.killpg(serve.process.pid, signal.SIGKILL)
            serve.process.wait(10)
    for process in postgres_of(path):
        process.kill()


def embedded_env(data_dir: Path) -> dict[str, str]:
    env = service_env("", EMBEDDED_DATA_DIR=str(data_dir))
    del env["DATABASE_URL"]  # the make run setup: no DATABASE_URL
    return env


def cli(data_dir: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        env=embedded_env(data_dir),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Serve:
    def __init__(self, data_dir: Path, log: Path, cwd: Path = ROOT) -> None:
        self.port = free_port()
        self.out = log.with_suffix(".out")
        self.err = log.with_suffix(".err")
        with self.out.open("wb") as out, self.err.open("wb") as err:
            # A session of its own: signals go to its process group, as a terminal's do.
            self.process = subprocess.Popen(
                [str(CLI), "serve", "--port", str(self.port)],
                env=embedded_env(data_dir),
                cwd=cwd,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        STARTED.append(self)
        started = until(lambda: "serving" in self.stdout() or self.process.poll() is not None, STARTUP)
        assert started and self.process.poll() is None, self.stderr()[-3000:]

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def signal_group(self, signum: int) -> int | None:
        os.killpg(self.process.pid, signum)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"serve did not exit after signal {signum}:\n{self.stderr()[-3000:]}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP, signal.SIGTERM], ids=lambda s: s.name)
def test_serve_stops_its_embedded_server_on_a_signal(data_dir: Path, tmp_path: Path, signum: int) -> None:
    serve = Serve(data_dir, tmp_path / "serve")
    assert f"http://127.0.0.1:{serve.port}" in serve.stdout()
    pid = postmaster_pid(data_dir)
    assert pid is not None

    # Commands next to it, from another directory too, use its server and leave it running.
    url = cli(data_dir, "db-url", cwd=tmp_path)
    assert url.returncode == 0 and f"host={data_dir}" in url.stdout, url.stderr
    made = cli(data_dir, "accounts", "create", "Beside serve", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert postmaster_pid(data_dir) == pid

    code = serve.signal_group(signum)
    assert code == 0, serve.stderr()[-3000:]
    assert "Traceback" not in serve.stderr(), serve.stderr()[-3000:]
    assert until(lambda: not postgres_of(data_dir), 10), postgres_of(data_dir)


def test_after_a_sigkill_the_next_command_stops_the_orphan(data_dir: Path, tmp_path: Path) -> None:
    serve = Serve(data_dir, tmp_path / "serve")
    orphan = postmaster_pid(data_dir)
    assert orphan is not None
    serve.signal_group(signal.SIGKILL)
    # Nothing could stop it: the server outlives its killed owner ...
    assert psutil.pid_exists(orphan)

    # ... until the next command, which stops it, starts its own, and stops that when it ends.
    result = cli(data_dir, "migrate")
    assert result.returncode == 0, result.stderr
    assert f"stopping the embedded PostgreSQL in {data_dir} (pid {orphan})" in result.stderr
    assert not psutil.pid_exists(orphan)
    assert until(lambda: not postgres_of(data_dir), 10), postgres_of(data_dir)


def test_make_stop_stops_serve_and_its_server(data_dir: Path, tmp_path: Path) -> None:
    serve = Serve(data_dir, tmp_path / "serve")
    stopped = cli(data_dir, "stop", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped racer-profiles serve on http://127.0.0.1:{serve.port}" in stopped.stdout
    assert serve.process.wait(30) == 0
    assert until(lambda: not postgres_of(data_dir), 10), postgres_of(data_dir)
    again = cli(data_dir, "stop")
    assert again.stdout.startswith("nothing to stop"), again.stdout


def test_a_port_in_use_is_one_line(data_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli(data_dir, "serve", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: 127.0.0.1:{port} is already in use (another `make run`? `make stop` stops it; "
        f"or choose another port: `make run PORT={port + 1}`)"
    ]
    assert not postgres_of(data_dir)


def test_a_cli_command_alone_stops_the_server_it_started(data_dir: Path) -> None:
    result = cli(data_dir, "psql", "-tAc", "SELECT 6 * 7")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"
    # Quiet: no Python warnings (RuntimeDirWarning ...), no INFO lines of the package. (The
    # one line that may show names a `make run` of this checkout running meanwhile.)
    noise = [line for line in result.stderr.splitlines() if "another embedded PostgreSQL" not in line]
    assert noise == [], result.stderr
    assert until(lambda: not postgres_of(data_dir), 10), postgres_of(data_dir)


def test_one_data_directory_per_checkout_and_a_second_one_is_named(tmp_path: Path) -> None:
    """A relative EMBEDDED_DATA_DIR is the checkout's, from any directory; a command
    that starts a server on another directory while one runs says so."""
    relative = f".data/test-{uuid.uuid4().hex[:8]}"
    inside = ROOT / relative
    elsewhere = tmp_path / "elsewhere"
    serve: Serve | None = None
    try:
        serve = Serve(Path(relative), tmp_path / "serve", cwd=tmp_path)
        assert postmaster_pid(inside) is not None  # under the checkout, not the current directory
        assert not (tmp_path / ".data").exists()
        second = cli(elsewhere, "psql", "-tAc", "SELECT 1", cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        assert f"another embedded PostgreSQL is running on {inside}" in second.stderr
        assert serve.signal_group(signal.SIGTERM) == 0
        assert until(lambda: not postgres_of(inside) and not postgres_of(elsewhere), 10)
    finally:
        if serve is not None and serve.process.poll() is None:  # an assertion failed half-way
            os.killpg(serve.process.pid, signal.SIGKILL)
            serve.process.wait(10)
        for process in postgres_of(inside) + postgres_of(elsewhere):
            process.kill()
        shutil.rmtree(inside, ignore_errors=True)
        for leftover in inside.parent.glob(f".{inside.name}.*"):
            leftover.unlink()
