"""End-to-end fixtures: the real `racer-profiles serve` as a subprocess, on a
database of its own per test module, talked to over HTTP with httpx.

A module shares one database and one server; every test that needs a clean
slate takes fresh accounts from `new_token()` (accounts never see each other's
profiles), so tests stay independent without paying a server start each."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[2]


def _cli_path() -> Path:
    beside_python = Path(sys.executable).with_name("racer-profiles")
    return beside_python if beside_python.exists() else ROOT / ".venv" / "bin" / "racer-profiles"


CLI = _cli_path()
STARTUP_TIMEOUT = 20.0
# Accounts are made `TOKEN_BATCH` at a time, in parallel CLI processes.
TOKEN_BATCH = 3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "WAIT_TIMEOUT")}
    env.update(DATABASE_URL=database_url, API_THREADS="4", WAIT_TIMEOUT="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Service:
    """A running `racer-profiles serve` and the environment it was started with."""

    base_url: str
    database_url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    _tokens: list[str] = field(default_factory=list)

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLI), *args], env=env or self.env, cwd=ROOT,
            capture_output=True, text=True, timeout=timeout, check=False,
        )

    def create_account(self, name: str, role: str | None = None, env: dict[str, str] | None = None) -> str:
        """Runs `racer-profiles accounts create NAME [--role ROLE]`; returns the
        token, printed alone on the last line of stdout."""
        args = ["accounts", "create", name] + (["--role", role] if role else [])
        result = self.cli(*args, env=env)
        assert result.returncode == 0, f"accounts create failed ({result.returncode}):\n{result.stderr[-3000:]}"
        token = result.stdout.strip().splitlines()[-1].strip()
        assert token.startswith("rp_") and " " not in token, result.stdout
        return token

    def new_token(self, role: str | None = None) -> str:
        """A token of a brand-new account (owner unless role is given)."""
        if role is not None:
            return self.create_account(f"e2e-{role}-{uuid.uuid4().hex[:8]}", role)
        if not self._tokens:
            # The server created every table already; without CREATE_TABLES=false
            # parallel CLI processes race on CREATE OR REPLACE FUNCTION
            # ("tuple concurrently updated").
            env = {**self.env, "CREATE_TABLES": "false"}
            names = [f"e2e-{uuid.uuid4().hex[:8]}" for _ in range(TOKEN_BATCH)]
            with ThreadPoolExecutor(TOKEN_BATCH) as pool:
                self._tokens.extend(pool.map(lambda n: self.create_account(n, env=env), names))
        return self._tokens.pop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def create_database(pg_server_url: str) -> str:
    name = f"rp_e2e_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(pg_server_url, dbname=name)


def drop_database(pg_server_url: str, database_url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def start_service(database_url: str, log_dir: Path, **extra_env: str) -> Service:
    port = free_port()
    env = service_env(database_url, **extra_env)
    log_path = log_dir / f"serve-{port}.log"
    with log_path.open("wb") as log:
        # A file, not a pipe: uvicorn logs every request and a full pipe would block it.
        process = subprocess.Popen(
            [str(CLI), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
    service = Service(f"http://127.0.0.1:{port}", database_url, env, process, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(base_url=service.base_url, timeout=2) as client:
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode} before answering:\n{service.log()[-5000:]}")
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                stop_process(process)
                pytest.fail(f"server did not answer /healthz in {STARTUP_TIMEOUT}s:\n{service.log()[-5000:]}")
            time.sleep(0.1)  # the bounded start-up poll
    return service


@pytest.fixture(scope="session")
def e2e_logs() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rp-e2e-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="module")
def e2e_database(pg_server_url: str) -> Iterator[str]:
    """A fresh database for the module (a conninfo string)."""
    url = create_database(pg_server_url)
    yield url
    drop_database(pg_server_url, url)


@pytest.fixture(scope="module")
def service(e2e_database: str, e2e_logs: Path) -> Iterator[Service]:
    running = start_service(e2e_database, e2e_logs)
    try:
        yield running
    finally:
        stop_process(running.process)


@pytest.fixture(scope="module")
def client(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.base_url, timeout=30) as c:
        yield c


@pytest.fixture
def new_token(service: Service) -> Callable[..., str]:
    return service.new_token


@pytest.fixture
def token(new_token: Callable[..., str]) -> str:
    """An owner token of an account of the test's own."""
    return new_token()
