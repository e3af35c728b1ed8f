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
import pytest
from reliability_harness import (
    PROBLEM,
    REPORT,
    SCALE,
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
