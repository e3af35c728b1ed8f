"""A real `racer-profiles serve` as a subprocess: starting it on a database,
its environment, its CLI, and owner tokens made ahead of use."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from infrastructure.settings import Settings
from tests.support.databases import create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]


def _cli_path() -> Path:
    beside_python = Path(sys.executable).with_name("racer-profiles")
    return beside_python if beside_python.exists() else ROOT / ".venv" / "bin" / "racer-profiles"


CLI = _cli_path()
STARTUP_TIMEOUT = 20.0
# Owner tokens made ahead of use by a background thread (a CLI run costs ~1 s).
TOKEN_STOCK = 3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    # No setting leaks in from the caller's environment (RUN_PROJECTION, ...).
    settings = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings}
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
    _supply: TokenSupply | None = field(default=None, repr=False)
    _shared: str | None = field(default=None, repr=False)

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLI), *args],
            env=env or self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def create_account(self, name: str, role: str | None = None, env: dict[str, str] | None = None) -> str:
        """Runs `racer-profiles accounts create NAME [--role ROLE]`; returns the
        token, printed alone on the last line of stdout."""
        args = ["accounts", "create", name] + (["--role", role] if role else [])
        result = self.cli(*args, env=env)
        assert result.returncode == 0, (
            f"accounts create failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
        token = result.stdout.strip().splitlines()[-1].strip()
        assert token.startswith("rp_") and " " not in token, result.stdout
        return token

    def new_token(self, role: str | None = None) -> str:
        """A token of a brand-new account (owner unless role is given)."""
        if role is not None:
            return self.create_account(f"e2e-{role}-{uuid.uuid4().hex[:8]}", role)
        if self._supply is None:
            self._supply = TokenSupply(self)
        return self._supply.take()

    def shared_token(self) -> str:
        if self._shared is None:
            self._shared = self.new_token()
        return self._shared

    def close(self) -> None:
        if self._supply is not None:
            self._supply.stop()
        stop_process(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class TokenSupply:
    """Keeps TOKEN_STOCK owner tokens ready, each made by its own
    `racer-profiles accounts create` run, one at a time, while tests run."""

    def __init__(self, service: Service) -> None:
        # The server created every table already. CREATE_TABLES=false keeps this
        # thread's CLI runs from racing other CLI runs of a test on the library's
        # CREATE OR REPLACE FUNCTION ("tuple concurrently updated").
        self._env = {**service.env, "CREATE_TABLES": "false"}
        self._service = service
        self._ready: queue.Queue[str | BaseException] = queue.Queue()
        self._room = threading.Semaphore(TOKEN_STOCK)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="token-supply", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._room.acquire()
            if self._stopping.is_set():
                return
            try:
                token = self._service.create_account(f"e2e-{uuid.uuid4().hex[:8]}", env=self._env)
            except BaseException as e:  # handed to the test that asks next
                self._ready.put(e)
                return
            self._ready.put(token)

    def take(self) -> str:
        item = self._ready.get(timeout=120)
        if isinstance(item, BaseException):
            self._ready.put(item)  # every later caller fails the same way
            raise item
        self._room.release()
        return item

    def stop(self) -> None:
        self._stopping.set()
        self._room.release()
        self._thread.join(timeout=60)


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
    for _ in range(3):  # another process may take the free port before the server binds it
        service = _start_once(database_url, log_dir, **extra_env)
        if service is not None:
            return service
    pytest.fail("server could not bind a free port in 3 attempts")


def _start_once(database_url: str, log_dir: Path, **extra_env: str) -> Service | None:
    port = free_port()
    env = service_env(database_url, **extra_env)
    log_path = log_dir / f"serve-{port}-{uuid.uuid4().hex[:6]}.log"
    with log_path.open("wb") as log:
        # A file, not a pipe: uvicorn logs every request and a full pipe would block it.
        process = subprocess.Popen(
            [str(CLI), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    service = Service(f"http://127.0.0.1:{port}", database_url, env, process, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(base_url=service.base_url, timeout=2) as client:
        while True:
            if process.poll() is not None:
                if "address already in use" in service.log().lower():
                    return None
                pytest.fail(
                    f"server exited with {process.returncode} before answering:\n{service.log()[-5000:]}"
                )
            try:
                if client.get("/healthz").status_code == 200:
                    return service
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                stop_process(process)
                pytest.fail(f"server did not answer /healthz in {STARTUP_TIMEOUT}s:\n{service.log()[-5000:]}")
            time.sleep(0.1)  # the bounded start-up poll


@contextmanager
def running_service(pg_server_url: str, log_dir: Path, **extra_env: str) -> Iterator[Service]:
    """A fresh database and a server on it; both gone afterwards."""
    database_url = create_database(pg_server_url, "rp_e2e")
    try:
        running = start_service(database_url, log_dir, **extra_env)
        try:
            yield running
        finally:
            running.close()
    finally:
        drop_database(pg_server_url, database_url)
