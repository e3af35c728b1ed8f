"""A database outage during load: PostgreSQL (a server of the test's own, so
that stopping it touches nobody else) is stopped with `pg_ctl stop -m fast`
while clients send commands, then started again.

While it is down every command is answered 503 problem+json with Retry-After
within the configured timeouts (no hung request, no 500) and /readyz fails;
once it is back the service recovers by itself within seconds, and no
acknowledged command is missing."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from reliability_harness import (
    PROBLEM,
    REPORT,
    SCALE,
    Account,
    Ledger,
    PrivatePostgres,
    Result,
    Sampler,
    ScenarioRow,
    Server,
    Workload,
    assert_no_problems,
    conflict_rate,
    create_database,
    describe_counts,
    end_state_problems,
    load_for,
    new_accounts,
    open_container,
    poll,
    retry_after_ok,
    retry_outcomes,
    say,
    seeded_accounts,
    start_server,
    violation_count,
)

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

# The settings under test (documented in tests/reliability/README.md).
DB_CONNECT_TIMEOUT = 1  # seconds to get a pooled connection or to connect
WAIT_TIMEOUT = 1  # seconds a request waits for the read table
# No request may take longer than this while the database is down.
ANSWER_BOUND = 2 * DB_CONNECT_TIMEOUT + WAIT_TIMEOUT + 1
# Long enough that a request hanging until the database returns shows as one.
OUTAGE_SECONDS = max(SCALE.outage_seconds, ANSWER_BOUND + 2.0)
RECOVERY_LIMIT = 10.0  # seconds from the database's return to a working service


@dataclass
class Probe:
    started: float
    ended: float
    status: int | None
    body: Any
    error: str | None


class ReadinessProbe:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.samples: list[Probe] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="readyz", daemon=True)

    def __enter__(self) -> ReadinessProbe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)

    def _run(self) -> None:
        with self.server.client(timeout=60) as http:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    r = http.get("/readyz")
                    self.samples.append(Probe(started, time.monotonic(), r.status_code, r.json(), None))
                except (httpx.TransportError, ValueError) as e:
                    self.samples.append(Probe(started, time.monotonic(), None, None, type(e).__name__))
                self.stop.wait(0.2)


@pytest.fixture
def private_server() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres().init()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


def _outage_answer_problems(r: Result) -> str | None:
    if r.error:
        return f"transport error {r.error}"
    if r.status != 503:
        return f"status {r.status}"
    if r.content_type != PROBLEM or not isinstance(r.body, dict) or r.body.get("status") != 503:
        return f"not a 503 problem document: {r.content_type} {str(r.body)[:200]}"
    if not retry_after_ok(r.retry_after):
        return f"Retry-After {r.retry_after!r}"
    return None


def test_a_database_outage_answers_503_quickly_and_heals_by_itself(
    private_server: PrivatePostgres, rel_logs: Path
) -> None:
    database = create_database(private_server.url, "rp_outage")
    server = start_server(
        database, rel_logs, DB_CONNECT_TIMEOUT=str(DB_CONNECT_TIMEOUT), WAIT_TIMEOUT=str(WAIT_TIMEOUT)
    )
    clients = max(2, SCALE.clients // 2)
    outages: list[tuple[float, float]] = []
    recoveries: list[float] = []
    try:
        container = open_container(database)
        try:
            with seeded_accounts(container, server, clients) as (shared, private):
                pass
        finally:
            container.close()  # a pool of the test's own must not sit through the outage
        ledger = Ledger()
        sampler = Sampler(database, shared, None, SCALE.sample_pause).start()
        # Long form: clients retry with their Idempotency-Key through the outage.
        retry = 0.0 if SCALE.name == "short" else OUTAGE_SECONDS + 60
        workload = Workload(
            [server], shared, private, ledger, seed=41, pause=0.01, retry_seconds=retry
        ).start()
        rounds = 1 if SCALE.name == "short" else 3
        with ReadinessProbe(server) as readiness:
            load_for(1.5, workload, [server.proc], min_acknowledged=10, max_seconds=60)
            for round_ in range(rounds):
                down = time.monotonic()
                private_server.stop()
                say(f"outage {round_ + 1}: PostgreSQL stopped for {OUTAGE_SECONDS:.0f} s")
                load_for(OUTAGE_SECONDS, workload, [server.proc])
                private_server.start()
                up = time.monotonic()
                outages.append((down, up))

                def recovered(after: float = up) -> float | None:
                    ok = [r.ended for r in ledger.snapshot() if r.started >= after and r.acknowledged]
                    ready = [p.ended for p in readiness.samples if p.started >= after and p.status == 200]
                    return max(min(ok), min(ready)) - after if ok and ready else None

                took = poll(recovered, 60, 0.05)
                assert took is not None, f"no recovery within 60 s: {describe_counts(ledger.snapshot())}"
                recoveries.append(took)
                say(
                    f"outage {round_ + 1}: commands and /readyz work again {took:.2f} s after PostgreSQL returned"
                )
                load_for(1.5, workload, [server.proc])
            workload.finish(timeout=retry + 60)
        sampler.finish()
        results = ledger.snapshot()
        container = open_container(database)
        try:
            problems = end_state_problems(container, database, results, sampler, shared)
        finally:
            container.close()
    finally:
        server.proc.terminate()

    def during(started: float, ended: float) -> bool:
        # Fully inside an outage, after the server's stop has cut every session.
        return any(started >= down + 0.5 and ended <= up for down, up in outages)

    def overlaps(started: float, ended: float) -> bool:
        # An outage lasts from the stop until the service has recovered.
        return any(
            started <= up + healed and ended >= down
            for (down, up), healed in zip(outages, recoveries, strict=False)
        )

    inside = [r for r in results if during(r.started, r.ended)]
    problems["answers while down"] = [
        f"{r.op} {r.path}: {p}" for r in inside if (p := _outage_answer_problems(r))
    ]
    problems["slow answers"] = [
        f"{r.op} {r.path}: {r.latency:.1f} s ({r.status})"
        for r in results
        if overlaps(r.started, r.ended) and r.latency > ANSWER_BOUND
    ]
    problems["5xx other than 503, transport errors"] = [
        f"{r.op} {r.path}: {r.status or r.error} {str(r.body)[:200]}"
        for r in results
        if r.error or (r.status is not None and r.status >= 500 and r.status != 503)
    ]
    problems["5xx outside the outages"] = [
        f"{r.op} {r.path}: {r.status}"
        for r in results
        if (r.status or 0) >= 500 and not overlaps(r.started, r.ended)
    ]
    ready_inside = [p for p in readiness.samples if during(p.started, p.ended)]
    problems["/readyz while down"] = [
        f"{p.status or p.error} after {p.ended - p.started:.1f} s" for p in ready_inside if p.status != 503
    ]
    problems["slow /readyz"] = [
        f"{p.status or p.error} after {p.ended - p.started:.1f} s"
        for p in readiness.samples
        if overlaps(p.started, p.ended) and p.ended - p.started > ANSWER_BOUND
    ]
    problems["slow recovery"] = [f"{t:.2f} s" for t in recoveries if t > RECOVERY_LIMIT]
    problems["retried commands left unresolved"], resolve = retry_outcomes(results)
    if resolve:
        say(
            f"outage: {len(resolve)} commands retried with their key; the slowest was answered "
            f"{max(resolve):.1f} s after its first attempt"
        )
    acked = sum(r.acknowledged for r in results)
    latencies = [r.latency for r in inside]
    say(
        f"outage: {len(results)} requests ({describe_counts(results)}); {len(inside)} while down, "
        f"latency max {max(latencies, default=0):.2f} s, median {statistics.median(latencies or [0]):.2f} s"
    )
    REPORT.add(
        ScenarioRow(
            "database outage",
            acked,
            conflict_rate(results)[0],
            sum(1 for r in results if (r.status or 0) >= 500 and r.status != 503),
            violation_count(problems),
            len(outages),
            recoveries,
            note=f"{len(inside)} answers while down (503)",
        )
    )
    for r in sorted(results, key=lambda r: -r.latency)[:5]:
        say(f"  slowest: {r.op} {r.path} {r.latency:.2f} s -> {r.status or r.error}")
    assert_no_problems(problems)
    assert inside, "no request was answered while the database was down: the outage proved nothing"
    assert ready_inside, "/readyz was not answered while the database was down"
    assert acked >= 20, describe_counts(results)


def test_every_database_call_gives_up_within_the_connect_timeout_while_the_database_is_down(
    private_server: PrivatePostgres,
) -> None:
    """The same bound, call by call and without timing luck: with the database
    down, each call a request makes (load an aggregate: snapshots, then events;
    store a command; read the head for /readyz; read the projection's position)
    fails within two connect timeouts, and the same process works again once
    the database is back. (Under load the pool may still hold dead connections
    that fail fast, so a slow call can hide there; here the pool has none.)"""
    from domain.service import Cause

    database = create_database(private_server.url, "rp_calls")
    container = open_container(database, db_connect_timeout=DB_CONNECT_TIMEOUT)
    try:
        created = container.app.create_profile("calls", "Before", [], Cause("calls"))
        calls = {
            "load an aggregate": lambda: container.app.repository.get(created.profile_id),
            "store a command": lambda: container.app.rename(
                "calls", created.profile_id, "During", Cause("calls")
            ),
            "read the log's head": lambda: container.app.recorder.max_notification_id(),
            "read the projection's position": lambda: container.view.position(container.app.name),
        }
        private_server.stop()
        took: dict[str, float] = {}
        outcomes: dict[str, str] = {}
        for name, call in calls.items():
            started = time.monotonic()
            try:
                call()
                outcomes[name] = "succeeded?"
            except Exception as e:  # the error a request turns into a 503
                outcomes[name] = type(e).__name__
            took[name] = time.monotonic() - started
        private_server.start()
        back = time.monotonic()
        renamed = poll(
            lambda: _attempt(
                lambda: container.app.rename("calls", created.profile_id, "After", Cause("calls"))
            ),
            30,
            0.1,
        )
        healed = time.monotonic() - back
    finally:
        container.close()
    say("database down, per call: " + ", ".join(f"{n} {t:.1f} s ({outcomes[n]})" for n, t in took.items()))
    assert all(o == "OperationalError" for o in outcomes.values()), outcomes
    slow = {n: round(t, 1) for n, t in took.items() if t > 2 * DB_CONNECT_TIMEOUT + 0.5}
    assert not slow, (
        f"calls that kept waiting for a database that is down: {slow} (bound {2 * DB_CONNECT_TIMEOUT + 0.5} s)"
    )
    assert renamed and healed < RECOVERY_LIMIT, f"the process did not work again within {RECOVERY_LIMIT} s"


def _attempt(call: Any) -> bool:
    try:
        call()
    except Exception:
        return False
    return True


def _requests_of_every_kind(
    http: httpx.Client, account: Account, profile: dict[str, Any]
) -> list[tuple[str, int]]:
    """One request of each kind, each on its own pool path: token check and
    sync reads (read pool), the hot reads (async read pool), a command (events
    and snapshots pools, then a wait on the view), history (events pool),
    readiness (events pool and view), a position wait and a stream backlog
    (view, change feed)."""
    pid = profile["id"]
    auth = account.auth()
    outcomes: list[tuple[str, int]] = []

    def send(kind: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            r = http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            say(f"restart: {kind}: {type(e).__name__} {e}")
            outcomes.append((kind, 0))
            raise
        outcomes.append((kind, r.status_code))
        return r

    send("GET /readyz", "GET", "/readyz")
    send("GET one profile", "GET", f"/v1/profiles/{pid}", headers=auth)
    send("GET default", "GET", "/v1/profiles/default", headers=auth)
    send("GET list", "GET", "/v1/profiles", headers=auth)
    created = send("POST create", "POST", "/v1/profiles", json={"name": "After"}, headers=auth)
    current = send("GET one profile", "GET", f"/v1/profiles/{pid}", headers=auth)
    send(
        "PATCH rename",
        "PATCH",
        f"/v1/profiles/{pid}",
        json={"name": "Renamed after"},
        headers={**auth, "If-Match": current.headers.get("etag", "*")},
    )
    send("GET history", "GET", f"/v1/profiles/{pid}/history", headers=auth)
    position = created.headers.get("x-position", "0")
    send("GET list after a position", "GET", "/v1/profiles", headers={**auth, "X-Min-Position": position})
    with http.stream("GET", "/v1/profiles/stream", headers=auth, timeout=10) as stream:
        outcomes.append(("GET stream", stream.status_code))
        if stream.status_code == 200:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    break
    return outcomes


def _load(server: Server, account: Account, pid: str, threads: int, seconds: float) -> int:
    """Concurrent requests of every kind, so that every pool grows and then
    holds idle connections (the ones a restart kills)."""
    done: list[int] = []
    stop = time.monotonic() + seconds

    def one(index: int) -> None:
        with server.client() as http:
            while time.monotonic() < stop:
                auth = account.auth()
                http.get(f"/v1/profiles/{pid}", headers=auth)
                http.get("/v1/profiles", headers=auth)
                http.get(f"/v1/profiles/{pid}/history", headers=auth)
                http.post("/v1/profiles", json={"name": f"Load {index}"}, headers=auth)
                done.append(4)

    workers = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 60)
    return sum(done)


def _connections(url: str, database: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)).fetchone()
    return int(row[0]) if row else 0


def test_a_database_restart_costs_no_request(private_server: PrivatePostgres, rel_logs: Path) -> None:
    """Load fills every pool with idle connections; PostgreSQL restarts (every
    one of them dies); the first request of each kind afterwards succeeds."""
    database = create_database(private_server.url, "rp_restart")
    name = str(conninfo_to_dict(database)["dbname"])
    server = start_server(database, rel_logs)
    try:
        container = open_container(database)
        try:
            (account,) = new_accounts(container, 1, shared=False)
        finally:
            container.close()
        with server.client() as http:
            first = http.post("/v1/profiles", json={"name": "Before"}, headers=account.auth())
            assert first.status_code == 201, first.text
            profile = first.json()
            loaded = _load(server, account, profile["id"], 2 * SCALE.api_threads, 2.0)
            cut = _connections(private_server.url, name)
            private_server.stop()
            private_server.start()
            say(f"restart: {loaded} requests of load, then PostgreSQL restarted, cutting {cut} connections")
            outcomes = _requests_of_every_kind(http, account, profile)
    finally:
        server.proc.terminate()
    failed = [
        f"{kind}: {status or 'transport error'}" for kind, status in outcomes if not 200 <= status < 300
    ]
    say(f"restart: {len(outcomes)} requests after the server was back, {len(failed)} failed {failed}")
    REPORT.add(
        ScenarioRow(
            "database restart",
            sum(1 for _, status in outcomes if 200 <= status < 300),
            0,
            len(failed),
            0,
            1,
            note=f"{cut} connections cut; {len(failed)} of {len(outcomes)} requests failed after the server was back",
        )
    )
    assert cut >= 2 * 3, f"the load left only {cut} connections to cut: the restart proved little"
    assert not failed, failed
