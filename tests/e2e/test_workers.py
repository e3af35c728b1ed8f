"""Several API processes (serve --workers 2) with a projector and a standby:
commands and read-your-writes hold across processes, and a rebuild swaps the
read table under load without a failed request."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.databases import create_database, drop_database
from tests.support.service import CLI, ROOT, STARTUP_TIMEOUT, free_port, service_env, stop_process

pytestmark = pytest.mark.postgres


class Workers:
    def __init__(self, base_url: str, env: dict[str, str], process: subprocess.Popen[bytes]) -> None:
        self.base_url, self.env, self.process = base_url, env, process
        self.log: Path | None = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLI), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def token(self) -> str:
        result = self.cli("accounts", "create", f"w-{time.monotonic_ns()}")
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout.strip().splitlines()[-1]

    def children(self) -> list[str]:
        listing = subprocess.run(
            ["ps", "-ww", "-o", "args=", "--ppid", str(self.process.pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return [line for line in listing.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def workers(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    database_url = create_database(pg_server_url, "rp_e2e")
    port = free_port()
    env = service_env(database_url, API_THREADS="2", WAIT_TIMEOUT="5")
    log = Path(tmp_path_factory.mktemp("workers")) / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(CLI), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, as in a terminal
        )
    running = Workers(f"http://127.0.0.1:{port}", env, process)
    running.log = log
    try:
        deadline = time.monotonic() + 2 * STARTUP_TIMEOUT
        while True:
            assert process.poll() is None, log.read_text()[-4000:]
            try:
                if httpx.get(f"{running.base_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.1)  # bounded start-up poll
        yield running
    finally:
        stop_process(process)
        drop_database(pg_server_url, database_url)


def fresh_client(workers: Workers, token: str) -> httpx.Client:
    """A new connection each time, so that the kernel spreads them over the workers."""
    return httpx.Client(base_url=workers.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_two_api_processes_and_two_projectors_run(workers: Workers) -> None:
    children = workers.children()
    assert sum(" serve " in f" {c} " and "--no-projector" in c for c in children) == 2, children
    assert sum(" project --parent-pid " in c for c in children) == 2, children


def test_every_command_is_visible_to_the_next_request_whichever_process_answers(workers: Workers) -> None:
    token = workers.token()
    names: list[str] = []
    default = "R0"
    for i in range(20):
        with fresh_client(workers, token) as client:
            created = client.post("/v1/profiles", json={"name": f"R{i}"})
            assert created.status_code == 201, created.text
            names.append(f"R{i}")
        with fresh_client(workers, token) as client:
            listed = client.get("/v1/profiles", params={"limit": 200})
            assert [p["name"] for p in listed.json()["items"]] == names
            if i % 5 == 4:
                moved = client.put("/v1/profiles/default", json={"profile_id": created.json()["id"]})
                assert moved.status_code == 200, moved.text
                default = f"R{i}"
        with fresh_client(workers, token) as client:
            assert client.get("/v1/profiles/default").json()["name"] == default


def test_a_rebuild_under_load_fails_no_request(workers: Workers) -> None:
    token = workers.token()
    failures: list[str] = []
    done = threading.Event()
    count = 0

    def load() -> None:
        nonlocal count
        with fresh_client(workers, token) as client:
            while not done.is_set():
                created = client.post("/v1/profiles", json={"name": f"L{count}"})
                listed = client.get("/v1/profiles/default")
                for response in (created, listed):
                    if response.status_code >= 300:
                        failures.append(
                            f"{response.request.method} {response.status_code} {response.text[:200]}"
                        )
                count += 1

    thread = threading.Thread(target=load)
    thread.start()
    try:
        rebuilt = workers.cli("rebuild")
    finally:
        done.set()
        thread.join(60)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert failures == []
    assert count > 0
    verified = workers.cli("verify")
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]


def test_ctrl_c_stops_every_process_without_a_traceback(workers: Workers) -> None:
    """Last in the module: it stops the server. A terminal's Ctrl-C reaches the
    supervisor and every child at once; the supervisor then sends SIGTERM (a
    second SIGINT made uvicorn cancel its shutdown: CancelledError tracebacks)."""
    listing = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(workers.process.pid)], capture_output=True, text=True, check=False
    ).stdout
    children = [int(pid) for pid in listing.split()]
    assert len(children) == 4, children  # 2 API processes, a projector and its standby
    os.killpg(workers.process.pid, signal.SIGINT)
    assert workers.process.wait(60) == 0
    assert workers.log is not None
    log = workers.log.read_text(errors="replace")
    assert "Traceback" not in log and "CancelledError" not in log, log[-4000:]
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)  # bounded: the supervisor waited for them, this only lets the kernel reap them
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
